package messages

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// testBits is the stamp price of test networks: cheap to mint.
const testBits = 8

// debugLogger logs the services of test nodes; nil discards.
var debugLogger *slog.Logger

// testNode is a node with the messages service, in process.
type testNode struct {
	*nodetest.Node
	svc *Service
}

// startNode starts a node with its store in dir (a new identity if id is
// nil) that joins through boot.
func startNode(t testing.TB, id *identity.Identity, dir string, boot ...string) *testNode {
	t.Helper()
	return startNodeWith(t, id, dir, nil, boot...)
}

// startNodeWith is startNode with a change to the service's Config.
func startNodeWith(t testing.TB, id *identity.Identity, dir string, change func(*Config), boot ...string) *testNode {
	t.Helper()
	var svc *Service
	n, err := nodetest.Start(nodetest.Config{
		Dir: dir, Identity: id, Bootstrap: boot,
		Hashcash: wire.HashcashPolicy{Purpose: testBits}, Names: Names,
		Extra: func(n *nodetest.Node) []nodetest.Run {
			cfg := Config{
				Logger: debugLogger,
				Router: n.Router, Identity: n.ID, DB: n.DB, Bits: testBits,
				Stamps: &stamps.Checker{Spent: n.DB.Stamps(), Policy: hashcash.Policy{Expiry: StampExpiry}},
			}
			if change != nil {
				change(&cfg)
			}
			svc = New(cfg)
			return []nodetest.Run{svc.Run}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return &testNode{Node: n, svc: svc}
}

// join runs the node's bootstrap job.
func (n *testNode) join(t testing.TB) {
	t.Helper()
	if _, err := n.Call(context.Background(), dhtapi.Endpoint, dhtapi.JobRequest{Job: "bootstrap"}); err != nil {
		t.Fatalf("join: %v", err)
	}
}

func (n *testNode) call(t testing.TB, req any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := n.Call(ctx, msgapi.Endpoint, req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return v
}

// waitFor polls cond until it holds, or fails the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A message to a node that is offline waits on relays near it, reaches it
// within seconds of its joining, and comes back as delivered; the relays'
// copies are gone then.
func TestOfflineDeliveryWithReceipt(t *testing.T) {
	seed := startNode(t, nil, t.TempDir())
	var relays []*testNode
	for range 3 {
		r := startNode(t, nil, t.TempDir(), seed.Target())
		r.join(t)
		relays = append(relays, r)
	}
	a := startNode(t, nil, t.TempDir(), seed.Target())
	a.join(t)
	cID, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}

	content := []byte("From: a\r\nTo: c\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello, C.\r\n")
	id := a.call(t, msgapi.SendRequest{To: cID.Address, Content: content}).(string)
	state := func(n *testNode) string {
		return n.call(t, msgapi.ReadRequest{ID: id}).(msgapi.Message).State
	}
	waitFor(t, 30*time.Second, "message sent to relays", func() bool { return state(a) == msgapi.StateSent })
	held := 0
	for _, r := range append(relays, seed) {
		held += r.call(t, msgapi.StatusRequest{}).(msgapi.Status).RelayStored
	}
	if held == 0 {
		t.Fatal("no relay holds a copy")
	}

	c := startNode(t, cID, t.TempDir(), seed.Target())
	joined := time.Now()
	c.join(t)
	var got msgapi.Message
	waitFor(t, 10*time.Second, "message in C's inbox", func() bool {
		for _, m := range c.call(t, msgapi.ListRequest{}).([]msgapi.Summary) {
			if m.ID == id {
				got = c.call(t, msgapi.ReadRequest{ID: id}).(msgapi.Message)
				return true
			}
		}
		return false
	})
	t.Logf("delivered %v after C joined", time.Since(joined).Round(time.Millisecond))
	// What A wrote, but From: only the signature vouches for a sender.
	want := setFrom(content, "<"+a.ID.Address.String()+"@phpchat.lan>")
	if string(got.Content) != string(want) || got.Peer != a.ID.Address.String() || got.Subject != "Grüße" {
		t.Fatalf("C got %+v", got)
	}
	waitFor(t, 30*time.Second, "A sees the message delivered", func() bool { return state(a) == msgapi.StateDelivered })
	waitFor(t, 30*time.Second, "relay copies deleted", func() bool {
		n := 0
		for _, r := range append(relays, seed) {
			n += r.call(t, msgapi.StatusRequest{}).(msgapi.Status).RelayStored
		}
		return n == 0
	})
}

// A message whose recipient could not be reached is tried again as soon
// as the recipient connects, not at the end of its backoff.
func TestDeliveredWhenRecipientConnects(t *testing.T) {
	a := startNode(t, nil, t.TempDir())
	cID, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id := a.call(t, msgapi.SendRequest{To: cID.Address, Content: []byte("Subject: hi\r\n\r\nhello\r\n")}).(string)
	mid, _ := parseID(id)
	waitFor(t, 30*time.Second, "a first attempt", func() bool {
		m, err := a.DB.Outbox().Get(mid)
		return err == nil && m.Attempts >= 1
	})
	c := startNode(t, cID, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: a.Target()}); err != nil {
		t.Fatal(err)
	}
	// The backoff is a minute: only the connection explains a delivery now.
	waitFor(t, 20*time.Second, "delivery once C connected", func() bool {
		_, err := c.DB.Inbox().Get(mid)
		return err == nil
	})
}
