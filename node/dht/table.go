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
	"net/netip"
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

// An entry is a node in the table, with its id computed once.
type entry struct {
	Node
	id identity.ID
}

type bucket struct {
	entries      []entry // least recently seen first
	replacements []entry // most recent last, at most K
	refreshed    time.Time
}

// Table is a Kademlia routing table. It is safe for concurrent use.
type Table struct {
	self identity.ID
	now  func() time.Time

	mu      sync.Mutex
	buckets [IDBits]bucket
	nets    map[netip.Prefix]int // entries per IP and per subnet (see MaxPerIP)
}

// NewTable returns an empty table for the node with the given address.
func NewTable(self identity.Address) *Table {
	t := &Table{self: self.ID(), now: time.Now, nets: make(map[netip.Prefix]int)}
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
//
// A new node enters only with the network addresses that fit the limits
// per IP and subnet (MaxPerIP, MaxPerSubnet), and not at all when it has
// addresses and none fits; a node already in the table stays, keeping the
// new addresses that fit.
func (t *Table) Add(n Node) (check Node, full bool) {
	e := entry{Node: n, id: n.ID()}
	b := t.bucketOf(e.id)
	if b < 0 || n.Address.IsZero() {
		return Node{}, false
	}
	if e.LastSeen.IsZero() {
		e.LastSeen = t.now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bk := &t.buckets[b]
	if i := index(bk.entries, n.Address); i >= 0 {
		old := bk.entries[i]
		e.Addrs = mergeAddrs(t.admit(e.Addrs, netsOf(old.Addrs)), old.Addrs)
		t.count(old.Addrs, -1)
		t.count(e.Addrs, +1)
		bk.entries = append(slices.Delete(bk.entries, i, i+1), e)
		return Node{}, false
	}
	addrs := t.admit(e.Addrs, nil)
	if len(addrs) == 0 && len(e.Addrs) > 0 {
		return Node{}, false // its networks hold their share of the table
	}
	e.Addrs = addrs
	if len(bk.entries) < K {
		bk.entries = append(bk.entries, e)
		bk.replacements = remove(bk.replacements, n.Address)
		t.count(e.Addrs, +1)
		return Node{}, false
	}
	bk.replacements = append(remove(bk.replacements, n.Address), e)
	if len(bk.replacements) > K {
		bk.replacements = bk.replacements[1:]
	}
	return bk.entries[0].Node, true
}

// Failed records that n did not answer a liveness check (or a request): it
// leaves the table, and the most recently seen replacement that fits the
// limits per network takes its place.
func (t *Table) Failed(addr identity.Address) {
	b := t.bucketOf(addr.ID())
	if b < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bk := &t.buckets[b]
	i := index(bk.entries, addr)
	if i < 0 {
		bk.replacements = remove(bk.replacements, addr)
		return
	}
	t.count(bk.entries[i].Addrs, -1)
	bk.entries = slices.Delete(bk.entries, i, i+1)
	for j := len(bk.replacements) - 1; j >= 0; j-- {
		r := bk.replacements[j]
		addrs := t.admit(r.Addrs, nil)
		if len(addrs) == 0 && len(r.Addrs) > 0 {
			continue
		}
		r.Addrs = addrs
		bk.entries = append(bk.entries, r)
		bk.replacements = slices.Delete(bk.replacements, j, j+1)
		t.count(r.Addrs, +1)
		return
	}
}

// Closest returns up to n nodes of the table closest to target, closest
// first.
//
// It reads only the buckets that can hold them, and sorts only those. If
// target falls in bucket c, the nodes of bucket c share more leading bits
// with target than those of the deeper buckets (c+1 and on), which all
// share c bits with it, and those share more than the nodes of bucket c-1,
// which share more than those of c-2, and so on: so Closest takes bucket
// c, then every deeper bucket, then c-1, c-2... until it holds n nodes.
func (t *Table) Closest(target identity.ID, n int) []Node {
	if n <= 0 {
		return nil
	}
	// Keys without pointers, cheap to sort: an id and where its entry is.
	type key struct {
		id     identity.ID
		bucket uint16
		i      uint16
	}
	keys := make([]key, 0, 2*K)
	take := func(b int) {
		for i, e := range t.buckets[b].entries {
			keys = append(keys, key{e.id, uint16(b), uint16(i)})
		}
	}
	c := CommonPrefixLen(t.self, target)
	t.mu.Lock()
	defer t.mu.Unlock()
	if c < IDBits {
		take(c)
		if len(keys) < n {
			// The deeper buckets are equally far from target's bucket, and
			// their nodes unordered among them: all are needed.
			for b := c + 1; b < IDBits; b++ {
				take(b)
			}
		}
	}
	for b := min(c, IDBits) - 1; b >= 0 && len(keys) < n; b-- {
		take(b)
	}
	slices.SortFunc(keys, func(a, b key) int { return compareDistance(target, a.id, b.id) })
	out := make([]Node, min(n, len(keys)))
	for i := range out {
		out[i] = t.buckets[keys[i].bucket].entries[keys[i].i].Node
	}
	return out
}

// compareDistance compares the distances of a and b to target.
func compareDistance(target, a, b identity.ID) int {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			return int(da) - int(db)
		}
	}
	return 0
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
	if i := index(t.buckets[b].entries, addr); i >= 0 {
		return t.buckets[b].entries[i].Node, true
	}
	return Node{}, false
}

