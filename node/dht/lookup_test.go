package dht

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// flood answers every request with many made-up nodes, itself and the
// asker: a hostile peer.
type flood struct {
	t     *testing.T
	self  identity.Address
	asked atomic.Int32
}

func (f *flood) FindNode(_ context.Context, n Node, _ identity.ID) ([]Node, error) {
	f.asked.Add(1)
	out := []Node{{}, {Address: f.self}}
	for i := 0; i < 500; i++ {
		out = append(out, Node{Address: newAddr(f.t)})
	}
	return out, nil
}

func TestLookupBoundsHostileReplies(t *testing.T) {
	self := newAddr(t)
	f := &flood{t: t, self: self}
	seeds := []Node{{Address: newAddr(t)}}
	found, st, err := Lookup(context.Background(), f, self.ID(), newAddr(t).ID(), seeds)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != K {
		t.Fatalf("found %d nodes, want %d", len(found), K)
	}
	for _, n := range found {
		if n.Address == self || n.Address.IsZero() {
			t.Fatal("lookup returned itself or a zero address")
		}
	}
	// Each reply is cut to K nodes, so the lookup asks a bounded number.
	if st.Messages > 10*K {
		t.Fatalf("lookup sent %d requests", st.Messages)
	}
}

type dead struct{}

func (dead) FindNode(context.Context, Node, identity.ID) ([]Node, error) {
	return nil, errors.New("unreachable")
}

func TestLookupWithoutNodes(t *testing.T) {
	self := newAddr(t)
	if _, _, err := Lookup(context.Background(), dead{}, self.ID(), self.ID(), nil); !errors.Is(err, ErrNoNodes) {
		t.Fatalf("no seeds: %v, want ErrNoNodes", err)
	}
	found, st, err := Lookup(context.Background(), dead{}, self.ID(), self.ID(), []Node{{Address: newAddr(t)}, {Address: newAddr(t)}})
	if err != nil || len(found) != 0 || st.Failed != 2 {
		t.Fatalf("all seeds dead: found %d, stats %+v, err %v", len(found), st, err)
	}
}

// everyone is a network where every node knows every other: each answers
// with the K nodes closest to the target. One node, hang, never answers:
// its request waits until its context ends.
type everyone struct {
	nodes []Node
	hang  identity.Address

	asked    chan struct{} // closed when hang is asked
	released chan struct{} // closed when hang's request is cancelled

	inFlight, maxInFlight atomic.Int32
}

func (f *everyone) FindNode(ctx context.Context, n Node, target identity.ID) ([]Node, error) {
	cur := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for m := f.maxInFlight.Load(); cur > m && !f.maxInFlight.CompareAndSwap(m, cur); m = f.maxInFlight.Load() {
	}
	if n.Address == f.hang {
		close(f.asked)
		<-ctx.Done()
		close(f.released)
		return nil, ctx.Err()
	}
	out := slices.Clone(f.nodes)
	SortByDistance(out, target)
	return out[:K], nil
}

// A node that accepts a request and never answers holds up one request,
// not the lookup: the others go on, the lookup ends when the closest nodes
// have answered, and the hung request is cancelled.
func TestLookupIsNotHeldUpBySilentNode(t *testing.T) {
	self, target := newAddr(t), newAddr(t).ID()
	f := &everyone{asked: make(chan struct{}), released: make(chan struct{})}
	for range 100 {
		f.nodes = append(f.nodes, Node{Address: newAddr(t)})
	}
	byDistance := slices.Clone(f.nodes)
	SortByDistance(byDistance, target)
	// The silent node is the closest seed, so it is asked first; the
	// lookup finds closer nodes through the other seeds.
	f.hang = byDistance[50].Address
	seeds := []Node{byDistance[50], byDistance[60], byDistance[70]}

	type result struct {
		found []Node
		err   error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: only the test's bound below
	defer cancel()
	go func() {
		found, _, err := Lookup(ctx, f, self.ID(), target, seeds)
		done <- result{found, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("lookup held up by one node that never answers")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case <-f.asked:
	default:
		t.Fatal("setup: the silent node was not asked")
	}
	if len(r.found) != K {
		t.Fatalf("found %d nodes, want %d", len(r.found), K)
	}
	for i, n := range r.found {
		if n.Address != byDistance[i].Address {
			t.Fatalf("result %d is not the %d-th closest node", i, i)
		}
	}
	select {
	case <-f.released:
	case <-time.After(time.Minute):
		t.Fatal("the silent node's request was not cancelled when the lookup ended")
	}
	if m := f.maxInFlight.Load(); m > K {
		t.Fatalf("%d requests in flight at once, at most %d allowed", m, K)
	}
}
