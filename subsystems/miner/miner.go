// Package miner is the node's hashcash miner pool: a router endpoint that
// mints stamps for the other subsystems, so that the kernel never mints.
//
// Requests are queued by priority (interactive before background) in
// bounded queues; a request that cannot be queued fails at once, so a
// caller never blocks on a busy pool. One stamp is minted at a time, by
// all the pool's workers together, which gives the shortest wait for the
// request at the head of the queue.
package miner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
)

// MintFunc mints a stamp with workers goroutines, adding the hashes it
// computes to hashes as it goes. It returns when it has a stamp or ctx
// ends.
type MintFunc func(ctx context.Context, resource string, bits, workers int, hashes *atomic.Uint64) (string, error)

// Pool is the miner pool subsystem.
type Pool struct {
	Router  *router.Router
	Logger  *slog.Logger
	Mint    MintFunc
	Workers int
	// QueueSize bounds each priority's queue (default 64).
	QueueSize int
	// MaxBits refuses requests for more bits than this (default 32), which
	// would take the pool away from everything else for too long.
	MaxBits int

	hashes  atomic.Uint64
	minted  atomic.Uint64
	refused atomic.Uint64
}

type job struct {
	m   *router.Msg
	req minerapi.MintRequest
}

// Run serves mint requests until ctx ends.
func (p *Pool) Run(ctx context.Context, ready func()) error {
	ep, err := p.Router.Register(minerapi.Endpoint, 256)
	if err != nil {
		return err
	}
	defer ep.Close()
	size := p.QueueSize
	if size <= 0 {
		size = 64
	}
	maxBits := p.MaxBits
	if maxBits <= 0 {
		maxBits = 32
	}
	queues := [2][]job{}
	var (
		busy    bool
		done    = make(chan struct{}, 1)
		wg      sync.WaitGroup
		current context.CancelFunc
		rate    float64
		last    = p.hashes.Load()
	)
	defer func() {
		if current != nil {
			current()
		}
		wg.Wait()
		for _, q := range queues {
			for _, j := range q {
				j.m.Reply(nil, fmt.Errorf("miner: %w", router.ErrClosed))
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ready()

	start := func(j job) {
		busy = true
		jctx, cancel := context.WithCancel(ctx)
		if !j.req.Deadline.IsZero() {
			cancel()
			jctx, cancel = context.WithDeadline(ctx, j.req.Deadline)
		}
		current = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			t0 := time.Now()
			stamp, err := p.Mint(jctx, j.req.Resource, j.req.Bits, p.Workers, &p.hashes)
			if err != nil {
				j.m.Reply(nil, fmt.Errorf("mint %d bits on %q: %w", j.req.Bits, j.req.Resource, err))
			} else {
				p.minted.Add(1)
				j.m.Reply(minerapi.MintResult{Stamp: stamp, Took: time.Since(t0)}, nil)
			}
			done <- struct{}{}
		}()
	}
	next := func() {
		for pr := range queues {
			for len(queues[pr]) > 0 {
				j := queues[pr][0]
				queues[pr] = queues[pr][1:]
				if !j.req.Deadline.IsZero() && time.Now().After(j.req.Deadline) {
					j.m.Reply(nil, fmt.Errorf("mint %q: %w while queued", j.req.Resource, context.DeadlineExceeded))
					continue
				}
				start(j)
				return
			}
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			busy = false
			current = nil
			next()
		case <-tick.C:
			now := p.hashes.Load()
			rate = float64(now - last)
			last = now
		case m := <-ep.Inbox():
			switch req := m.Body.(type) {
			case minerapi.MintRequest:
				if req.Bits < 0 || req.Bits > maxBits {
					m.Reply(nil, fmt.Errorf("mint: %d bits out of range (0-%d)", req.Bits, maxBits))
					continue
				}
				pr := req.Priority
				if pr != minerapi.Interactive {
					pr = minerapi.Background
				}
				if len(queues[pr]) >= size {
					p.refused.Add(1)
					m.Reply(nil, fmt.Errorf("mint %q: %w (%d waiting)", req.Resource, minerapi.ErrQueueFull, size))
					continue
				}
				queues[pr] = append(queues[pr], job{m: m, req: req})
				if !busy {
					next()
				}
			case minerapi.StatsRequest:
				m.Reply(minerapi.Stats{
					Workers:     p.Workers,
					HashRate:    rate,
					Queued:      len(queues[0]) + len(queues[1]),
					Minting:     busy,
					Minted:      p.minted.Load(),
					Refused:     p.refused.Load(),
					TotalHashes: p.hashes.Load(),
				}, nil)
			default:
				m.Reply(nil, fmt.Errorf("miner: unexpected %T", m.Body))
			}
		}
	}
}
