package talk

import (
	"context"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// REVIEW: a console attached before talk restarts still holds its
// subscription, but the new run counts no console: requests are answered
// "no user interface" and events go to the backlog.
func TestReviewConsoleLostAcrossTalkRestart(t *testing.T) {
	restart := make(chan struct{})
	var svc *Service
	n, err := nodetest.Start(nodetest.Config{
		Dir: t.TempDir(), Hashcash: wire.HashcashPolicy{Purpose: testBits}, Names: Names,
		Extra: func(n *nodetest.Node) []nodetest.Run {
			svc = New(Config{Router: n.Router, Self: n.ID.Address, Contacts: n.DB.Contacts(),
				Stamps: &stamps.Checker{Spent: n.DB.Stamps()}, Nickname: "bob", Timeout: time.Minute, Bits: testBits})
			return []nodetest.Run{func(ctx context.Context, ready func()) error {
				for first := true; ; first = false {
					rctx, cancel := context.WithCancel(ctx)
					go func() {
						select {
						case <-restart:
							cancel()
						case <-rctx.Done():
						}
					}()
					rd := ready
					if !first {
						rd = func() {}
					}
					err := svc.Run(rctx, rd)
					cancel()
					if ctx.Err() != nil {
						return err
					}
				}
			}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	b := &testNode{Node: n, r: n.Router, svc: svc, ep: n.Endpoint, addr: n.ID.Address, db: n.DB}
	a := newTestNode(t, time.Minute)
	connect(t, a, b)
	events, _ := b.console(t)

	restart <- struct{}{}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.r.Await(ctx, talkapi.Endpoint); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	req := Request{Talk: "t9", Nickname: "alice", Stamp: mint(t, Resource(b.addr, a.addr, "t9"), testBits)}
	e, err := raw(t, a, b, NameRequest, req)
	var resp Response
	if err != nil || e.Decode(&resp) != nil {
		t.Fatalf("talk_request: %v", err)
	}
	if resp.Status != talkapi.StatusWaiting {
		t.Fatalf("console still attached (subscribed), but the restarted talk answered status %d (want %d, ringing)", resp.Status, talkapi.StatusWaiting)
	}
	expect(t, events, talkapi.KindRequest)
}
