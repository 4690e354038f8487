package dht_test

import (
	"context"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// startLive runs a node (kernel, DHT, miner) on a store in dir, with a new
// identity if id is nil; stop ends it and closes the store.
func startLive(t *testing.T, id *identity.Identity, dir string, bootstrap ...string) (n *nodetest.Node, stop func()) {
	t.Helper()
	return startLiveTable(t, id, dir, nil, bootstrap...)
}

// startLiveTable is startLive with the routing table given.
func startLiveTable(t *testing.T, id *identity.Identity, dir string, tb *dht.Table, bootstrap ...string) (n *nodetest.Node, stop func()) {
	t.Helper()
	n, err := nodetest.Start(nodetest.Config{Dir: dir, Identity: id, Table: tb, Bootstrap: bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	stop = func() { n.Stop() }
	t.Cleanup(stop)
	return n, stop
}

func newID(t *testing.T) *identity.Identity {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func job(t *testing.T, n *nodetest.Node, job string) error {
	t.Helper()
	_, err := n.Call(context.Background(), dhtapi.Endpoint, dhtapi.JobRequest{Job: job})
	return err
}

func TestNetworkOfKernelsFindsEachOther(t *testing.T) {
	seed, _ := startLive(t, nil, t.TempDir())
	nodes := []*nodetest.Node{seed}
	for i := 0; i < 7; i++ {
		n, _ := startLive(t, nil, t.TempDir(), seed.Target())
		if err := job(t, n, "bootstrap"); err != nil {
			t.Fatalf("node %d bootstrap: %v", i, err)
		}
		nodes = append(nodes, n)
	}
	for i, from := range nodes {
		to := nodes[(i+3)%len(nodes)]
		v, err := from.Call(context.Background(), dhtapi.Endpoint, dhtapi.LookupRequest{Target: to.ID.Address.ID()})
		if err != nil {
			t.Fatalf("lookup from %d: %v", i, err)
		}
		res := v.(dhtapi.LookupResult)
		if len(res.Nodes) == 0 || res.Nodes[0].Address != to.ID.Address {
			t.Fatalf("lookup from node %d did not find node %d (%d nodes, %+v)", i, (i+3)%len(nodes), len(res.Nodes), res)
		}
		if len(res.Nodes) != len(nodes)-1 {
			t.Fatalf("lookup from %d returned %d nodes, want all %d others", i, len(res.Nodes), len(nodes)-1)
		}
	}
	v, _ := nodes[1].Call(context.Background(), dhtapi.Endpoint, dhtapi.StatsRequest{})
	if st := v.(dhtapi.Stats); st.Nodes == 0 || st.Buckets == 0 || st.Note != "" {
		t.Fatalf("stats %+v", st)
	}
}

// A joining node looks up a random id in every bucket up to its closest
// neighbours', not only in those unrefreshed for an hour: its fresh table
// knows the network only near its own id.
func TestBootstrapRefreshesEveryBucket(t *testing.T) {
	seed, _ := startLive(t, nil, t.TempDir())
	for i := 0; i < 5; i++ {
		n, _ := startLive(t, nil, t.TempDir(), seed.Target())
		if err := job(t, n, "bootstrap"); err != nil {
			t.Fatal(err)
		}
	}
	id := newID(t)
	var clock atomic.Int64 // the table's time, so that "fresh" means "before the join"
	clock.Store(time.Now().UnixNano())
	tb := dht.NewTable(id.Address)
	tb.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	n, _ := startLiveTable(t, id, t.TempDir(), tb, seed.Target())
	clock.Add(int64(time.Minute))
	if err := job(t, n, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	stale := tb.Stale(30*time.Second, func(b int) identity.ID { return identity.ID{byte(b)} })
	if len(stale) != 0 {
		t.Fatalf("after joining, %d buckets were not refreshed", len(stale))
	}
	if tb.Len() == 0 {
		t.Fatal("empty table after bootstrap")
	}
	if err := job(t, n, "expire"); err != nil {
		t.Fatalf("expire job: %v", err)
	}
}

func TestTableSurvivesRestart(t *testing.T) {
	seed, _ := startLive(t, nil, t.TempDir())
	id, dir := newID(t), t.TempDir()
	n, stop := startLive(t, id, dir, seed.Target())
	if err := job(t, n, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if n.DHT.Table.Len() == 0 {
		t.Fatal("empty table after bootstrap")
	}
	stop()
	n, _ = startLive(t, id, dir) // no bootstrap nodes this time
	if _, ok := n.DHT.Table.Get(seed.ID.Address); !ok {
		t.Fatalf("restarted node lost its table (%d nodes)", n.DHT.Table.Len())
	}
}

func TestEmptyTableSaysSo(t *testing.T) {
	n, _ := startLive(t, nil, t.TempDir())
	v, _ := n.Call(context.Background(), dhtapi.Endpoint, dhtapi.StatsRequest{})
	if st := v.(dhtapi.Stats); st.Nodes != 0 || !strings.Contains(st.Note, "no bootstrap nodes") {
		t.Fatalf("stats of a lone node: %+v", st)
	}
}

func TestNodeFindRefusals(t *testing.T) {
	a, _ := startLive(t, nil, t.TempDir())
	b, _ := startLive(t, nil, t.TempDir())
	s, err := a.Kernel.Connect(context.Background(), b.Target())
	if err != nil {
		t.Fatal(err)
	}
	target := hex.EncodeToString(make([]byte, 32))
	call := func(data any) error {
		_, err := s.Call(context.Background(), dht.NameFindNode, data)
		return err
	}
	if code := wire.CodeOf(call(dht.FindNode{Target: target})); code != wire.CodeHashcash {
		t.Fatalf("node_find without a stamp: code %v, want 4000", code)
	}
	st, err := hashcash.Mint(context.Background(), dht.StampResource(a.ID.Address), nodetest.DefaultBits) // for the wrong node
	if err != nil {
		t.Fatal(err)
	}
	if code := wire.CodeOf(call(dht.FindNode{Target: target, Stamp: st.String()})); code != wire.CodeHashcash {
		t.Fatalf("stamp for another node: code %v, want 4000", code)
	}
	good, err := hashcash.Mint(context.Background(), dht.StampResource(b.ID.Address), nodetest.DefaultBits)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(dht.FindNode{Target: "zz", Stamp: good.String()}); wire.CodeOf(err) != wire.CodeInvalidData {
		t.Fatalf("malformed target: %v, want 9000", err)
	}
	if err := call(dht.FindNode{Target: target, Stamp: good.String()}); err != nil {
		t.Fatalf("paid node_find: %v", err)
	}
	if code := wire.CodeOf(call(dht.FindNode{Target: target, Stamp: good.String()})); code != wire.CodeHashcash {
		t.Fatalf("replayed stamp: code %v, want 4000", code)
	}
	// A flood is cut off, and the session survives it.
	busy := 0
	for i := 0; i < int(dht.FloodBurst)+20; i++ {
		if wire.CodeOf(call(dht.FindNode{Target: target})) == wire.CodeBusy {
			busy++
		}
	}
	if busy == 0 {
		t.Fatal("a flood of node_find was never refused")
	}
	if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
		t.Fatalf("session after the flood: %v", err)
	}
}

// A record whose key is not the key of the node at its network address
// is dialled with that key expected, refused, and never enters the table.
func TestForgedRecordNeverEntersTable(t *testing.T) {
	a, _ := startLive(t, nil, t.TempDir())
	b, _ := startLive(t, nil, t.TempDir())
	forged := newID(t).Address
	seeds := []dht.Node{{Address: forged, Addrs: []string{b.Kernel.ListenAddr().String()}}}
	found, st, err := dht.Lookup(context.Background(), a.DHT, a.ID.Address.ID(), forged.ID(), seeds)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 || st.Failed != 1 {
		t.Fatalf("lookup through a forged record found %d nodes (stats %+v)", len(found), st)
	}
	if _, ok := a.DHT.Table.Get(forged); ok {
		t.Fatal("forged record entered the table")
	}
	if _, ok := a.DHT.Table.Get(b.ID.Address); ok {
		t.Fatal("the node behind the forged record entered the table without a handshake of its own")
	}
}

// A table node that stops answering is checked when a lookup's request to
// it fails, and leaves the table when the check fails too: lookups do not
// keep asking dead nodes until the next ping job.
func TestFailedRequestEvictsDeadNode(t *testing.T) {
	b, stopB := startLive(t, nil, t.TempDir())
	a, _ := startLive(t, newID(t), t.TempDir(), b.Target())
	if err := job(t, a, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.DHT.Table.Get(b.ID.Address); !ok {
		t.Fatal("b not in a's table after bootstrap")
	}
	stopB()
	// The lookup's request to b fails (b is gone): a then checks b.
	a.Call(context.Background(), dhtapi.Endpoint, dhtapi.LookupRequest{Target: newID(t).Address.ID()})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := a.DHT.Table.Get(b.ID.Address); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("dead node b still in a's table 20 s after a failed request")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node_find to a node at an address from another node's reply that
// cannot be reached says nothing of the node: it stays in the table.
func TestFailedDialDoesNotEvict(t *testing.T) {
	a, _ := startLive(t, nil, t.TempDir())
	v, _ := startLive(t, nil, t.TempDir())
	a.DHT.Table.Add(dht.Node{Address: v.ID.Address, Addrs: []string{v.Kernel.ListenAddr().String()}})
	if _, ok := a.DHT.Table.Get(v.ID.Address); !ok {
		t.Fatal("setup")
	}
	forged := dht.Node{Address: v.ID.Address, Addrs: []string{"127.0.0.1:1"}}
	_, err := a.DHT.FindNode(context.Background(), forged, a.ID.Address.ID())
	if err == nil {
		t.Fatal("FindNode through an unreachable address succeeded")
	}
	if _, ok := a.DHT.Table.Get(v.ID.Address); !ok {
		t.Fatal("victim evicted from the table by a forged record")
	}
}

// A peer that dials in enters the table only once a dial back to the port
// it claims has shown its key there: a claim of another node's port is
// never handed out.
func TestClaimedPortCheckedBeforeTableEntry(t *testing.T) {
	// Pins are synced as often; restored once the nodes have stopped.
	t.Cleanup(dht.SetSaveEvery(50 * time.Millisecond))
	v, _ := startLive(t, nil, t.TempDir())
	c, _ := startLive(t, nil, t.TempDir())
	// The liar connects to v claiming c's port.
	liar := newID(t)
	ep, err := transport.New(liar)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := ep.Dial(ctx, v.Kernel.ListenAddr().String(), &v.ID.Address)
	if err != nil {
		t.Fatal(err)
	}
	s, err := peer.Handshake(ctx, conn, peer.Config{Identity: liar, ListenPort: c.Kernel.ListenAddr().Port})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(ctx)
	defer s.Close("done")
	// v dials c expecting the liar's key: c sees a handshake that fails.
	for c.Kernel.Peers().TrafficIn == 0 {
		if ctx.Err() != nil {
			t.Fatal("v never checked the liar's claimed port")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An honest peer that dials in is checked and enters the table.
	h, _ := startLive(t, nil, t.TempDir())
	if _, err := h.Kernel.Connect(ctx, v.Target()); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := v.DHT.Table.Get(h.ID.Address); ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("an honest inbound peer never entered the table")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := v.DHT.Table.Get(liar.Address); ok {
		t.Fatal("a peer claiming another node's port entered the table")
	}
	// The table's nodes are pinned: the kernel keeps their sessions.
	for !v.Kernel.Pinned(h.ID.Address) {
		if ctx.Err() != nil {
			t.Fatal("a table node's session never pinned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
