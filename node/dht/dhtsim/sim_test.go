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
	res, err := nt.MeasurePairs(ctx, step)
	if err != nil {
		t.Fatal(err)
	}
	if res.FoundTarget != res.Lookups || res.ExactSet != res.Lookups {
		t.Fatalf("of %d lookups, %d found their target and %d the true closest set", res.Lookups, res.FoundTarget, res.ExactSet)
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
