package messages

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// A relay pushing a hundred envelopes of nearly 1 MiB (two parts each) to
// a recipient that just connected neither overflows nor stalls the
// session: pings both ways keep their round trip short meanwhile, and
// every envelope arrives.
func TestPushFlowControl(t *testing.T) {
	// The hundred in a full run (PHPCHAT_FULL_TESTS=1, about 10 s
	// on 2 cores); twenty keep go test ./... fast and still fill the
	// session's queue many times over.
	n := 20
	switch {
	case os.Getenv("PHPCHAT_FULL_TESTS") != "":
		n = 100
	case testing.Short() || raceEnabled:
		n = 10
	}
	r := startNode(t, nil, t.TempDir())
	cID := newIdentity(t)
	sender := newIdentity(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), (1<<20-4096)/16)
	now := time.Now()
	for range n {
		env, _ := sealed(t, sender, cID.Address, content, now, 0)
		stampEnv(t, env, envelope.StampBits(env.BodySize(), testBits))
		if env.Size() <= PartSize {
			t.Fatalf("envelope of %d bytes travels in one part", env.Size())
		}
		r.hold(t, env)
	}

	c := startNode(t, cID, t.TempDir())
	start := time.Now()
	dial(t, c, r.Target())
	var worst time.Duration
	pings := 0
	deadline := start.Add(5 * time.Minute)
	// Pings paced, so that they measure the push rather than slow it.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.status(t).InboxTotal < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d envelopes arrived", c.status(t).InboxTotal, n)
		}
		worst = max(worst, ping(t, c, r.ID.Address), ping(t, r, c.ID.Address))
		pings += 2
		<-tick.C
	}
	took := time.Since(start)
	t.Logf("%d envelopes of %d KiB in %v (%.1f MiB/s); %d pings, the slowest %v",
		n, len(content)>>10, took.Round(time.Millisecond), float64(n)*float64(len(content))/(1<<20)/took.Seconds(), pings, worst.Round(time.Microsecond))
	if worst > 5*time.Second {
		t.Errorf("a ping took %v during the push", worst)
	}
	for _, m := range c.call(t, msgapi.ListRequest{}).([]msgapi.Summary) {
		// The content, with the verified sender's From put before it.
		want := len(setFrom(content, "<"+sender.Address.String()+"@phpchat.lan>"))
		if m.Box == "inbox" && m.Size != want {
			t.Fatalf("message of %d bytes, want %d", m.Size, want)
		}
	}
}
