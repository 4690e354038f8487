package dht

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// newAddr returns a random address: the table needs no real key.
func newAddr(t testing.TB) identity.Address {
	var a identity.Address
	rand.Read(a[:])
	return a
}

// addrInBucket returns a new address whose id falls in bucket b of self.
func addrInBucket(t testing.TB, self identity.ID, b int) identity.Address {
	for {
		a := newAddr(t)
		if CommonPrefixLen(self, a.ID()) == b {
			return a
		}
	}
}

func TestFullBucketKeepsOldNodesUntilTheyFail(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	var in []identity.Address
	for i := 0; i < K; i++ {
		a := addrInBucket(t, self.ID(), 0)
		in = append(in, a)
		if _, full := tb.Add(Node{Address: a}); full {
			t.Fatalf("bucket full after %d nodes", i)
		}
	}
	newcomer := addrInBucket(t, self.ID(), 0)
	check, full := tb.Add(Node{Address: newcomer})
	if !full || check.Address != in[0] {
		t.Fatalf("Add to a full bucket: full=%v check=%v, want the least recently seen %v", full, check.Address, in[0])
	}
	if _, ok := tb.Get(newcomer); ok {
		t.Fatal("newcomer evicted a node without a liveness check")
	}
	// The oldest answers: it becomes the most recently seen; newcomer waits.
	tb.Add(Node{Address: in[0]})
	if check, _ := tb.Add(Node{Address: newcomer}); check.Address != in[1] {
		t.Fatalf("after in[0] answered, check %v, want in[1]", check.Address)
	}
	// in[1] fails its check: the newcomer takes its place.
	tb.Failed(in[1])
	if _, ok := tb.Get(in[1]); ok {
		t.Fatal("failed node still in the table")
	}
	if _, ok := tb.Get(newcomer); !ok {
		t.Fatal("replacement not promoted")
	}
	if tb.Len() != K || tb.Buckets() != 1 {
		t.Fatalf("Len %d Buckets %d", tb.Len(), tb.Buckets())
	}
}

func TestSelfAndZeroNeverAdded(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	tb.Add(Node{Address: self})
	tb.Add(Node{})
	if tb.Len() != 0 {
		t.Fatalf("table holds %d nodes", tb.Len())
	}
}

func TestAddKeepsAddresses(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	a := newAddr(t)
	tb.Add(Node{Address: a, Addrs: []string{"10.0.0.1:25000"}})
	tb.Add(Node{Address: a, Addrs: []string{"[::1]:25000"}})
	n, _ := tb.Get(a)
	if len(n.Addrs) != 2 || n.Addrs[0] != "[::1]:25000" {
		t.Fatalf("addrs %v, want newest first and both kept", n.Addrs)
	}
}

// Closest must return exactly what sorting the whole table would, for
// targets in every kind of bucket: shallow, deep, empty, self's own id.
func TestClosestMatchesFullSort(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	for i := 0; i < 500; i++ {
		tb.Add(Node{Address: newAddr(t)})
	}
	// A few nodes deep in the table, near self.
	for b := 8; b < 14; b++ {
		tb.Add(Node{Address: addrInBucket(t, self.ID(), b)})
	}
	all := tb.Nodes()
	targets := []identity.ID{self.ID()}
	for b := 0; b < 20; b++ {
		r := newAddr(t)
		targets = append(targets, RandomIDInBucket(self.ID(), b, r[:]))
	}
	for i := 0; i < 50; i++ {
		targets = append(targets, newAddr(t).ID())
	}
	for ti, target := range targets {
		want := slices.Clone(all)
		SortByDistance(want, target)
		for _, n := range []int{1, K, K + 1, 3 * K, len(all) + 5} {
			got := tb.Closest(target, n)
			if len(got) != min(n, len(all)) {
				t.Fatalf("target %d: Closest(%d) returned %d of %d nodes", ti, n, len(got), len(all))
			}
			for i := range got {
				if got[i].Address != want[i].Address {
					t.Fatalf("target %d: Closest(%d)[%d] is not the %d-th closest node", ti, n, i, i)
				}
			}
		}
	}
	if got := tb.Closest(self.ID(), 0); len(got) != 0 {
		t.Fatalf("Closest(0) returned %d nodes", len(got))
	}
}

