package dhtsim

import (
	"context"
	"testing"
)

// In a network of 100 nodes every lookup finds the true closest set.
func TestHundredNodesFindEachOther(t *testing.T) {
	nt := New(100, 1)
	ctx := context.Background()
	if err := nt.Join(ctx); err != nil {
		t.Fatal(err)
	}
	// Every node looks up every other node's closest set: one lookup per
	// node for the id of another.
	for i, from := range nt.Nodes {
		to := nt.Nodes[(i*37+11)%len(nt.Nodes)]
		if to == from {
			continue
		}
		found, _, err := from.Lookup(ctx, to.Info.ID())
		if err != nil {
			t.Fatal(err)
		}
		want := nt.TrueClosest(to.Info.ID(), 20, from)
		if len(found) != len(want) {
			t.Fatalf("node %d found %d nodes, want %d", i, len(found), len(want))
		}
		for j := range want {
			if found[j].Address != want[j] {
				t.Fatalf("node %d lookup of node %d: result %d differs from the true closest", i, (i*37+11)%100, j)
			}
		}
		if found[0].Address != to.Info.Address {
			t.Fatalf("node %d did not find node %d itself", i, (i*37+11)%100)
		}
	}
}

func TestLookupsAfterChurn(t *testing.T) {
	nt := New(100, 2)
	ctx := context.Background()
	if err := nt.Join(ctx); err != nil {
		t.Fatal(err)
	}
	nt.Leave(0.2)
	res, err := nt.Measure(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Tables still hold the nodes that left: every lookup must still find
	// its target, though some may miss the far end of the closest set.
	if res.FoundTarget != res.Lookups {
		t.Fatalf("after 20%% left, %d of %d lookups found their target", res.FoundTarget, res.Lookups)
	}
	// Once the ping job has dropped the dead, lookups are exact again.
	nt.Maintain()
	res, err = nt.Measure(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExactSet != res.Lookups {
		t.Fatalf("after a ping round, %d of %d lookups found the true closest set", res.ExactSet, res.Lookups)
	}
}
