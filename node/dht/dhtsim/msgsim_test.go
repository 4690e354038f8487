package dhtsim

import (
	"context"
	"testing"
	"time"
)

// smallMsgConfig is a network of 100 nodes with 50 messages in flight
// while a fifth of the nodes leave and as many join, in 12 hours rather
// than 48 to keep the test short.
func smallMsgConfig() MsgConfig {
	c := DefaultMsgConfig
	c.Nodes, c.Messages, c.Senders, c.Recipients = 100, 50, 20, 10
	c.ChurnOver, c.OnlineBy, c.AwayMax, c.Horizon = 12*time.Hour, 13*time.Hour, 6*time.Hour, 24*time.Hour
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
	// Recipients join in the first 13 hours and stay: with re-publication
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

// The simulation is deterministic.
func TestMessagesSeeded(t *testing.T) {
	c := smallMsgConfig()
	c.Messages = 10
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
