package dht

import (
	"context"
	"errors"
	"sync"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Alpha is the number of nodes a lookup asks at once.
const Alpha = 3

// A Finder asks node n for the nodes it knows closest to target (a
// node_find). The kernel's Finder dials n over the peer protocol; the
// simulator's calls another table in memory.
type Finder interface {
	FindNode(ctx context.Context, n Node, target identity.ID) ([]Node, error)
}

// LookupStats describe one lookup.
type LookupStats struct {
	Rounds   int // rounds of parallel requests
	Messages int // requests sent
	Failed   int // requests that failed
}

// ErrNoNodes is returned by Lookup when it has no node to start from.
var ErrNoNodes = errors.New("no nodes to ask")

type candidate struct {
	node  Node
	state int8 // 0 new, 1 answered, -1 failed
}

// Lookup finds the K nodes closest to target, starting from seeds (usually
// the table's closest nodes), by asking Alpha nodes at a time for closer
// ones. It ends when the K closest nodes it knows have all answered, and
// returns those that did, closest first. self is never asked or returned.
//
// A round that brings no node closer than the closest known asks all the
// unasked nodes among the K closest at once, as Kademlia prescribes.
func Lookup(ctx context.Context, f Finder, self, target identity.ID, seeds []Node) ([]Node, LookupStats, error) {
	var st LookupStats
	known := make(map[identity.Address]*candidate)
	var order []*candidate // sorted by distance to target
	add := func(n Node) {
		if n.Address.IsZero() || n.ID() == self {
			return
		}
		if _, ok := known[n.Address]; ok {
			return
		}
		c := &candidate{node: n}
		known[n.Address] = c
		order = append(order, c)
	}
	for _, n := range seeds {
		add(n)
	}
	if len(order) == 0 {
		return nil, st, ErrNoNodes
	}
	sortCandidates(order, target)
	wide := false
	for {
		if err := ctx.Err(); err != nil {
			return answered(order), st, err
		}
		// The unasked among the K closest that have not failed.
		var ask []*candidate
		limit := Alpha
		if wide {
			limit = K
		}
		live := 0
		for _, c := range order {
			if c.state < 0 {
				continue
			}
			if live++; live > K {
				break
			}
			if c.state == 0 && len(ask) < limit {
				ask = append(ask, c)
			}
		}
		if len(ask) == 0 {
			return answered(order), st, nil
		}
		best := closestLive(order)
		st.Rounds++
		st.Messages += len(ask)
		results := make([][]Node, len(ask))
		errs := make([]error, len(ask))
		var wg sync.WaitGroup
		for i, c := range ask {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = f.FindNode(ctx, c.node, target)
			}()
		}
		wg.Wait()
		for i, c := range ask {
			if errs[i] != nil {
				c.state = -1
				st.Failed++
				continue
			}
			c.state = 1
			reply := results[i]
			if len(reply) > K {
				reply = reply[:K]
			}
			for _, n := range reply {
				add(n)
			}
		}
		sortCandidates(order, target)
		now := closestLive(order)
		wide = best != nil && now == best
	}
}

func closestLive(order []*candidate) *candidate {
	for _, c := range order {
		if c.state >= 0 {
			return c
		}
	}
	return nil
}

func answered(order []*candidate) []Node {
	var out []Node
	for _, c := range order {
		if c.state == 1 {
			out = append(out, c.node)
			if len(out) == K {
				break
			}
		}
	}
	return out
}

func sortCandidates(order []*candidate, target identity.ID) {
	nodes := make([]Node, len(order))
	idx := make(map[identity.Address]*candidate, len(order))
	for i, c := range order {
		nodes[i] = c.node
		idx[c.node.Address] = c
	}
	SortByDistance(nodes, target)
	for i, n := range nodes {
		order[i] = idx[n.Address]
	}
}
