package dht_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

// waitFor polls cond until it holds, failing the test after a deadline
// far beyond what the work takes on a busy machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not done in 30 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A node killed soon after its table changed finds the table when it
// restarts, and reconnects to the saved nodes at once, without bootstrap
// settings. The kill is a copy of the store taken while the node runs:
// what a SIGKILL would leave on disk.
func TestTableSavedSoonAndRejoinedAfterKill(t *testing.T) {
	t.Cleanup(dht.SetSaveEvery(10 * time.Millisecond))
	seed, _ := startLive(t, nil, t.TempDir())
	id, dir := newID(t), t.TempDir()
	n, stop := startLive(t, id, dir, seed.Target())
	if err := job(t, n, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	saved := func() bool {
		var nodes []dht.Node
		if err := n.DB.Meta().Get(dht.TableKey, &nodes); err != nil {
			return false
		}
		for _, nd := range nodes {
			if nd.Address == seed.ID.Address {
				return true
			}
		}
		return false
	}
	waitFor(t, "the table saved while the node runs", saved)

	killed := t.TempDir()
	if err := os.CopyFS(killed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	stop()
	connected := func() bool {
		for _, c := range seed.Kernel.Peers().Connections {
			if c.Address == id.Address.String() {
				return true
			}
		}
		return false
	}
	waitFor(t, "the seed sees the killed node go", func() bool { return !connected() })
	r, _ := startLive(t, id, killed) // no bootstrap nodes
	if _, ok := r.DHT.Table.Get(seed.ID.Address); !ok {
		t.Fatalf("restarted node lost its table (%d nodes)", r.DHT.Table.Len())
	}
	// Only the rejoin dials: the node has no bootstrap or connect
	// settings, and no job runs without cron.
	waitFor(t, "the restarted node reconnects to the saved seed", connected)
}

// A node low on disk space refuses node_find, which would spend a stamp
// (a write), with 9110, and serves again once there is room; the session
// and what does not write (ping) go on.
func TestNodeFindRefusedWhenDiskLow(t *testing.T) {
	a, _ := startLive(t, nil, t.TempDir())
	b, _ := startLive(t, nil, t.TempDir())
	var low atomic.Bool
	b.DB.SetSpaceCheck(func() error {
		if low.Load() {
			return fmt.Errorf("%w: test", store.ErrLowSpace)
		}
		return nil
	})
	s, err := a.Kernel.Connect(context.Background(), b.Target())
	if err != nil {
		t.Fatal(err)
	}
	find := func() error {
		st, err := hashcash.Mint(context.Background(), dht.StampResource(b.ID.Address), nodetest.DefaultBits)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Call(context.Background(), dht.NameFindNode, dht.FindNode{Target: a.ID.Address.ID().String(), Stamp: st.String()})
		return err
	}
	low.Store(true)
	for i := range 30 { // the original crash came at the 28th
		if err := find(); wire.CodeOf(err) != wire.CodeInsufficientStorage {
			t.Fatalf("node_find %d on a full disk: %v, want 9110", i, err)
		}
	}
	if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
		t.Fatalf("ping on a full disk: %v", err)
	}
	low.Store(false)
	if err := find(); err != nil {
		t.Fatalf("node_find once there is room: %v", err)
	}
	if err := b.DB.Meta().Put("x", 1); err != nil || errors.Is(err, store.ErrLowSpace) {
		t.Fatalf("write once there is room: %v", err)
	}
}
