// Package dht is the node's Kademlia routing table and lookup.
//
// Ids are 256 bits (the SHA-256 of a node's public key), compared by XOR
// distance. The table keeps up to K nodes per bucket, ordered from least to
// most recently seen. A full bucket does not drop its oldest node for a new
// one: the caller checks the oldest node's liveness first (Kademlia's rule,
// which favours long-lived nodes and resists flooding), and a newcomer that
// finds no room waits in the bucket's replacement cache.
//
// Only nodes whose key a handshake proved enter the table (Add); records
// learned from other nodes' answers are only candidates to contact.
package dht

import (
	"bytes"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// K is the bucket size and the number of closest nodes a lookup returns.
const K = 20

// IDBits is the length of an id in bits, and so the number of buckets.
const IDBits = 256

// A Node is what the table knows of a peer.
type Node struct {
	Address  identity.Address `json:"address"`
	Addrs    []string         `json:"addrs"` // host:port to dial, most recently confirmed first
	LastSeen time.Time        `json:"last_seen"`
}

// ID returns the node's DHT id.
func (n Node) ID() identity.ID { return n.Address.ID() }

// Distance returns the XOR distance of a and b.
func Distance(a, b identity.ID) identity.ID {
	var d identity.ID
	for i := range d {
		d[i] = a[i] ^ b[i]
	}
	return d
}

// CommonPrefixLen returns the number of leading bits a and b share.
func CommonPrefixLen(a, b identity.ID) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return IDBits
}

// Closer reports whether a is closer to target than b.
func Closer(target, a, b identity.ID) bool {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			return da < db
		}
	}
	return false
}

type bucket struct {
	nodes        []Node // least recently seen first
	replacements []Node // most recent last, at most K
	refreshed    time.Time
}

// Table is a Kademlia routing table. It is safe for concurrent use.
type Table struct {
	self identity.ID
	now  func() time.Time

	mu      sync.Mutex
	buckets [IDBits]bucket
}

// NewTable returns an empty table for the node with the given address.
func NewTable(self identity.Address) *Table {
	t := &Table{self: self.ID(), now: time.Now}
	now := t.now()
	for i := range t.buckets {
		t.buckets[i].refreshed = now
	}
	return t
}

// Self returns the id of the table's own node.
func (t *Table) Self() identity.ID { return t.self }

func (t *Table) bucketOf(id identity.ID) int {
	cpl := CommonPrefixLen(t.self, id)
	if cpl >= IDBits {
		return -1 // our own id
	}
	return cpl
}

// Add records that n was seen alive, its key proved by a handshake. It
// returns the node the caller should check for liveness when n's bucket is
// full (n then waits in the replacement cache), or ok when n is in the table.
func (t *Table) Add(n Node) (check Node, full bool) {
	b := t.bucketOf(n.ID())
	if b < 0 || n.Address.IsZero() {
		return Node{}, false
	}
	if n.LastSeen.IsZero() {
		n.LastSeen = t.now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bk := &t.buckets[b]
	if i := index(bk.nodes, n.Address); i >= 0 {
		n.Addrs = mergeAddrs(n.Addrs, bk.nodes[i].Addrs)
		bk.nodes = append(slices.Delete(bk.nodes, i, i+1), n)
		return Node{}, false
	}
	if len(bk.nodes) < K {
		bk.nodes = append(bk.nodes, n)
		bk.replacements = remove(bk.replacements, n.Address)
		return Node{}, false
	}
	bk.replacements = append(remove(bk.replacements, n.Address), n)
	if len(bk.replacements) > K {
		bk.replacements = bk.replacements[1:]
	}
	return bk.nodes[0], true
}

// Failed records that n did not answer a liveness check (or a request): it
// leaves the table, and the most recently seen replacement takes its place.
func (t *Table) Failed(addr identity.Address) {
	b := t.bucketOf(addr.ID())
	if b < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bk := &t.buckets[b]
	i := index(bk.nodes, addr)
	if i < 0 {
		bk.replacements = remove(bk.replacements, addr)
		return
	}
	bk.nodes = slices.Delete(bk.nodes, i, i+1)
	if n := len(bk.replacements); n > 0 {
		bk.nodes = append(bk.nodes, bk.replacements[n-1])
		bk.replacements = bk.replacements[:n-1]
	}
}

// Closest returns up to n nodes of the table closest to target, closest
// first.
func (t *Table) Closest(target identity.ID, n int) []Node {
	t.mu.Lock()
	all := make([]Node, 0, K*4)
	for i := range t.buckets {
		all = append(all, t.buckets[i].nodes...)
	}
	t.mu.Unlock()
	SortByDistance(all, target)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// SortByDistance sorts nodes by their distance to target, closest first.
func SortByDistance(nodes []Node, target identity.ID) {
	type keyed struct {
		d identity.ID
		n Node
	}
	ks := make([]keyed, len(nodes))
	for i, n := range nodes {
		ks[i] = keyed{Distance(n.ID(), target), n} // one SHA-256 per node
	}
	slices.SortFunc(ks, func(a, b keyed) int { return bytes.Compare(a.d[:], b.d[:]) })
	for i := range ks {
		nodes[i] = ks[i].n
	}
}

// Get returns the node with the address, if it is in the table.
func (t *Table) Get(addr identity.Address) (Node, bool) {
	b := t.bucketOf(addr.ID())
	if b < 0 {
		return Node{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := index(t.buckets[b].nodes, addr); i >= 0 {
		return t.buckets[b].nodes[i], true
	}
	return Node{}, false
}

// Len returns the number of nodes in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.buckets {
		n += len(t.buckets[i].nodes)
	}
	return n
}

// Buckets returns the number of non-empty buckets.
func (t *Table) Buckets() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.buckets {
		if len(t.buckets[i].nodes) > 0 {
			n++
		}
	}
	return n
}

// Nodes returns every node of the table.
func (t *Table) Nodes() []Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Node
	for i := range t.buckets {
		out = append(out, t.buckets[i].nodes...)
	}
	return out
}

