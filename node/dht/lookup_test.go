package dht

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

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
