package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/supervisor"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/cronapi"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
	"github.com/phpchat/phpchat-node/subsystems/talk"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// failOnce makes sub fail once, as a bug would: its first run stops as
// soon as it is ready and returns an error, and the supervisor restarts it.
func failOnce(sub supervisor.Subsystem, failed chan<- string) supervisor.Subsystem {
	var done atomic.Bool
	run := sub.Run
	sub.Run = func(ctx context.Context, ready func()) error {
		if !done.CompareAndSwap(false, true) {
			return run(ctx, ready)
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		run(rctx, cancel)
		failed <- sub.Name
		return errors.New("injected failure")
	}
	return sub
}

// Every optional subsystem serves again after a restart by the real
// supervisor, and the node stays idle.
func TestOptionalSubsystemsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	l := config.Layout{Dir: dir}
	s, err := config.Resolve(config.Map{Values: map[string]string{"listen": "127.0.0.1:0"}, Origin: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s.NodeFindBits, s.TalkBits = nodetest.DefaultBits, nodetest.DefaultBits
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "store"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, subs, release, err := subsystems(l, s, id, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	failed := make(chan string, len(subs))
	optional := 0
	for i, sub := range subs {
		if !sub.Required {
			subs[i] = failOnce(sub, failed)
			optional++
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sup := &supervisor.Supervisor{Logger: slog.New(slog.DiscardHandler), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	stopped := make(chan error, 1)
	go func() { stopped <- sup.Run(ctx, subs, nil) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("supervisor: %v", err)
		}
	}()
	for range optional {
		<-failed
	}
	ep, err := r.Register("test", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	for _, id := range []string{dhtapi.Endpoint, minerapi.Endpoint, cronapi.Endpoint, talkapi.Endpoint, msgapi.Endpoint} {
		if err := r.Await(wctx, id); err != nil {
			t.Fatalf("%s did not come back: %v", id, err)
		}
	}

	// The miner and the scheduler answer.
	if _, err := router.CallAs[minerapi.MintResult](wctx, ep, minerapi.Endpoint, minerapi.MintRequest{Resource: "x", Bits: 4}); err != nil {
		t.Fatalf("miner after restart: %v", err)
	}
	if _, err := router.CallAs[[]cronapi.Status](wctx, ep, cronapi.Endpoint, cronapi.StatusRequest{}); err != nil {
		t.Fatalf("cron after restart: %v", err)
	}
	if _, err := router.CallAs[msgapi.Status](wctx, ep, msgapi.Endpoint, msgapi.StatusRequest{}); err != nil {
		t.Fatalf("messages after restart: %v", err)
	}
	// The DHT answers node_find again: a new node joins through it.
	peers, err := router.CallAs[kernelapi.Peers](wctx, ep, kernelapi.Endpoint, kernelapi.PeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	target := id.Address.String() + "@" + peers.Listen
	p, err := nodetest.Start(nodetest.Config{Dir: t.TempDir(), Bootstrap: []string{target}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if _, err := p.Call(wctx, dhtapi.Endpoint, dhtapi.JobRequest{Job: "bootstrap"}); err != nil {
		t.Fatalf("joining through the restarted DHT: %v", err)
	}
	// Talk frames reach the restarted talk service: with no console
	// attached, a paid request is answered "no user interface".
	stamp, err := nodetest.Mint(wctx, talk.Resource(id.Address, p.ID.Address, "t1"), s.TalkBits)
	if err != nil {
		t.Fatal(err)
	}
	e, err := router.CallAs[wire.Envelope](wctx, p.Endpoint, kernelapi.Endpoint, kernelapi.CallRequest{
		To: id.Address, Name: talk.NameRequest, Data: talk.Request{Talk: "t1", Nickname: "probe", Stamp: stamp},
	})
	var resp talk.Response
	if err != nil || e.Decode(&resp) != nil || resp.Status != talkapi.StatusNoUI {
		t.Fatalf("talk_request after restart: %s %s, %v; want status %d", e.Name, e.Data, err, talkapi.StatusNoUI)
	}

	// Idle stays idle: a loop spinning on a closed channel would take
	// most of a core; the node at rest takes almost nothing.
	before := cpuTime(t)
	idle := time.NewTimer(time.Second)
	<-idle.C
	if used := cpuTime(t) - before; used > 300*time.Millisecond {
		t.Fatalf("the process used %v of CPU in 1 s at rest after the restarts", used)
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
