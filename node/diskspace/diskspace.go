// Package diskspace watches the free space of the file system that holds
// the node's data, so that the node stops writing while some is left.
//
// The store (badger) maps its files into memory, and a write into a mapped
// page that the file system cannot back, on a full disk, kills the process
// with SIGBUS: no error is returned that the node could handle. A Watcher
// therefore keeps a reserve: below it, Check refuses, the store refuses
// every write (store.DB.SetSpaceCheck), and the work that would write, such
// as a peer's node_find that spends a stamp, is refused with a reason.
package diskspace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
)

// Defaults and limits of a Watcher.
const (
	// DefaultEvery is how often Run measures the free space.
	DefaultEvery = 5 * time.Second
	// MaxAge is the age past which Check measures again before it
	// answers: a write caused by a peer never relies on an older reading.
	MaxAge = time.Second
)

// A Watcher watches the free space of the file system holding Dir.
// Run measures it periodically; Check, before writes, measures it again
// when the last reading is older than MaxAge. It is safe for concurrent
// use.
type Watcher struct {
	Dir string
	// Reserve is the free space, in bytes, below which writes are refused.
	Reserve uint64
	Logger  *slog.Logger
	// Every is the period of Run's readings (DefaultEvery if zero).
	Every time.Duration
	// FreeSpace returns the bytes free for unprivileged use in the file
	// system holding dir (Free if nil); tests replace it.
	FreeSpace func(dir string) (uint64, error)

	mu     sync.Mutex // one reading at a time, and the logged state
	failed bool       // the last reading failed (and was logged)

	free atomic.Uint64
	low  atomic.Bool
	read atomic.Int64 // unix nanoseconds of the last reading; 0: none
}

// Run measures the free space at once and then every Every until ctx ends.
func (w *Watcher) Run(ctx context.Context, ready func()) error {
	w.measure()
	ready()
	t := time.NewTicker(cmp.Or(w.Every, DefaultEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.measure()
		}
	}
}

// Check returns nil when the disk has room for a write, and otherwise an
// error that wraps store.ErrLowSpace. It measures again if the last
// reading is older than MaxAge, which costs one statfs system call.
func (w *Watcher) Check() error {
	if time.Since(time.Unix(0, w.read.Load())) > MaxAge {
		w.measure()
	}
	if !w.low.Load() {
		return nil
	}
	return fmt.Errorf("%w: %s free in %s, below the reserve of %s (setting disk-reserve)",
		store.ErrLowSpace, Size(w.free.Load()), w.Dir, Size(w.Reserve))
}

// Low reports whether the free space was below the reserve at the last
// reading.
func (w *Watcher) Low() bool { return w.low.Load() }

// Free returns the free space at the last reading, in bytes.
func (w *Watcher) Free() uint64 { return w.free.Load() }

// measure reads the free space and logs when it crosses the reserve: one
// warning when it falls below, one line when it is back above. A reading
// that fails is logged once and leaves the state as it was (so a node
// whose file system cannot tell never refuses writes: refusing them all
// for that would be worse than the risk).
func (w *Watcher) measure() {
	w.mu.Lock()
	defer w.mu.Unlock()
	freeSpace := w.FreeSpace
	if freeSpace == nil {
		freeSpace = Free
	}
	free, err := freeSpace(w.Dir)
	w.read.Store(time.Now().UnixNano())
	if err != nil {
		if !w.failed {
			w.failed = true
			w.logger().Warn("disk: free space unknown: writes are not limited", "dir", w.Dir, "err", err)
		}
		return
	}
	w.failed = false
	w.free.Store(free)
	low := free < w.Reserve
	switch was := w.low.Swap(low); {
	case low && !was:
		w.logger().Warn("disk: free space below the reserve: the node refuses work that writes (node_find, new talks) until space is freed",
			"dir", w.Dir, "free", Size(free), "reserve", Size(w.Reserve), "setting", "disk-reserve")
	case !low && was:
		w.logger().Info("disk: free space above the reserve again: writes resume", "dir", w.Dir, "free", Size(free))
	}
}

func (w *Watcher) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Contribute adds the free space to a node's Info; it is a node.Contributor.
func (w *Watcher) Contribute(_ context.Context, _ *router.Endpoint, in *node.Info) error {
	if w.read.Load() == 0 {
		return errors.New("disk: no reading yet")
	}
	free := w.free.Load()
	in.DiskFree, in.DiskReserve, in.DiskLow = &free, w.Reserve, w.low.Load()
	return nil
}

// Size formats n bytes for people, in binary units ("64.0 MiB").
func Size(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