// Stale returns, for each bucket that holds nodes or lies below the
// deepest such bucket and has not been refreshed within maxAge, a random id
// in that bucket's range to look up. A maxAge of 0 takes every such bucket.
func (t *Table) Stale(maxAge time.Duration, random func(bucket int) identity.ID) []identity.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	deepest := -1
	for i := range t.buckets {
		if len(t.buckets[i].nodes) > 0 {
			deepest = i
		}
	}
	var ids []identity.ID
	cutoff := t.now().Add(-maxAge)
	for i := 0; i <= deepest; i++ {
		if maxAge <= 0 || t.buckets[i].refreshed.Before(cutoff) {
			ids = append(ids, random(i))
		}
	}
	return ids
}

// ExpireReplacements drops the replacement nodes not seen within maxAge and
// returns how many it dropped. Stale replacements would otherwise take the
// place of a failed node long after they were last heard from.
func (t *Table) ExpireReplacements(maxAge time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := t.now().Add(-maxAge)
	n := 0
	for i := range t.buckets {
		bk := &t.buckets[i]
		before := len(bk.replacements)
		bk.replacements = slices.DeleteFunc(bk.replacements, func(r Node) bool { return r.LastSeen.Before(cutoff) })
		n += before - len(bk.replacements)
	}
	return n
}

// Refreshed records that a lookup for target has refreshed its bucket.
func (t *Table) Refreshed(target identity.ID) {
	b := t.bucketOf(target)
	if b < 0 {
		return
	}
	t.mu.Lock()
	t.buckets[b].refreshed = t.now()
	t.mu.Unlock()
}

// RandomIDInBucket returns an id whose common prefix with self is exactly
// bucket bits long, filled from random bytes r (at least 32).
func RandomIDInBucket(self identity.ID, bucket int, r []byte) identity.ID {
	var id identity.ID
	copy(id[:], r)
	for i := 0; i < bucket; i++ { // copy the shared prefix
		mask := byte(0x80) >> (i % 8)
		id[i/8] = id[i/8]&^mask | self[i/8]&mask
	}
	if bucket < IDBits { // and differ at the next bit
		mask := byte(0x80) >> (bucket % 8)
		id[bucket/8] = id[bucket/8]&^mask | ^self[bucket/8]&mask
	}
	return id
}

func index(nodes []Node, a identity.Address) int {
	return slices.IndexFunc(nodes, func(n Node) bool { return n.Address == a })
}

func remove(nodes []Node, a identity.Address) []Node {
	if i := index(nodes, a); i >= 0 {
		return slices.Delete(nodes, i, i+1)
	}
	return nodes
}

// mergeAddrs returns first's addresses, then others' not among them, at
// most MaxAddrs.
func mergeAddrs(first, others []string) []string {
	out := slices.Clone(first)
	for _, a := range others {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) > MaxAddrs {
		out = out[:MaxAddrs]
	}
	return out
}

// MaxAddrs is the most network addresses kept for one node.
const MaxAddrs = 4
