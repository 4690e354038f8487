package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRelayPut measures envelopes of 1 KiB stored by Relay.Put with
// 1, 8 and 64 concurrent putters, each Put returning once its envelope is
// durable, and reports envelopes/s and the envelopes per transaction. The
// mode "durable" is the store as the node opens it (SyncWrites); "noflush"
// opens badger without SyncWrites and skips the sync, leaving the cost of
// encoding, checking and writing: the difference is the flushes'.
//
//	TMPDIR=/var/tmp go test -run '^$' -bench RelayPut -benchtime 20000x ./store
func BenchmarkRelayPut(b *testing.B) {
	for _, mode := range []string{"durable", "noflush"} {
		for _, putters := range []int{1, 8, 64, 256} {
			b.Run(fmt.Sprintf("%s/putters=%d", mode, putters), func(b *testing.B) {
				d, err := openDB(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), mode == "durable")
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				d.syncWrites = true // "noflush": durable() syncs nothing
				r := d.OpenRelay(RelayOptions{Limits: RelayLimits{MaxBytes: 1 << 40, MaxRecipientBytes: 1 << 40}})
				defer r.Close()
				exp := time.Now().Add(time.Hour)
				body := make([]byte, 1024)
				var n atomic.Uint64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range putters {
					wg.Go(func() {
						for i := n.Add(1); i <= uint64(b.N); i = n.Add(1) {
							env := RelayEnvelope{Expires: exp, Envelope: body}
							binary.BigEndian.PutUint64(env.ID[:], i)
							env.Recipient[0] = byte(i % 50)
							if err := r.Put(context.Background(), env); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "envelopes/s")
				b.ReportMetric(float64(b.N)/float64(r.commits.Load()), "envelopes/txn")
			})
		}
	}
}
