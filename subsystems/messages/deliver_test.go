package messages

import (
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// A message to a recipient that is online goes to it directly: it is
// delivered within seconds and no relay holds a copy of it or of its
// receipt.
func TestDirectDelivery(t *testing.T) {
	seed := startNode(t, nil, t.TempDir())
	nodes := []*testNode{seed}
	for range 3 {
		n := startNode(t, nil, t.TempDir(), seed.Target())
		n.join(t)
		nodes = append(nodes, n)
	}
	a, c := nodes[1], nodes[2]
	start := time.Now()
	id := a.call(t, msgapi.SendRequest{To: c.ID.Address, Content: hello}).(string)
	waitFor(t, 30*time.Second, "delivered", func() bool {
		return a.call(t, msgapi.ReadRequest{ID: id}).(msgapi.Message).State == msgapi.StateDelivered
	})
	t.Logf("delivered in %v", time.Since(start).Round(time.Millisecond))
	m := a.call(t, msgapi.ReadRequest{ID: id}).(msgapi.Message)
	if m.Relays != 0 {
		t.Errorf("sent to %d relays, want none", m.Relays)
	}
	if c.status(t).InboxTotal != 1 {
		t.Error("not in C's inbox")
	}
	for _, n := range nodes {
		if got := n.status(t).RelayStored; got != 0 {
			t.Errorf("a relay holds %d envelopes", got)
		}
	}
}

// The sender that delivers a message again (it has not seen the receipt)
// gets another receipt, at most one per receiptEvery; a relay that brings
// a duplicate gets no receipt, but the deletion secret, and drops its
// copy.
func TestDuplicates(t *testing.T) {
	c := startNode(t, nil, t.TempDir())
	x := startNode(t, nil, t.TempDir())
	r := startNode(t, nil, t.TempDir())
	dial(t, x, c.Target())
	env, _ := sealed(t, x.ID, c.ID.Address, hello, time.Now(), testBits)
	raw := marshal(t, env)

	if resp := sendRaw(t, x, c.ID.Address, env.ID, raw); resp.Status != StatusAccepted {
		t.Fatalf("first delivery: %+v", resp)
	}
	waitFor(t, 10*time.Second, "the receipt queued", func() bool { return c.receipts(t) == 1 })
	if resp := sendRaw(t, x, c.ID.Address, env.ID, raw); resp.Status != StatusDuplicate {
		t.Fatalf("second delivery: %+v", resp)
	}
	// The second receipt is queued in the background: wait for it.
	waitFor(t, 10*time.Second, "a receipt for the sender's duplicate", func() bool { return c.receipts(t) == 2 })
	// A third delivery within receiptEvery gets none.
	if resp := sendRaw(t, x, c.ID.Address, env.ID, raw); resp.Status != StatusDuplicate {
		t.Fatalf("third delivery: %+v", resp)
	}
	if c.svc.receiptDue(env.ID) {
		t.Fatal("receipt due again within receiptEvery")
	}

	// A relay that holds a copy pushes it when C connects: a duplicate,
	// answered with the secret, which deletes the copy.
	r.hold(t, env)
	before := c.receipts(t)
	dial(t, c, r.Target())
	waitFor(t, 10*time.Second, "the relay's copy deleted", func() bool { return r.status(t).RelayStored == 0 })
	if got := c.receipts(t); got != before {
		t.Fatalf("a relay's duplicate got a receipt: %d receipts, had %d", got, before)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {6, 32 * time.Minute}, {7, time.Hour}, {8, time.Hour}, {100, time.Hour}} {
		if got := backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// An outgoing message whose next attempt would fall after its expiry is
// tried again at its expiry, and then marked expired.
func TestOutboxExpiry(t *testing.T) {
	var clock atomicTime
	clock.set(time.Now())
	a := startNodeWith(t, nil, t.TempDir(), func(cfg *Config) { cfg.Now = clock.get; cfg.Expiry = 30 * time.Second })
	to := newIdentity(t).Address // nobody: nothing can be placed
	id := a.call(t, msgapi.SendRequest{To: to, Content: hello}).(string)
	pid, _ := parseID(id)
	waitFor(t, 30*time.Second, "first attempt", func() bool {
		m, err := a.DB.Outbox().Get(pid)
		return err == nil && m.Attempts >= 1
	})
	m, _ := a.DB.Outbox().Get(pid)
	if !m.NextAttempt.Equal(m.Expires) {
		t.Fatalf("next attempt %v after expiry %v", m.NextAttempt, m.Expires)
	}
	clock.set(m.Expires.Add(time.Second))
	a.svc.wake()
	waitFor(t, 30*time.Second, "expired", func() bool {
		return a.call(t, msgapi.ReadRequest{ID: id}).(msgapi.Message).State == msgapi.StateExpired
	})
}
