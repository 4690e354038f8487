package dht

import (
	"crypto/rand"
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

func TestClosestIsSortedAndBounded(t *testing.T) {
	self := newAddr(t)
	tb := NewTable(self)
	for i := 0; i < 200; i++ {
		tb.Add(Node{Address: newAddr(t)})
	}
	target := newAddr(t).ID()
	got := tb.Closest(target, K)
	if len(got) != K {
		t.Fatalf("Closest returned %d", len(got))
	}
	all := tb.Nodes()
	SortByDistance(all, target)
	for i := range got {
		if got[i].Address != all[i].Address {
			t.Fatalf("Closest[%d] is not the %d-th closest", i, i)
		}
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
