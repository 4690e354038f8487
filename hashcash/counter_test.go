package hashcash

import (
	"context"
	"sync/atomic"
	"testing"
)

// A stamp found within the first batch of hashes is counted too: a miner
// pool's rate must not read zero for cheap stamps.
func TestHashCounterCountsPartialBatch(t *testing.T) {
	for i := 0; i < 20; i++ {
		var n atomic.Uint64
		if _, err := Mint(context.Background(), "cheap", 4, WithWorkers(1), WithHashCounter(&n)); err != nil {
			t.Fatal(err)
		}
		if n.Load() == 0 {
			t.Fatalf("mint %d counted no hashes", i)
		}
	}
}
