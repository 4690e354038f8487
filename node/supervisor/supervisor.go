// Package supervisor runs a node's subsystems: it starts them together,
// restarts an optional one that fails (with backoff), stops everything when
// a required one fails, and reports readiness once every subsystem is up.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// A Subsystem is one long-running part of the node.
type Subsystem struct {
	Name string
	// Required subsystems stop the node when they fail; the others are
	// restarted with backoff.
	Required bool
	// Run does the subsystem's work until ctx ends. It calls ready once it
	// serves (its listeners are open); a nil return before ctx ends counts
	// as a failure.
	Run func(ctx context.Context, ready func()) error
}

// Supervisor runs subsystems.
type Supervisor struct {
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before an optional subsystem
	// is restarted; the wait doubles after each failure in a row.
	MinBackoff, MaxBackoff time.Duration
	// ShutdownTimeout bounds how long Run waits for subsystems once ctx ends.
	ShutdownTimeout time.Duration
}

// ErrShutdownTimeout is returned when subsystems do not stop in time.
var ErrShutdownTimeout = errors.New("subsystems did not stop in time")

// Run starts every subsystem and returns when ctx ends and all have
// stopped (nil), or when a required subsystem fails (its error, after the
// others have stopped). onReady, if not nil, is called once every subsystem
// has reported ready. Only required subsystems count for readiness: an
// optional one that fails to start is restarted in the background and must
// not keep the node from being reported ready.
func (s *Supervisor) Run(ctx context.Context, subs []Subsystem, onReady func()) error {
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB < minB {
		maxB = 30 * time.Second
	}
	// allReady closes when the last required subsystem reports ready.
	allReady := make(chan struct{})
	var remaining atomic.Int32
	for _, sub := range subs {
		if sub.Required {
			remaining.Add(1)
		}
	}
	if remaining.Load() == 0 {
		close(allReady)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, sub := range subs {
		var once sync.Once
		ready := func() {}
		if sub.Required {
			ready = func() {
				once.Do(func() {
					if remaining.Add(-1) == 0 {
						close(allReady)
					}
				})
			}
		}
		g.Go(func() error { return s.keep(gctx, sub, ready, minB, maxB) })
	}
	go func() {
		select {
		case <-allReady:
			s.Logger.Info("node ready")
			if onReady != nil {
				onReady()
			}
		case <-gctx.Done():
		}
	}()

	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-gctx.Done():
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%w (%s)", ErrShutdownTimeout, timeout)
	}
}

// keep runs sub until ctx ends, restarting it if it is optional.
func (s *Supervisor) keep(ctx context.Context, sub Subsystem, ready func(), minB, maxB time.Duration) error {
	log := s.Logger.With("subsystem", sub.Name)
	backoff := minB
	for {
		started := time.Now()
		log.Debug("subsystem starting")
		err := run(ctx, sub, ready)
		if ctx.Err() != nil {
			log.Debug("subsystem stopped")
			return nil
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		if sub.Required {
			log.Error("required subsystem failed", "err", err)
			return fmt.Errorf("%s: %w", sub.Name, err)
		}
		if time.Since(started) > 4*maxB {
			backoff = minB // it ran well for a while: start over
		}
		log.Error("subsystem failed; restarting", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxB)
	}
}

// run calls sub.Run, turning a panic into an error so that one subsystem's
// bug is handled by the restart policy instead of killing the node.
func run(ctx context.Context, sub Subsystem, ready func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return sub.Run(ctx, ready)
}
