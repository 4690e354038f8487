package dht

import (
	"context"
	"errors"
	"slices"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Alpha is the number of requests a lookup keeps in flight.
const Alpha = 3

// A Finder asks node n for the nodes it knows closest to target (a
// node_find). The kernel's Finder dials n over the peer protocol; the
// simulator's calls another table in memory.
//
// A Finder bounds each request with a deadline of its own, short next to
// a lookup's: Lookup waits for a request until it ends, or until ctx ends.
type Finder interface {
	FindNode(ctx context.Context, n Node, target identity.ID) ([]Node, error)
}

// An InstantFinder is a Finder that answers at once, from memory: the
// simulator's. Lookup calls it in turn, without goroutines, and takes its
// replies in the order it sent the requests, as if every request took one
// round trip: a simulated lookup then depends only on its inputs, and its
// Rounds are those of a network where all round trips take as long.
type InstantFinder interface {
	Finder
	Instant()
}

// LookupStats describe one lookup.
type LookupStats struct {
	// Rounds is the lookup's length in round trips: the longest chain of
	// requests each sent when the one before it ended, as if every request
	// took one round trip.
	Rounds   int
	Messages int // requests sent
	Failed   int // requests that failed
}

// ErrNoNodes is returned by Lookup when it has no node to start from.
var ErrNoNodes = errors.New("no nodes to ask")

type state int8

const (
	unasked state = iota
	asking
	answered
	failed
)

type candidate struct {
	node  Node
	id    identity.ID
	state state
	sent  int // when it was asked, in round trips since the start
}

type reply struct {
	c     *candidate
	nodes []Node
	err   error
}

// A lookup is the state of one Lookup: the candidates it knows, closest to
// target first.
type lookup struct {
	self, target identity.ID
	known        map[identity.Address]bool
	order        []*candidate
}

// Lookup finds the K nodes closest to target, starting from seeds (usually
// the table's closest nodes), by asking the closest nodes it knows for
// closer ones. It returns the K closest that answered, closest first. self
// is never asked or returned.
//
// It keeps Alpha requests in flight, and starts the next as soon as one
// ends: a slow node holds up one request, never the lookup. When Alpha
// answers in a row bring no node closer than the closest known, the lookup
// asks all the unasked among the K closest at once, as Kademlia prescribes
// for a lookup that no longer draws nearer, and returns to Alpha requests
// when a reply brings a closer node again. It ends when the K
// closest nodes it knows, of those that have not failed, have all
// answered; requests still in flight, to farther nodes, are cancelled.
func Lookup(ctx context.Context, f Finder, self, target identity.ID, seeds []Node) ([]Node, LookupStats, error) {
	var st LookupStats
	l := &lookup{self: self, target: target, known: make(map[identity.Address]bool)}
	for _, n := range seeds {
		l.add(n)
	}
	if len(l.order) == 0 {
		return nil, st, ErrNoNodes
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	replies := make(chan reply, K) // room for every request in flight: senders never block
	_, instant := f.(InstantFinder)
	var queue []reply // an InstantFinder's replies, in the order sent
	send := func(c *candidate) {
		if instant {
			nodes, err := f.FindNode(ctx, c.node, target)
			queue = append(queue, reply{c, nodes, err})
			return
		}
		go func() {
			nodes, err := f.FindNode(ctx, c.node, target)
			replies <- reply{c, nodes, err}
		}()
	}
	inFlight, limit, now := 0, Alpha, 0
	stalled := 0 // answers in a row that brought no node closer than the closest known
	for {
		if err := ctx.Err(); err != nil {
			return l.answered(), st, err
		}
		pending := false // among the K closest live, some have not answered yet
		live := 0
		for _, c := range l.order {
			if c.state == failed {
				continue
			}
			if live++; live > K {
				break
			}
			switch c.state {
			case unasked:
				pending = true
				if inFlight < limit {
					c.state, c.sent = asking, now
					inFlight++
					st.Messages++
					send(c)
				}
			case asking:
				pending = true
			}
		}
		if !pending {
			return l.answered(), st, nil
		}
		// Take the first reply to come, and every other already there.
		var batch []reply
		if instant {
			// Those sent at the same time come back at the same time.
			i := 1
			for i < len(queue) && queue[i].c.sent == queue[0].c.sent {
				i++
			}
			batch, queue = queue[:i:i], queue[i:]
		} else {
			select {
			case <-ctx.Done():
				return l.answered(), st, ctx.Err()
			case r := <-replies:
				batch = append(batch, r)
			}
			for more := true; more; {
				select {
				case r := <-replies:
					batch = append(batch, r)
				default:
					more = false
				}
			}
		}
		for _, r := range batch {
			inFlight--
			now = max(now, r.c.sent+1)
			if r.err != nil {
				r.c.state = failed
				st.Failed++
				continue
			}
			r.c.state = answered
			best := l.closestLive()
			for _, n := range r.nodes[:min(len(r.nodes), K)] {
				l.add(n)
			}
			if l.closestLive() != best {
				stalled, limit = 0, Alpha
			} else if stalled++; stalled >= Alpha {
				limit = K
			}
		}
		st.Rounds = max(st.Rounds, now)
	}
}

// add makes n a candidate, unless it is known already, self or no node.
func (l *lookup) add(n Node) {
	if n.Address.IsZero() || l.known[n.Address] {
		return
	}
	id := n.ID()
	if id == l.self {
		return
	}
	l.known[n.Address] = true
	c := &candidate{node: n, id: id}
	i, _ := slices.BinarySearchFunc(l.order, c, func(a, b *candidate) int { return compareDistance(l.target, a.id, b.id) })
	l.order = slices.Insert(l.order, i, c)
}

// closestLive returns the closest candidate that has not failed.
func (l *lookup) closestLive() *candidate {
	for _, c := range l.order {
		if c.state != failed {
			return c
		}
	}
	return nil
}

// answered returns the K closest candidates that answered.
func (l *lookup) answered() []Node {
	var out []Node
	for _, c := range l.order {
		if c.state == answered {
			out = append(out, c.node)
			if len(out) == K {
				break
			}
		}
	}
	return out
}
