// Package dhtsim runs a network of DHT nodes in one process, joined by an
// in-memory transport behind dht.Finder, to measure lookups at a scale no
// test machine could run as processes.
//
// Every node has a real dht.Table and uses the real dht.Lookup; a request
// reaching a node records the asker in its table, as the kernel does after
// a handshake, and a node that left fails every request sent to it.
package dhtsim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/identity"
)

// Net is a simulated network.
type Net struct {
	Nodes []*Node
	rng   *rand.Rand

	mu     sync.RWMutex
	byAddr map[identity.Address]*Node

	// onContact, if set, is told of every request that reached a node
	// (the message simulator's sessions).
	onContact func(from, to *Node)
}

// Node is one simulated node.
type Node struct {
	Info   dht.Node
	id     identity.ID // Info's
	Table  *dht.Table
	net    *Net
	online atomic.Bool
}

// ErrOffline is the error of a request to a node that left.
var ErrOffline = errors.New("node offline")

// New makes a network of n nodes (not yet joined) from a seeded random
// source, so that runs can be repeated.
func New(n int, seed uint64) *Net {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nt := &Net{rng: rng, byAddr: make(map[identity.Address]*Node, n)}
	for i := 0; i < n; i++ {
		var s [ed25519.SeedSize]byte
		for j := range s {
			s[j] = byte(rng.Uint32())
		}
		key := ed25519.NewKeyFromSeed(s[:])
		addr, _ := identity.AddressFromKey(key.Public().(ed25519.PublicKey))
		nd := &Node{
			Info:  dht.Node{Address: addr, Addrs: []string{fmt.Sprintf("sim:%d", i)}},
			id:    addr.ID(),
			Table: dht.NewTable(addr),
			net:   nt,
		}
		nd.online.Store(true)
		nt.Nodes = append(nt.Nodes, nd)
		nt.byAddr[addr] = nd
	}
	return nt
}

// finder is the Finder of one asking node. It answers at once
// (dht.InstantFinder): lookups in the simulator are deterministic.
type finder struct{ from *Node }

func (finder) Instant() {}

func (f finder) FindNode(ctx context.Context, n dht.Node, target identity.ID) ([]dht.Node, error) {
	f.from.net.mu.RLock()
	to := f.from.net.byAddr[n.Address]
	f.from.net.mu.RUnlock()
	if to == nil || !to.online.Load() {
		// The service checks a table node whose request failed, and
		// evicts it when the check fails too; offline here is certain,
		// so the node is evicted at once.
		f.from.Table.Failed(n.Address)
		return nil, ErrOffline
	}
	// Both ends learn of each other, as after a real handshake.
	to.Table.Add(f.from.Info)
	f.from.Table.Add(to.Info)
	if h := f.from.net.onContact; h != nil {
		h(f.from, to)
	}
	return to.Table.Closest(target, dht.K), nil
}

// Lookup runs a lookup for target from node nd.
func (nd *Node) Lookup(ctx context.Context, target identity.ID) ([]dht.Node, dht.LookupStats, error) {
	seeds := nd.Table.Closest(target, dht.K)
	return dht.Lookup(ctx, finder{nd}, nd.Table.Self(), target, seeds)
}

// Join bootstraps every node in turn, as the DHT service's bootstrap job
// does: each adds a random node that joined before it, looks up its own id,
// then a random id in every bucket up to its closest neighbours' (at most
// dht.MaxRefreshes).
func (nt *Net) Join(ctx context.Context) error {
	for i, nd := range nt.Nodes {
		if i == 0 {
			continue
		}
		if err := nt.joinNode(ctx, nd, nt.Nodes[nt.rng.IntN(i)]); err != nil {
			return fmt.Errorf("node %d %w", i, err)
		}
	}
	return nil
}

// joinNode bootstraps nd through seed: see Join.
func (nt *Net) joinNode(ctx context.Context, nd, seed *Node) error {
	nd.Table.Add(seed.Info)
	if _, _, err := nd.Lookup(ctx, nd.Table.Self()); err != nil {
		return fmt.Errorf("joins: %w", err)
	}
	ids := nd.Table.Stale(0, func(b int) identity.ID {
		var r [32]byte
		for j := range r {
			r[j] = byte(nt.rng.Uint32())
		}
		return dht.RandomIDInBucket(nd.Table.Self(), b, r[:])
	})
	for _, id := range ids[:min(len(ids), dht.MaxRefreshes)] {
		if _, _, err := nd.Lookup(ctx, id); err != nil {
			return fmt.Errorf("refreshes: %w", err)
		}
	}
	return nil
}