func TestRandomIDInBucket(t *testing.T) {
	self := newAddr(t).ID()
	r := make([]byte, 32)
	for _, b := range []int{0, 1, 7, 8, 9, 100, 255} {
		rand.Read(r)
		if got := CommonPrefixLen(self, RandomIDInBucket(self, b, r)); got != b {
			t.Fatalf("bucket %d: id has prefix length %d", b, got)
		}
	}
}

func TestStaleBuckets(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	now := time.Now()
	tb.now = func() time.Time { return now }
	tb.Add(Node{Address: addrInBucket(t, self.ID(), 2)})
	if ids := tb.Stale(time.Hour, func(b int) identity.ID { return identity.ID{} }); len(ids) != 0 {
		t.Fatalf("fresh table has %d stale buckets", len(ids))
	}
	now = now.Add(2 * time.Hour)
	var asked []int
	ids := tb.Stale(time.Hour, func(b int) identity.ID { asked = append(asked, b); return identity.ID{byte(b)} })
	if len(ids) != 3 || asked[2] != 2 {
		t.Fatalf("stale buckets %v, want 0..2", asked)
	}
	tb.Refreshed(RandomIDInBucket(self.ID(), 1, make([]byte, 32)))
	if ids := tb.Stale(time.Hour, func(b int) identity.ID { return identity.ID{} }); len(ids) != 2 {
		t.Fatalf("after refreshing bucket 1: %d stale, want 2", len(ids))
	}
}

func TestStaleZeroAgeTakesEveryBucket(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	tb.Add(Node{Address: addrInBucket(t, self.ID(), 3)})
	if ids := tb.Stale(0, func(b int) identity.ID { return identity.ID{} }); len(ids) != 4 {
		t.Fatalf("Stale(0) on a fresh table: %d buckets, want 4 (0..3)", len(ids))
	}
}

func TestExpireReplacements(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	now := time.Now()
	tb.now = func() time.Time { return now }
	for i := 0; i < K; i++ {
		tb.Add(Node{Address: addrInBucket(t, self.ID(), 0)})
	}
	old := addrInBucket(t, self.ID(), 0)
	tb.Add(Node{Address: old}) // waits as a replacement, seen now
	now = now.Add(2 * time.Hour)
	fresh := addrInBucket(t, self.ID(), 0)
	tb.Add(Node{Address: fresh})
	if n := tb.ExpireReplacements(time.Hour); n != 1 {
		t.Fatalf("expired %d replacements, want 1", n)
	}
	// A failed node is replaced by the fresh replacement, never the expired one.
	victim := tb.Nodes()[0].Address
	tb.Failed(victim)
	if _, ok := tb.Get(fresh); !ok {
		t.Fatal("fresh replacement not promoted")
	}
	tb.Failed(tb.Nodes()[0].Address)
	if _, ok := tb.Get(old); ok {
		t.Fatal("expired replacement was promoted")
	}
	if tb.Len() != K-1 {
		t.Fatalf("table has %d nodes, want %d", tb.Len(), K-1)
	}
}

// BenchmarkClosest measures the node_find handler's table query on tables
// of 1000 and 5000 random nodes (a full table holds what fits: most nodes
// fall in the first buckets, which keep K each).
func BenchmarkClosest(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			self := newAddr(b)
			tb := NewTable(self)
			for range n {
				tb.Add(Node{Address: newAddr(b), Addrs: []string{"127.0.0.1:1"}})
			}
			targets := make([]identity.ID, 64)
			for i := range targets {
				targets[i] = newAddr(b).ID()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				tb.Closest(targets[i%len(targets)], K)
			}
			b.ReportMetric(float64(tb.Len()), "nodes")
		})
	}
}

