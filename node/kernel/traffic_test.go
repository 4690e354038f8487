package kernel

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/store"
)

// A running kernel saves its traffic totals, the live sessions' included,
// without waiting for its final save: a node killed finds them.
func TestTrafficSavedWhileRunning(t *testing.T) {
	old := trafficSaveEvery
	trafficSaveEvery = 10 * time.Millisecond
	t.Cleanup(func() { trafficSaveEvery = old })
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := newKernel(t, nil)
	a := newKernel(t, func(c *Config) { c.Meta = db.Meta() })
	if _, err := a.Connect(context.Background(), b.target()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got traffic
		if err := db.Meta().Get(trafficKey, &got); err == nil && got.In > 0 && got.Out > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("traffic totals not saved in 30 s while the kernel runs")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
