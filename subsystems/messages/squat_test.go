package messages

import (
	"bytes"
	"testing"
	"time"
)

// A relay that learned a message's id seals its own message to the same
// recipient under that id and delivers it first. The real message is then
// refused as a conflict: not taken for a duplicate, not acknowledged with
// a receipt, and its relays not told to drop it.
func TestIDSquattingRefused(t *testing.T) {
	c := startNode(t, nil, t.TempDir()) // the recipient
	a := startNode(t, nil, t.TempDir()) // Alice, the real sender
	x := startNode(t, nil, t.TempDir()) // Mallory, a relay
	dial(t, a, c.Target())
	dial(t, x, c.Target())
	now := time.Now()
	real := []byte("Subject: real\r\n\r\nThe real message.\r\n")
	fake := []byte("Subject: fake\r\n\r\nSomething else.\r\n")
	aliceEnv, _ := sealed(t, a.ID, c.ID.Address, real, now, testBits)
	mEnv, mSecret := sealed(t, x.ID, c.ID.Address, fake, now, 0)
	mEnv.ID = aliceEnv.ID
	resealSignedBy(t, mEnv, mSecret, x.ID.Address, x.ID.Key, fake)
	stampEnv(t, mEnv, testBits)
	if r := sendRaw(t, x, c.ID.Address, mEnv.ID, marshal(t, mEnv)); r.Status != StatusAccepted {
		t.Fatalf("mallory's envelope: %+v", r)
	}
	waitFor(t, 10*time.Second, "mallory's receipt queued", func() bool { return c.receipts(t) == 1 })
	before := c.receipts(t)
	r := sendRaw(t, a, c.ID.Address, aliceEnv.ID, marshal(t, aliceEnv))
	if r.Status != StatusRefused || r.Code != CodeConflict {
		t.Fatalf("the real message under a squatted id: %+v, want refused %s", r, CodeConflict)
	}
	if after := c.receipts(t); after != before {
		t.Fatalf("receipts queued %d → %d: the real message was acknowledged", before, after)
	}
	in, err := c.DB.Inbox().Get(aliceEnv.ID)
	if err != nil || bytes.Contains(in.Content, []byte("real message")) || in.From != x.ID.Address.String() {
		t.Fatalf("inbox: %+v, %v", in, err)
	}
	// The From a mail client shows is the verified sender's.
	if !bytes.HasPrefix(in.Content, []byte("From: <"+x.ID.Address.String()+"@phpchat.lan>\r\n")) {
		t.Fatalf("stored content %q: From is not the verified sender", in.Content)
	}
}