// One host, or one /24, cannot fill the table with identities of its own.
func TestTableLimitsNodesPerNetwork(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	add := func(addr string) identity.Address {
		a := newAddr(t)
		tb.Add(Node{Address: a, Addrs: []string{addr}})
		return a
	}
	for i := 0; i < 40; i++ { // 40 throwaway identities from one IP
		add(fmt.Sprintf("203.0.113.7:%d", 20000+i))
	}
	if n := tb.Len(); n != MaxPerIP {
		t.Fatalf("40 identities at one IP: table holds %d, want %d", n, MaxPerIP)
	}
	for i := 0; i < 40; i++ { // and from 40 IPs of one /24
		add(fmt.Sprintf("203.0.113.%d:25000", 100+i))
	}
	if n := tb.Len(); n != MaxPerSubnet {
		t.Fatalf("identities in one /24: table holds %d, want %d", n, MaxPerSubnet)
	}
	for i := 0; i < 40; i++ { // IPv6: one /64 is one subnet
		add(fmt.Sprintf("[2001:db8::%x]:25000", i+1))
	}
	if n := tb.Len(); n != 2*MaxPerSubnet {
		t.Fatalf("identities in one IPv6 /64: table holds %d, want %d", n, 2*MaxPerSubnet)
	}
	// Other networks are unaffected.
	other := add("198.51.100.1:25000")
	if _, ok := tb.Get(other); !ok {
		t.Fatal("a node of another network was refused")
	}
	// A node that leaves gives its place to the next of its network.
	var at7 []identity.Address
	for _, n := range tb.Nodes() {
		if n.Addrs[0] == "203.0.113.7:20000" || n.Addrs[0] == "203.0.113.7:20001" {
			at7 = append(at7, n.Address)
		}
	}
	if len(at7) != 2 {
		t.Fatalf("setup: %d nodes at 203.0.113.7", len(at7))
	}
	tb.Failed(at7[0])
	if _, ok := tb.Get(add("203.0.113.7:30000")); !ok {
		t.Fatal("room left by a failed node not given to another node of its IP")
	}
	// A node in the table keeps its place when it comes back from a full
	// network, and keeps the address it had.
	before, _ := tb.Get(at7[1])
	tb.Add(Node{Address: at7[1], Addrs: []string{"[2001:db8::ffff]:1"}})
	if n, ok := tb.Get(at7[1]); !ok || !slices.Equal(n.Addrs, before.Addrs) {
		t.Fatalf("known node seen at a full IP: in table %v, addrs %v", ok, n.Addrs)
	}
}

// Local test networks run many nodes on one address: loopback and private
// addresses are not limited.
func TestTableDoesNotLimitLocalNetworks(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	for i := 0; i < 6; i++ { // K nodes at most: none waits for room
		tb.Add(Node{Address: newAddr(t), Addrs: []string{fmt.Sprintf("127.0.0.1:%d", 20000+i)}})
		tb.Add(Node{Address: newAddr(t), Addrs: []string{fmt.Sprintf("[::1]:%d", 20000+i)}})
		tb.Add(Node{Address: newAddr(t), Addrs: []string{fmt.Sprintf("192.168.1.1:%d", 20000+i)}})
	}
	if n := tb.Len(); n != 18 {
		t.Fatalf("18 local nodes, 6 per address: table holds %d", n)
	}
}

// A replacement that does not fit the limits is passed over when a place
// frees up.
func TestReplacementRespectsLimits(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	var in []identity.Address
	for i := 0; i < K; i++ {
		a := addrInBucket(t, self.ID(), 0)
		in = append(in, a)
		tb.Add(Node{Address: a, Addrs: []string{fmt.Sprintf("198.51.%d.1:1", i)}})
	}
	// Two replacements wait; by the time a place frees, the IP of the
	// newer one is full.
	fits := addrInBucket(t, self.ID(), 0)
	tb.Add(Node{Address: fits, Addrs: []string{"203.0.113.1:1"}})
	late := addrInBucket(t, self.ID(), 0)
	tb.Add(Node{Address: late, Addrs: []string{"203.0.113.2:1"}})
	for i := 0; i < MaxPerIP; i++ {
		tb.Add(Node{Address: addrInBucket(t, self.ID(), 1), Addrs: []string{fmt.Sprintf("203.0.113.2:%d", 2+i)}})
	}
	tb.Failed(in[0])
	if _, ok := tb.Get(late); ok {
		t.Fatal("a replacement over its IP's limit was promoted")
	}
	if _, ok := tb.Get(fits); !ok {
		t.Fatal("the replacement that fits was not promoted")
	}
}
