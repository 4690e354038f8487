package dhtsim

import (
	"context"
	"testing"
)

// In a network of 100 nodes lookups find the true closest set.
func TestHundredNodesFindEachOther(t *testing.T) {
	nt := New(100, 1)
	ctx := context.Background()
	if err := nt.Join(ctx); err != nil {
		t.Fatal(err)
	}
	// Nodes look up other nodes' ids, and must find exactly the true
	// closest set, that node first: a tenth of the pairs (every pair, and
	// larger networks, are measured by go run ./bench/dht), a fiftieth
	// under the race detector, which makes this ten times slower.
	step := 10
	if raceEnabled {
		step = 50
	}
	for i, from := range nt.Nodes {
		for j, to := range nt.Nodes {
			if i == j || (i*len(nt.Nodes)+j)%step != 0 {
				continue
			}
			found, _, err := from.Lookup(ctx, to.Info.ID())
			if err != nil {
				t.Fatal(err)
			}
			want := nt.TrueClosest(to.Info.ID(), 20, from)
			if len(found) != len(want) || found[0].Address != to.Info.Address {
				t.Fatalf("node %d's lookup of node %d found %d nodes", i, j, len(found))
			}
			for k := range want {
				if found[k].Address != want[k] {
					t.Fatalf("node %d's lookup of node %d: result %d is not the true %d-th closest", i, j, k, k)
				}
			}
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
