package messages

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/nodetest"
)

var hello = []byte("From: x\r\nTo: c\r\nSubject: hi\r\n\r\nHello.\r\n")

func newIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Each malformed, unpaid or untimely envelope is refused with its reason
// code, nothing of it is stored, and the session goes on serving.
func TestRefusals(t *testing.T) {
	// C takes envelopes of up to 16 KiB of content (80 KiB sealed).
	c := startNodeWith(t, nil, t.TempDir(), func(cfg *Config) { cfg.MaxMessageSize = 16 << 10 })
	x := startNode(t, nil, t.TempDir())
	dial(t, x, c.Target())
	other := newIdentity(t).Address // a recipient that is neither: C relays
	now := time.Now()
	big := bytes.Repeat([]byte("x"), 100<<10)

	type tc struct {
		name string
		make func(t testing.TB) (*envelope.Envelope, []byte)
		code string
	}
	raw := func(env *envelope.Envelope) []byte { return marshal(t, env) }
	cases := []tc{
		{"tampered ciphertext", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, c.ID.Address, hello, now, 0)
			env.Ciphertext[10] ^= 1
			stampEnv(t, env, testBits)
			return env, raw(env)
		}, CodeFormat},
		{"signed by another key", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, secret := sealed(t, x.ID, c.ID.Address, hello, now, 0)
			resealSignedBy(t, env, secret, x.ID.Address, newIdentity(t).Key, hello)
			stampEnv(t, env, testBits)
			return env, raw(env)
		}, CodeFormat},
		{"spent stamp, to the recipient", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, c.ID.Address, hello, now, testBits)
			if err := c.DB.Stamps().Spend(env.Stamp, now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return env, raw(env)
		}, CodeSpent},
		{"spent stamp, to a relay", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now, testBits)
			if err := c.DB.Stamps().Spend(env.Stamp, now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return env, raw(env)
		}, CodeSpent},
		{"under-weight stamp, to the recipient", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, c.ID.Address, hello, now, testBits-2)
			return env, raw(env)
		}, CodeUnderWeight},
		{"under-weight stamp, to a relay", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now, testBits-2)
			return env, raw(env)
		}, CodeUnderWeight},
		{"stamp for another envelope", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now, testBits)
			env2, _ := sealed(t, x.ID, other, hello, now, testBits)
			env.Stamp = env2.Stamp
			return env, raw(env)
		}, CodeUnderWeight},
		{"no stamp, to the recipient", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, c.ID.Address, hello, now, 0)
			return env, raw(env)
		}, CodeNoStamp},
		{"no stamp, to a relay", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now, 0)
			return env, raw(env)
		}, CodeNoStamp},
		{"expired", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now.Add(-25*time.Hour), testBits)
			return env, raw(env)
		}, CodeExpired},
		{"from the future", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, hello, now.Add(time.Hour), testBits)
			return env, raw(env)
		}, CodeExpired},
		{"over the size limit", func(t testing.TB) (*envelope.Envelope, []byte) {
			env, _ := sealed(t, x.ID, other, big, now, testBits+1)
			return env, raw(env)
		}, CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, b := tc.make(t)
			r := sendRaw(t, x, c.ID.Address, env.ID, b)
			if r.Status != StatusRefused || r.Code != tc.code {
				t.Fatalf("answer %+v, want refused %s", r, tc.code)
			}
			t.Logf("refused: %s", r.Reason)
			if env.Stamp != "" && tc.code != CodeSpent {
				if spent, _ := c.DB.Stamps().Spent(env.Stamp); spent {
					t.Error("the refused envelope's stamp was spent")
				}
			}
			ping(t, x, c.ID.Address)
		})
	}

	// Parts that lie about the envelope.
	env, _ := sealed(t, x.ID, other, hello, now, testBits)
	b := raw(env)
	id := hex.EncodeToString(env.ID[:])
	parts := []struct {
		name string
		part Part
		code string
	}{
		{"a part count that lies", Part{ID: id, Part: 0, Parts: 3, Size: len(b), Data: b}, CodeFormat},
		{"a size over the limit", Part{ID: id, Part: 0, Parts: 18, Size: 9 << 20, Data: make([]byte, PartSize)}, CodeTooLarge},
		{"a size that lies", Part{ID: id, Part: 0, Parts: 1, Size: len(b) + 1, Data: b}, CodeFormat},
		{"another id than the envelope's", Part{ID: hex.EncodeToString(make([]byte, 16)), Part: 0, Parts: 1, Size: len(b), Data: b}, CodeFormat},
	}
	for _, tc := range parts {
		t.Run(tc.name, func(t *testing.T) {
			e := callFrame(t, x, c.ID.Address, NameMsg, tc.part)
			var r Response
			if err := e.Decode(&r); err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusRefused || r.Code != tc.code {
				t.Fatalf("answer %+v, want refused %s", r, tc.code)
			}
			ping(t, x, c.ID.Address)
		})
	}

	st := c.status(t)
	if st.InboxTotal != 0 || st.RelayStored != 0 {
		t.Fatalf("refused envelopes stored: %+v", st)
	}
	// The same session still takes a good envelope.
	if r := sendRaw(t, x, c.ID.Address, env.ID, b); r.Status != StatusAccepted {
		t.Fatalf("good envelope: %+v", r)
	}
	if got := c.status(t).RelayStored; got != 1 {
		t.Fatalf("relay holds %d, want 1", got)
	}
}

