package messages

import (
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// identityCloser returns a new identity closer to target than a is, or
// farther if !nearer.
func identityCloser(t testing.TB, a identity.Address, target identity.ID, nearer bool) *identity.Identity {
	t.Helper()
	for range 1000 {
		id := newIdentity(t)
		if closer(id.Address, a, target) == nearer {
			return id
		}
	}
	t.Fatal("no identity found")
	return nil
}

// A relay hands the envelopes it holds to a node closer to their
// recipient that comes up, and not to one farther away.
func TestHandOffToCloserPeer(t *testing.T) {
	r := startNode(t, nil, t.TempDir())
	rcpt := newIdentity(t).Address
	env, _ := sealed(t, newIdentity(t), rcpt, hello, time.Now(), testBits)
	r.hold(t, env)

	far := startNode(t, identityCloser(t, r.ID.Address, rcpt.ID(), false), t.TempDir())
	near := startNode(t, identityCloser(t, r.ID.Address, rcpt.ID(), true), t.TempDir())
	dial(t, far, r.Target())
	dial(t, near, r.Target())
	waitFor(t, 30*time.Second, "a copy at the closer node", func() bool { return near.status(t).RelayStored == 1 })
	// The farther node came up first: had it been handed a copy, it would
	// have it by now.
	if got := far.status(t).RelayStored; got != 0 {
		t.Fatalf("the farther node holds %d", got)
	}
	if got := r.status(t).RelayStored; got != 1 {
		t.Fatalf("the relay holds %d, want its copy still", got)
	}
}

// The periodic hand-off looks up each recipient's closest nodes and hands
// the envelopes to those closer than the relay.
func TestHandOffRound(t *testing.T) {
	seed := startNode(t, nil, t.TempDir())
	r := startNode(t, nil, t.TempDir(), seed.Target())
	r.join(t)
	rcpt := newIdentity(t).Address
	near := startNode(t, identityCloser(t, r.ID.Address, rcpt.ID(), true), t.TempDir(), seed.Target())
	near.join(t)
	// Held after near came up: only the periodic run hands it on.
	env, _ := sealed(t, newIdentity(t), rcpt, hello, time.Now(), testBits)
	r.hold(t, env)
	r.svc.handOffRound(testCtx(t))
	if got := near.status(t).RelayStored; got != 1 {
		t.Fatalf("the closer node holds %d, want 1", got)
	}
	wantSeed := 0
	if closer(seed.ID.Address, r.ID.Address, rcpt.ID()) {
		wantSeed = 1
	}
	if got := seed.status(t).RelayStored; got != wantSeed {
		t.Fatalf("the seed holds %d, want %d", got, wantSeed)
	}
}
