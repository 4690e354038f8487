package dhtsim

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/dht"
)

// smallMsgConfig is a network of 100 nodes with 50 messages in flight
// while a fifth of the nodes leave and as many join, in 6 hours rather
// than 48 to keep the test short.
func smallMsgConfig() MsgConfig {
	c := DefaultMsgConfig
	c.Nodes, c.Messages, c.Senders, c.Recipients = 100, 50, 20, 10
	c.ChurnOver, c.OnlineBy, c.AwayMax, c.Horizon = 6*time.Hour, 7*time.Hour, 3*time.Hour, 12*time.Hour
	return c
}

// Every message reaches its recipient and its receipt its sender, despite
// churn and senders that go away for a while.
func TestMessagesDeliveredUnderChurn(t *testing.T) {
	res, err := SimulateMessages(context.Background(), smallMsgConfig())
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != res.Sent || res.Receipted != res.Sent {
		t.Fatalf("of %d messages, %d received and %d receipted", res.Sent, res.Received, res.Receipted)
	}
	// Recipients join in the first 7 hours and stay: with re-publication
	// at most an hour apart, every message arrives within an hour of its
	// recipient joining.
	if d := DurationPercentile(res.AfterOnline, 100); d > time.Hour {
		t.Errorf("a message arrived %s after its recipient joined", d)
	}
	for _, sm := range res.Samples {
		if sm.InFlight > 0 && sm.Min == 0 {
			t.Errorf("at %s, %d of %d messages in flight had no copy online", sm.At, sm.Zero, sm.InFlight)
			break
		}
	}
}

// Without re-publication the relays alone deliver: the recipient fetches
// or is pushed its copies when it joins.
func TestMessagesDeliveredByRelays(t *testing.T) {
	c := smallMsgConfig()
	c.NoRepublish = true
	res, err := SimulateMessages(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.ByRelay != res.Received || res.Received != res.Sent {
		t.Fatalf("of %d messages, %d received, %d from relays", res.Sent, res.Received, res.ByRelay)
	}
	if d := DurationPercentile(res.AfterOnline, 100); d > 0 {
		t.Errorf("a message arrived %s after its recipient joined", d)
	}
}

// A relay's hand-off job gives its copy to the nodes of its table closer
// to the recipient than itself, and to no farther one.
func TestHandoffToCloserNodes(t *testing.T) {
	c := smallMsgConfig()
	c.Nodes, c.Messages, c.Senders, c.Recipients, c.Leave, c.Join, c.SendersAway = 40, 1, 1, 1, 0, 0, 0
	s, err := newMsgSim(context.Background(), c.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	e := s.envs[s.msgs[0]]
	target := e.to.nd.Info.ID()
	// The relay: the tenth closest online node to the recipient.
	byDistance := slices.Clone(s.stable)
	slices.SortFunc(byDistance, func(a, b *peer) int {
		d1, d2 := dht.Distance(target, a.nd.Info.ID()), dht.Distance(target, b.nd.Info.ID())
		return bytes.Compare(d1[:], d2[:])
	})
	far := byDistance[9]
	s.hold(far, s.msgs[0])
	s.handoff(far)
	want := 0
	for _, n := range far.nd.Table.Closest(target, c.Replicas) {
		if s.byAddr[n.Address] != e.to && dht.Closer(target, n.ID(), far.nd.Info.ID()) {
			want++
		}
	}
	got := 0
	for _, p := range s.peers {
		if p != far && p.held[s.msgs[0]] {
			got++
			if !dht.Closer(target, p.nd.Info.ID(), far.nd.Info.ID()) {
				t.Errorf("a copy went to a node farther from the recipient")
			}
		}
	}
	if got != want || got == 0 {
		t.Fatalf("the hand-off placed %d copies, want %d", got, want)
	}
}

// The simulation is deterministic.
func TestMessagesSeeded(t *testing.T) {
	c := smallMsgConfig()
	c.Nodes, c.Messages, c.Senders, c.Recipients = 40, 5, 5, 3
	a, err := SimulateMessages(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SimulateMessages(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if a.Lookups != b.Lookups || a.End != b.End || len(a.Samples) != len(b.Samples) {
		t.Fatalf("two runs differ: %d and %d lookups, ended at %s and %s", a.Lookups, b.Lookups, a.End, b.End)
	}
}