// A relay answers msg_fetch with the envelopes of the asking node only,
// and deletes an envelope only for its deletion secret.
func TestFetchAndDeleteAtRelay(t *testing.T) {
	r := startNode(t, nil, t.TempDir())
	x := startNode(t, nil, t.TempDir())
	// C, the recipient, runs no messages service: what R pushes to it is
	// refused, so the copy stays for the fetch below.
	cNode, err := nodetest.Start(nodetest.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cNode.Stop() })
	c := &testNode{Node: cNode}

	env, secret := sealed(t, x.ID, c.ID.Address, hello, time.Now(), testBits)
	dial(t, x, r.Target())
	if resp := sendRaw(t, x, r.ID.Address, env.ID, marshal(t, env)); resp.Status != StatusAccepted {
		t.Fatalf("msg: %+v", resp)
	}

	fetched := func(n *testNode) int {
		var f Fetched
		if err := callFrame(t, n, r.ID.Address, NameFetch, nil).Decode(&f); err != nil {
			t.Fatal(err)
		}
		return f.Count
	}
	if got := fetched(x); got != 0 {
		t.Fatalf("another node's fetch: count %d, want 0", got)
	}
	dial(t, c, r.Target())
	if got := fetched(c); got != 1 {
		t.Fatalf("the recipient's fetch: count %d, want 1", got)
	}

	del := func(secret []byte) bool {
		var d Deleted
		if err := callFrame(t, x, r.ID.Address, NameDelete, Delete{ID: hex.EncodeToString(env.ID[:]), Secret: secret}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d.Deleted
	}
	wrong := make([]byte, 32)
	rand.Read(wrong)
	if del(wrong) {
		t.Fatal("deleted with a wrong secret")
	}
	if got := r.status(t).RelayStored; got != 1 {
		t.Fatalf("after a wrong secret the relay holds %d, want 1", got)
	}
	if !del(secret[:]) {
		t.Fatal("not deleted with the right secret")
	}
	if got := r.status(t).RelayStored; got != 0 {
		t.Fatalf("after the secret the relay holds %d, want 0", got)
	}
	// A copy pushed again after the deletion is a duplicate.
	if resp := sendRaw(t, x, r.ID.Address, env.ID, marshal(t, env)); resp.Status != StatusDuplicate {
		t.Fatalf("msg after deletion: %+v, want duplicate", resp)
	}
	ping(t, x, r.ID.Address)
}

// A relay that holds an envelope answers its first part duplicate: the
// other parts need not travel.
func TestDuplicateOnFirstPart(t *testing.T) {
	r := startNode(t, nil, t.TempDir())
	x := startNode(t, nil, t.TempDir())
	dial(t, x, r.Target())
	env, _ := sealed(t, x.ID, newIdentity(t).Address, bytes.Repeat([]byte("y"), PartSize), time.Now(), 0)
	stampEnv(t, env, envelope.StampBits(env.BodySize(), testBits))
	raw := marshal(t, env)
	id := hex.EncodeToString(env.ID[:])
	first := Part{ID: id, Part: 0, Parts: 2, Size: len(raw), Data: raw[:PartSize]}
	answer := func() string {
		var resp Response
		if err := callFrame(t, x, r.ID.Address, NameMsg, first).Decode(&resp); err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if got := answer(); got != StatusContinue {
		t.Fatalf("first part of a new envelope: %s, want continue", got)
	}
	r.hold(t, env)
	if got := answer(); got != StatusDuplicate {
		t.Fatalf("first part of a held envelope: %s, want duplicate", got)
	}
}
