package dht

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

const testBits = 4

type liveNode struct {
	id  *identity.Identity
	k   *kernel.Kernel
	svc *Service
	ep  *router.Endpoint
}

func (n *liveNode) target() string { return fmt.Sprintf("%s@%s", n.id.Address, n.k.ListenAddr()) }

// startLive runs a kernel and a DHT service on a store in dir; stop ends
// them and closes the store.
func startLive(t *testing.T, id *identity.Identity, dir string, bootstrap ...string) (n *liveNode, stop func()) {
	t.Helper()
	return startLiveTable(t, id, dir, NewTable(id.Address), bootstrap...)
}

// startLiveTable is startLive with the routing table given.
func startLiveTable(t *testing.T, id *identity.Identity, dir string, tb *Table, bootstrap ...string) (n *liveNode, stop func()) {
	t.Helper()
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := router.New()
	logger := slog.New(slog.DiscardHandler)
	svc := &Service{
		Router: r, Logger: logger, Table: tb, Meta: db.Meta(),
		Checker: &stamps.Checker{Spent: db.Stamps(), Policy: hashcash.Policy{Expiry: StampExpiry}}, Bits: testBits, Bootstrap: bootstrap,
		RequestTimeout: 5 * time.Second,
		Mint: func(ctx context.Context, resource string, bits int) (string, error) {
			st, err := hashcash.Mint(ctx, resource, bits, hashcash.WithWorkers(1))
			if err != nil {
				return "", err
			}
			return st.String(), nil
		},
	}
	k, err := kernel.New(kernel.Config{
		Identity: id, Router: r, Logger: logger, Listen: "127.0.0.1:0",
		MaxInbound: 64, MaxOutbound: 64, MaxPerIP: 64, MaxFrame: 1 << 20,
		HandshakeTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		Hashcash: wire.HashcashPolicy{Purpose: testBits}, Handlers: svc.Handlers(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	kready, dready := make(chan struct{}), make(chan struct{})
	go func() { done <- k.Run(ctx, func() { close(kready) }) }()
	<-kready
	go func() { done <- svc.Run(ctx, func() { close(dready) }) }()
	<-dready
	ep, _ := r.Register("test", 1)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for i := 0; i < 2; i++ {
			<-done
		}
		db.Close()
	}
	t.Cleanup(stop)
	return &liveNode{id: id, k: k, svc: svc, ep: ep}, stop
}

func newID(t *testing.T) *identity.Identity {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (n *liveNode) job(t *testing.T, job string) error {
	t.Helper()
	_, err := n.ep.Call(context.Background(), Endpoint, JobRequest{Job: job})
	return err
}

func TestNetworkOfKernelsFindsEachOther(t *testing.T) {
	seed, _ := startLive(t, newID(t), t.TempDir())
	nodes := []*liveNode{seed}
	for i := 0; i < 7; i++ {
		n, _ := startLive(t, newID(t), t.TempDir(), seed.target())
		if err := n.job(t, "bootstrap"); err != nil {
			t.Fatalf("node %d bootstrap: %v", i, err)
		}
		nodes = append(nodes, n)
	}
	for i, from := range nodes {
		to := nodes[(i+3)%len(nodes)]
		v, err := from.ep.Call(context.Background(), Endpoint, LookupRequest{Target: to.id.Address.ID()})
		if err != nil {
			t.Fatalf("lookup from %d: %v", i, err)
		}
		res := v.(LookupResult)
		if len(res.Nodes) == 0 || res.Nodes[0].Address != to.id.Address {
			t.Fatalf("lookup from node %d did not find node %d (%d nodes, %+v)", i, (i+3)%len(nodes), len(res.Nodes), res.Stats)
		}
		if len(res.Nodes) != len(nodes)-1 {
			t.Fatalf("lookup from %d returned %d nodes, want all %d others", i, len(res.Nodes), len(nodes)-1)
		}
	}
	v, _ := nodes[1].ep.Call(context.Background(), Endpoint, StatsRequest{})
	if st := v.(Stats); st.Nodes == 0 || st.Buckets == 0 || st.Note != "" {
		t.Fatalf("stats %+v", st)
	}
}

// A joining node looks up a random id in every bucket up to its closest
// neighbours', not only in those unrefreshed for an hour: its fresh table
// knows the network only near its own id.
func TestBootstrapRefreshesEveryBucket(t *testing.T) {
	seed, _ := startLive(t, newID(t), t.TempDir())
	for i := 0; i < 5; i++ {
		n, _ := startLive(t, newID(t), t.TempDir(), seed.target())
		if err := n.job(t, "bootstrap"); err != nil {
			t.Fatal(err)
		}
	}
	id := newID(t)
	var clock atomic.Int64 // the table's time, so that "fresh" means "before the join"
	clock.Store(time.Now().UnixNano())
	tb := NewTable(id.Address)
	tb.now = func() time.Time { return time.Unix(0, clock.Load()) }
	n, _ := startLiveTable(t, id, t.TempDir(), tb, seed.target())
	clock.Add(int64(time.Minute))
	if err := n.job(t, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	stale := tb.Stale(30*time.Second, func(b int) identity.ID { return identity.ID{byte(b)} })
	if len(stale) != 0 {
		t.Fatalf("after joining, %d buckets were not refreshed", len(stale))
	}
	if tb.Len() == 0 {
		t.Fatal("empty table after bootstrap")
	}
	if err := n.job(t, "expire"); err != nil {
		t.Fatalf("expire job: %v", err)
	}
}

func TestTableSurvivesRestart(t *testing.T) {
	seed, _ := startLive(t, newID(t), t.TempDir())
	id, dir := newID(t), t.TempDir()
	n, stop := startLive(t, id, dir, seed.target())
	if err := n.job(t, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if n.svc.Table.Len() == 0 {
		t.Fatal("empty table after bootstrap")
	}
	stop()
	n, _ = startLive(t, id, dir) // no bootstrap nodes this time
	if _, ok := n.svc.Table.Get(seed.id.Address); !ok {
		t.Fatalf("restarted node lost its table (%d nodes)", n.svc.Table.Len())
	}
}

func TestEmptyTableSaysSo(t *testing.T) {
	n, _ := startLive(t, newID(t), t.TempDir())
	v, _ := n.ep.Call(context.Background(), Endpoint, StatsRequest{})
	if st := v.(Stats); st.Nodes != 0 || !strings.Contains(st.Note, "no bootstrap nodes") {
		t.Fatalf("stats of a lone node: %+v", st)
	}
}

func TestNodeFindRefusals(t *testing.T) {
	a, _ := startLive(t, newID(t), t.TempDir())
	b, _ := startLive(t, newID(t), t.TempDir())
	s, err := a.k.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	target := hex.EncodeToString(make([]byte, 32))
	call := func(data any) error {
		_, err := s.Call(context.Background(), NameFindNode, data)
		return err
	}
	if code := peer.CodeOf(call(FindNode{Target: target})); code != wire.CodeHashcash {
		t.Fatalf("node_find without a stamp: code %v, want 4000", code)
	}
	st, err := hashcash.Mint(context.Background(), StampResource(a.id.Address), testBits) // for the wrong node
	if err != nil {
		t.Fatal(err)
	}
	if code := peer.CodeOf(call(FindNode{Target: target, Stamp: st.String()})); code != wire.CodeHashcash {
		t.Fatalf("stamp for another node: code %v, want 4000", code)
	}
	good, err := hashcash.Mint(context.Background(), StampResource(b.id.Address), testBits)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(FindNode{Target: "zz", Stamp: good.String()}); peer.CodeOf(err) != wire.CodeInvalidData {
		t.Fatalf("malformed target: %v, want 9000", err)
	}
	if err := call(FindNode{Target: target, Stamp: good.String()}); err != nil {
		t.Fatalf("paid node_find: %v", err)
	}
	if code := peer.CodeOf(call(FindNode{Target: target, Stamp: good.String()})); code != wire.CodeHashcash {
		t.Fatalf("replayed stamp: code %v, want 4000", code)
	}
	// A flood is cut off, and the session survives it.
	busy := 0
	for i := 0; i < int(floodBurst)+20; i++ {
		if peer.CodeOf(call(FindNode{Target: target})) == wire.CodeBusy {
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

func TestFoundNodeValidate(t *testing.T) {
	from := newAddr(t)
	ok := Record{Address: newAddr(t), Addrs: []string{"192.0.2.1:25000"}}
	many := make([]Record, K+1)
	for i := range many {
		many[i] = Record{Address: newAddr(t), Addrs: []string{"192.0.2.1:25000"}}
	}
	for name, f := range map[string]FoundNode{
		"oversize":      {Nodes: many},
		"zero address":  {Nodes: []Record{ok, {Addrs: []string{"192.0.2.1:1"}}}},
		"repeated":      {Nodes: []Record{ok, ok}},
		"no addrs":      {Nodes: []Record{{Address: newAddr(t)}}},
		"hostname":      {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"evil.example:25000"}}}},
		"port zero":     {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"192.0.2.1:0"}}}},
		"unspecified":   {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"0.0.0.0:25000"}}}},
		"too many addr": {Nodes: []Record{{Address: newAddr(t), Addrs: []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.1:4", "192.0.2.1:5"}}}},
	} {
		if err := f.Validate(from); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRecord", name, err)
		}
	}
	good := FoundNode{Nodes: []Record{ok, {Address: newAddr(t), Addrs: []string{"[2001:db8::1]:25000"}}}}
	if err := good.Validate(from); err != nil {
		t.Fatalf("valid reply refused: %v", err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 64), strings.Repeat("0", 63)} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}

// A record whose key is not the key of the node at its network address
// is dialled with that key expected, refused, and never enters the table.
func TestForgedRecordNeverEntersTable(t *testing.T) {
	a, _ := startLive(t, newID(t), t.TempDir())
	b, _ := startLive(t, newID(t), t.TempDir())
	forged := newID(t).Address
	seeds := []Node{{Address: forged, Addrs: []string{b.k.ListenAddr().String()}}}
	found, st, err := Lookup(context.Background(), a.svc, a.id.Address.ID(), forged.ID(), seeds)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 || st.Failed != 1 {
		t.Fatalf("lookup through a forged record found %d nodes (stats %+v)", len(found), st)
	}
	if _, ok := a.svc.Table.Get(forged); ok {
		t.Fatal("forged record entered the table")
	}
	if _, ok := a.svc.Table.Get(b.id.Address); ok {
		t.Fatal("the node behind the forged record entered the table without a handshake of its own")
	}
}

func TestReachableKeepsScope(t *testing.T) {
	mk := func(addrs ...string) Node { return Node{Address: newAddr(t), Addrs: addrs} }
	nodes := func() []Node {
		return []Node{
			mk("127.0.0.1:25000"),
			mk("10.1.2.3:25000", "203.0.113.9:25000"),
			mk("192.168.1.5:25000"),
			mk("[fe80::1]:25000"),
			mk("198.51.100.7:25000"),
		}
	}
	public := Reachable(nodes(), netip.MustParseAddr("203.0.113.1"))
	if len(public) != 2 || public[0].Addrs[0] != "203.0.113.9:25000" || len(public[0].Addrs) != 1 {
		t.Fatalf("from a public peer: %+v, want only the public addresses", public)
	}
	private := Reachable(nodes(), netip.MustParseAddr("192.168.1.1"))
	if len(private) != 4 {
		t.Fatalf("from a private peer: %d nodes, want all but loopback", len(private))
	}
	if got := Reachable(nodes(), netip.MustParseAddr("127.0.0.1")); len(got) != 5 {
		t.Fatalf("from loopback: %d nodes, want all", len(got))
	}
}

// A table node that stops answering is checked when a lookup's request to
// it fails, and leaves the table when the check fails too: lookups do not
// keep asking dead nodes until the next ping job.
func TestFailedRequestEvictsDeadNode(t *testing.T) {
	b, stopB := startLive(t, newID(t), t.TempDir())
	a, _ := startLive(t, newID(t), t.TempDir(), b.target())
	if err := a.job(t, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.svc.Table.Get(b.id.Address); !ok {
		t.Fatal("b not in a's table after bootstrap")
	}
	stopB()
	// The lookup's request to b fails (b is gone): a then checks b.
	a.ep.Call(context.Background(), Endpoint, LookupRequest{Target: newID(t).Address.ID()})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := a.svc.Table.Get(b.id.Address); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("dead node b still in a's table 20 s after a failed request")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Only a failure that may mean the peer is gone makes it a suspect: not
// this node's own limits or minting, nor an error frame the peer sent.
func TestPeerFailed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("dial 192.0.2.1:25000: %w", errors.New("connection refused")), true},
		{fmt.Errorf("node_find to x: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("node_find to x: %w", peer.ErrPeerQuit), true},
		{fmt.Errorf("connect x: %w", kernel.ErrTooManyPeers), false},
		{fmt.Errorf("call: %w", router.ErrInboxFull), false},
		{fmt.Errorf("call: %w", peer.ErrQueueFull), false},
		{localError{fmt.Errorf("node_find to x: mint: %w", context.DeadlineExceeded)}, false},
		{fmt.Errorf("node_find to x: %w", &peer.ProtocolError{Code: wire.CodeBusy, Remote: true}), false},
		{fmt.Errorf("node_find to x: %w", &peer.ProtocolError{Code: wire.CodeBusy}), true},
	} {
		if got := peerFailed(tc.err); got != tc.want {
			t.Errorf("peerFailed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
