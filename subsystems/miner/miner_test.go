package miner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
)

// gate is a MintFunc that waits for a release per call and records the
// order of the resources it minted.
type gate struct {
	started chan string
	release chan struct{}
}

func (g *gate) mint(ctx context.Context, resource string, bits, workers int, hashes *atomic.Uint64) (string, error) {
	g.started <- resource
	select {
	case <-g.release:
		hashes.Add(1000)
		return "1:" + itoa(bits) + ":261122:" + resource + "::r:c", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func startPool(t *testing.T, mint MintFunc, queue int) (*router.Router, *router.Endpoint) {
	t.Helper()
	r := router.New()
	p := &Pool{Router: r, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Mint: mint, Workers: 2, QueueSize: queue}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func() { close(ready) }) }()
	<-ready
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	client, err := r.Register("kernel", 1)
	if err != nil {
		t.Fatal(err)
	}
	return r, client
}

type reply struct {
	res minerapi.MintResult
	err error
}

func call(c *router.Endpoint, req minerapi.MintRequest) chan reply {
	ch := make(chan reply, 1)
	go func() {
		v, err := c.Call(context.Background(), minerapi.Endpoint, req)
		res, _ := v.(minerapi.MintResult)
		ch <- reply{res, err}
	}()
	return ch
}

func TestInteractiveBeforeBackground(t *testing.T) {
	g := &gate{started: make(chan string, 8), release: make(chan struct{})}
	_, c := startPool(t, g.mint, 8)

	first := call(c, minerapi.MintRequest{Resource: "bg1", Bits: 1, Priority: minerapi.Background})
	if got := <-g.started; got != "bg1" {
		t.Fatalf("first mint %q", got)
	}
	// While bg1 mints, queue a background and then an interactive request.
	bg2 := call(c, minerapi.MintRequest{Resource: "bg2", Bits: 1, Priority: minerapi.Background})
	waitQueued(t, c, 1)
	talk := call(c, minerapi.MintRequest{Resource: "talk", Bits: 1, Priority: minerapi.Interactive})
	waitQueued(t, c, 2)

	g.release <- struct{}{}
	if r := <-first; r.err != nil || !strings.Contains(r.res.Stamp, ":bg1:") {
		t.Fatalf("bg1: %+v", r)
	}
	if got := <-g.started; got != "talk" {
		t.Fatalf("after bg1 the pool minted %q, want the interactive request", got)
	}
	g.release <- struct{}{}
	<-talk
	<-g.started
	g.release <- struct{}{}
	if r := <-bg2; r.err != nil {
		t.Fatal(r.err)
	}
	st := stats(t, c)
	if st.Minted != 3 || st.TotalHashes != 3000 || st.Queued != 0 || st.Workers != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFullQueueFailsAtOnce(t *testing.T) {
	g := &gate{started: make(chan string, 8), release: make(chan struct{})}
	_, c := startPool(t, g.mint, 1)
	call(c, minerapi.MintRequest{Resource: "a", Bits: 1, Priority: minerapi.Background})
	<-g.started
	call(c, minerapi.MintRequest{Resource: "b", Bits: 1, Priority: minerapi.Background})
	waitQueued(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := c.Call(ctx, minerapi.Endpoint, minerapi.MintRequest{Resource: "c", Bits: 1, Priority: minerapi.Background})
	if !errors.Is(err, minerapi.ErrQueueFull) {
		t.Fatalf("third request: %v, want minerapi.ErrQueueFull", err)
	}
	// The other priority has its own queue.
	call(c, minerapi.MintRequest{Resource: "d", Bits: 1, Priority: minerapi.Interactive})
	waitQueued(t, c, 2)
	if st := stats(t, c); st.Refused != 1 {
		t.Fatalf("refused = %d, want 1", st.Refused)
	}
}

func TestRefusesTooManyBits(t *testing.T) {
	g := &gate{started: make(chan string, 1), release: make(chan struct{})}
	_, c := startPool(t, g.mint, 1)
	if _, err := c.Call(context.Background(), minerapi.Endpoint, minerapi.MintRequest{Resource: "x", Bits: 60}); err == nil {
		t.Fatal("60-bit request accepted")
	}
}

func TestDeadlineAbandonsMint(t *testing.T) {
	g := &gate{started: make(chan string, 1), release: make(chan struct{})}
	_, c := startPool(t, g.mint, 1)
	r := call(c, minerapi.MintRequest{Resource: "x", Bits: 1, Deadline: time.Now().Add(50 * time.Millisecond)})
	<-g.started
	if res := <-r; !errors.Is(res.err, context.DeadlineExceeded) {
		t.Fatalf("mint past its deadline: %v", res.err)
	}
}

func waitQueued(t *testing.T, c *router.Endpoint, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for stats(t, c).Queued != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue never reached %d", n)
		}
		time.Sleep(time.Millisecond) // the pool's queue has no event to wait on
	}
}

func stats(t *testing.T, c *router.Endpoint) minerapi.Stats {
	t.Helper()
	v, err := c.Call(context.Background(), minerapi.Endpoint, minerapi.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return v.(minerapi.Stats)
}

func TestPoolMintsRealStamps(t *testing.T) {
	mint := func(ctx context.Context, resource string, bits, workers int, hashes *atomic.Uint64) (string, error) {
		st, err := hashcash.Mint(ctx, resource, bits, hashcash.WithWorkers(workers), hashcash.WithHashCounter(hashes))
		if err != nil {
			return "", err
		}
		return st.String(), nil
	}
	_, c := startPool(t, mint, 4)
	v, err := c.Call(context.Background(), minerapi.Endpoint, minerapi.MintRequest{Resource: "pc1talk", Bits: 12, Priority: minerapi.Interactive})
	if err != nil {
		t.Fatal(err)
	}
	stamp := v.(minerapi.MintResult).Stamp
	if _, err := (hashcash.Policy{MinBits: 12, Resource: "pc1talk"}).Verify(stamp); err != nil {
		t.Fatalf("pool minted %q: %v", stamp, err)
	}
	if st := stats(t, c); st.Minted != 1 || st.TotalHashes == 0 {
		t.Fatalf("stats after a real mint: %+v", st)
	}
}
