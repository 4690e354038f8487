package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// On a nearly full disk the relay store takes no envelope from peers, but
// its sweep, which frees space, goes on.

func TestRelayOnFullDisk(t *testing.T) {
	db := open(t, t.TempDir())
	defer db.Close()
	clock := newTestClock()
	r := openRelay(t, db, RelayLimits{}, clock)
	ctx := context.Background()
	if err := r.Put(ctx, testEnvelope(1, 1, 100, clock.now().Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	db.SetSpaceCheck(func() error { return fmt.Errorf("test: %w", ErrLowSpace) })
	err := r.Put(ctx, testEnvelope(2, 1, 1<<20, clock.now().Add(time.Hour)))
	t.Logf("Put on a full disk: %v", err)
	clock.advance(2 * time.Minute)
	serr := r.Sweep(ctx)
	t.Logf("Sweep on a full disk: %v", serr)
	if err == nil {
		t.Errorf("relay Put ignores the space check")
	}
	if serr != nil {
		t.Errorf("the sweep, which frees space, is refused on a full disk: %v", serr)
	}
}
