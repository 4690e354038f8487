package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// BenchmarkDurableWrite measures a durable write of a small record with two
// unique indexes (as Contacts.Add writes) under the two ways of making it
// durable, with one writer and with 8 concurrent writers:
//
//   - syncwrites: badger's SyncWrites, every commit synced by badger;
//   - sync-after-commit: SyncWrites off, each durable commit followed by
//     DB.durable's group sync;
//   - nosync: SyncWrites off and no sync, the cost of the write itself.
//
// Run it on the disk the node will use (TMPDIR), e.g.
//
//	TMPDIR=/var/tmp go test -run '^$' -bench DurableWrite -benchtime 2s ./store
func BenchmarkDurableWrite(b *testing.B) {
	modes := []struct {
		name       string
		syncWrites bool
		durable    bool
	}{
		{"syncwrites", true, true},
		{"sync-after-commit", false, true},
		{"nosync", false, false},
	}
	for _, m := range modes {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/writers=%d", m.name, writers), func(b *testing.B) {
				d, err := openDB(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), m.syncWrites)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				var n atomic.Uint64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range writers {
					wg.Go(func() {
						for i := n.Add(1); i <= uint64(b.N); i = n.Add(1) {
							r := record{
								key:   binary.BigEndian.AppendUint64([]byte("bench/"), i),
								value: make([]byte, 200),
								indexes: []index{
									{key: fmt.Appendf(nil, "bench-a/%d", i), taken: ErrNicknameTaken},
									{key: fmt.Appendf(nil, "bench-b/%d", i), taken: ErrAddressTaken},
								},
							}
							if err := d.update(m.durable, func(txn *badger.Txn) error { return putRecord(txn, r) }); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}