// Len returns the number of nodes in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.buckets {
		n += len(t.buckets[i].entries)
	}
	return n
}

// Buckets returns the number of non-empty buckets.
func (t *Table) Buckets() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.buckets {
		if len(t.buckets[i].entries) > 0 {
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
		for _, e := range t.buckets[i].entries {
			out = append(out, e.Node)
		}
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
		if len(t.buckets[i].entries) > 0 {
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
		bk.replacements = slices.DeleteFunc(bk.replacements, func(r entry) bool { return r.LastSeen.Before(cutoff) })
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

func index(es []entry, a identity.Address) int {
	return slices.IndexFunc(es, func(e entry) bool { return e.Address == a })
}

func remove(es []entry, a identity.Address) []entry {
	if i := index(es, a); i >= 0 {
		return slices.Delete(es, i, i+1)
	}
	return es
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

// Limits on the table's nodes per network, against one host or network
// filling the table with identities of its own (a Sybil attack), as
// Kademlia implementations do. A node counts once against each IP address
// and each subnet among its network addresses: a /24 for IPv4, a /64 for
// IPv6. Loopback, private (RFC 1918, unique local) and link-local addresses
// are exempt: a node learns them only from peers on its own host or
// network, where a test network may run many nodes on one address.
const (
	MaxPerIP     = 2  // nodes per IP address
	MaxPerSubnet = 10 // nodes per /24 (IPv4) or /64 (IPv6)
)

// netsOf returns the networks that the addresses count against, each
// once: for each limited IP address, its own prefix (/32 or /128) and its
// subnet's. Addresses that are exempt or not ip:port count against none.
func netsOf(addrs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		ip, subnet, ok := limitedNets(a)
		if !ok {
			continue
		}
		for _, p := range [2]netip.Prefix{ip, subnet} {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// limitedNets returns the networks an address counts against, and false
// if it counts against none.
func limitedNets(addr string) (ip, subnet netip.Prefix, ok bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ip, subnet, false
	}
	a := ap.Addr().Unmap()
	if exempt(a) {
		return ip, subnet, false
	}
	bits := 24
	if a.Is6() {
		bits = 64
	}
	ip = netip.PrefixFrom(a, a.BitLen())
	subnet, _ = a.Prefix(bits)
	return ip, subnet, true
}

// exempt reports whether the limits per network spare a: an address of
// this host or its local network.
func exempt(a netip.Addr) bool {
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast()
}

// admit returns the addresses of addrs that fit the limits per network,
// for a node that already counts against held. t.mu is held.
func (t *Table) admit(addrs []string, held []netip.Prefix) []string {
	var out []string
	taken := slices.Clone(held)
	for _, a := range addrs {
		ip, subnet, ok := limitedNets(a)
		if !ok {
			out = append(out, a)
			continue
		}
		if !t.room(ip, MaxPerIP, taken) || !t.room(subnet, MaxPerSubnet, taken) {
			continue
		}
		out = append(out, a)
		for _, p := range [2]netip.Prefix{ip, subnet} {
			if !slices.Contains(taken, p) {
				taken = append(taken, p)
			}
		}
	}
	return out
}

// room reports whether a node may count against p: it does already (p is
// in taken), or fewer than limit nodes do. t.mu is held.
func (t *Table) room(p netip.Prefix, limit int, taken []netip.Prefix) bool {
	return slices.Contains(taken, p) || t.nets[p] < limit
}

// count adds delta to the counts of the networks of addrs. t.mu is held.
func (t *Table) count(addrs []string, delta int) {
	for _, p := range netsOf(addrs) {
		if t.nets[p] += delta; t.nets[p] <= 0 {
			delete(t.nets, p)
		}
	}
}
