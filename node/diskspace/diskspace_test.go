package diskspace

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/store"
)

// fakeDisk is a free-space source a test sets.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
	err  error
}

func (f *fakeDisk) set(free uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.free, f.err = free, err
}

func (f *fakeDisk) FreeSpace(string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.free, f.err
}

func TestWatcherRefusesBelowReserve(t *testing.T) {
	disk := &fakeDisk{free: 100 << 20}
	var logs bytes.Buffer
	w := &Watcher{Dir: "/data", Reserve: 64 << 20, FreeSpace: disk.FreeSpace,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := w.Check(); err != nil {
		t.Fatalf("100 MiB free: %v", err)
	}
	disk.set(10<<20, nil)
	for range 3 {
		w.measure()
	}
	err := w.Check()
	if !errors.Is(err, store.ErrLowSpace) || !w.Low() {
		t.Fatalf("10 MiB free, reserve 64 MiB: Check = %v, Low = %v", err, w.Low())
	}
	if !strings.Contains(err.Error(), "disk-reserve") {
		t.Errorf("the refusal does not name the setting: %v", err)
	}
	var in node.Info
	if err := w.Contribute(context.Background(), nil, &in); err != nil || !in.DiskLow || in.DiskFree == nil || *in.DiskFree != 10<<20 || in.DiskReserve != 64<<20 {
		t.Fatalf("Info while low: %+v (%v)", in, err)
	}
	if n := strings.Count(logs.String(), "below the reserve"); n != 1 {
		t.Fatalf("%d warnings while low, want 1:\n%s", n, logs.String())
	}
	disk.set(200<<20, nil)
	w.measure()
	w.measure()
	if err := w.Check(); err != nil || w.Low() {
		t.Fatalf("200 MiB free again: %v", err)
	}
	if n := strings.Count(logs.String(), "above the reserve again"); n != 1 {
		t.Fatalf("%d lines when space came back, want 1:\n%s", n, logs.String())
	}
	// A reading that fails is said once and does not block writes.
	disk.set(0, errors.New("statfs: no such file"))
	w.measure()
	w.measure()
	if err := w.Check(); err != nil {
		t.Fatalf("free space unknown: %v", err)
	}
	if n := strings.Count(logs.String(), "free space unknown"); n != 1 {
		t.Fatalf("%d lines for failed readings, want 1:\n%s", n, logs.String())
	}
}

// Check measures again when the last reading is old, so a write caused
// by a peer never relies on a reading from before the disk filled up.
func TestCheckMeasuresWhenStale(t *testing.T) {
	disk := &fakeDisk{free: 100 << 20}
	w := &Watcher{Dir: "/data", Reserve: 64 << 20, FreeSpace: disk.FreeSpace}
	w.measure()
	disk.set(1<<20, nil)
	w.read.Store(1) // a reading from long ago
	if err := w.Check(); !errors.Is(err, store.ErrLowSpace) {
		t.Fatalf("Check after the disk filled up: %v", err)
	}
}

// Run measures at once, then periodically, and returns when its context
// ends.
func TestRunMeasuresUntilStopped(t *testing.T) {
	calls := make(chan struct{}, 16)
	w := &Watcher{Dir: "/data", Reserve: 1, Every: 1, FreeSpace: func(string) (uint64, error) {
		select {
		case calls <- struct{}{}:
		default:
		}
		return 0, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx, func() {}) }()
	for range 3 {
		<-calls
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !w.Low() {
		t.Fatal("0 bytes free not taken as low")
	}
}

// The real free space of a directory can be read.
func TestFree(t *testing.T) {
	n, err := Free(t.TempDir())
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil || n == 0 {
		t.Fatalf("Free = %d, %v", n, err)
	}
}

// A store given a watcher's Check refuses writes while the disk is low,
// and takes them again once there is room.
func TestStoreRefusesWritesWhenLow(t *testing.T) {
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	disk := &fakeDisk{free: 1 << 20}
	w := &Watcher{Dir: "/data", Reserve: 64 << 20, FreeSpace: disk.FreeSpace}
	db.SetSpaceCheck(w.Check)
	if err := db.Meta().Put("k", 1); !errors.Is(err, store.ErrLowSpace) {
		t.Fatalf("meta write while low: %v", err)
	}
	if _, err := db.Contacts().Add(store.Contact{Nickname: "bob", Address: strings.Repeat("a", 64)}); !errors.Is(err, store.ErrLowSpace) {
		t.Fatalf("contact add while low: %v", err)
	}
	if err := db.Stamps().Spend("1:20:x", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrLowSpace) {
		t.Fatalf("stamp spend while low: %v", err)
	}
	disk.set(1<<30, nil)
	w.measure()
	if err := db.Meta().Put("k", 1); err != nil {
		t.Fatalf("meta write with room: %v", err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 64 << 20: "64.0 MiB", 3 << 29: "1.5 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