// Leave takes a fraction of the nodes offline, without notice.
func (nt *Net) Leave(fraction float64) {
	for _, i := range nt.rng.Perm(len(nt.Nodes))[:int(fraction*float64(len(nt.Nodes)))] {
		nt.Nodes[i].online.Store(false)
	}
}

// Online returns the nodes still online.
func (nt *Net) Online() []*Node {
	var out []*Node
	for _, nd := range nt.Nodes {
		if nd.online.Load() {
			out = append(out, nd)
		}
	}
	return out
}

// TrueClosest returns the k online nodes closest to target, except the
// one at skip: what a perfect lookup from skip finds.
func (nt *Net) TrueClosest(target identity.ID, k int, skip *Node) []identity.Address {
	best := make([]*Node, 0, k+1) // the closest so far, closest first
	for _, nd := range nt.Nodes {
		if nd == skip || !nd.online.Load() {
			continue
		}
		if len(best) == k && !dht.Closer(target, nd.id, best[k-1].id) {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, nd, func(a, b *Node) int {
			if dht.Closer(target, a.id, b.id) {
				return -1
			}
			return 1
		})
		best = slices.Insert(best, i, nd)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]identity.Address, len(best))
	for i, nd := range best {
		out[i] = nd.Info.Address
	}
	return out
}

// Maintain runs one round of the cron's ping job on every online node:
// each checks the nodes of its table and drops those that do not answer.
func (nt *Net) Maintain() {
	for _, nd := range nt.Online() {
		for _, n := range nd.Table.Nodes() {
			nt.mu.RLock()
			peer := nt.byAddr[n.Address]
			nt.mu.RUnlock()
			if peer == nil || !peer.online.Load() {
				nd.Table.Failed(n.Address)
			}
		}
	}
}

// Result is the outcome of Measure.
type Result struct {
	Lookups     int
	ExactSet    int // lookups that returned exactly the K true closest online nodes
	FoundTarget int // lookups that found the node whose id they looked up
	Rounds      []int
	Messages    []int
}

// Measure looks up the ids of random online nodes from random online
// nodes, and counts how many lookups found their target and how many
// returned exactly the true closest online set.
func (nt *Net) Measure(ctx context.Context, lookups int) (Result, error) {
	online := nt.Online()
	var res Result
	for i := 0; i < lookups; i++ {
		from := online[nt.rng.IntN(len(online))]
		to := online[nt.rng.IntN(len(online))]
		if err := nt.measure(ctx, from, to, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// MeasurePairs is Measure over pairs of distinct online nodes in order:
// each node looks up the id of every other, or of every step-th pair.
func (nt *Net) MeasurePairs(ctx context.Context, step int) (Result, error) {
	online := nt.Online()
	var res Result
	for i, from := range online {
		for j, to := range online {
			if i == j || (i*len(online)+j)%step != 0 {
				continue
			}
			if err := nt.measure(ctx, from, to, &res); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// measure looks up to's id from from, and adds the outcome to res.
func (nt *Net) measure(ctx context.Context, from, to *Node, res *Result) error {
	target := to.Info.ID()
	found, st, err := from.Lookup(ctx, target)
	if err != nil && !errors.Is(err, dht.ErrNoNodes) {
		return err
	}
	res.Lookups++
	res.Rounds = append(res.Rounds, st.Rounds)
	res.Messages = append(res.Messages, st.Messages)
	want := nt.TrueClosest(target, dht.K, from)
	got := make([]identity.Address, len(found))
	for j, n := range found {
		got[j] = n.Address
	}
	if slices.Equal(got, want) {
		res.ExactSet++
	}
	if len(got) > 0 && got[0] == to.Info.Address || from == to {
		res.FoundTarget++
	}
	return nil
}

// Percentile returns the p-th percentile (0-100) of xs.
func Percentile(xs []int, p float64) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}
