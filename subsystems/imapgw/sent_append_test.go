package imapgw

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/phpchat/phpchat-node/store"
)

// A client appends its copy of a message just sent (Thunderbird) before the
// gateway's Sent view has synced with the outbox: Sent still holds the
// message once.
func TestSentAppendBeforeSync(t *testing.T) {
	g := newGW(t)
	var sid [16]byte
	rand.Read(sid[:])
	sent := "Message-ID: <race1@phpchat.lan>\r\nSubject: out\r\n\r\nhello\r\n"
	if _, err := g.db.Outbox().Add(store.OutMsg{ID: sid, To: "pc1bob", Content: []byte(sent), State: store.OutQueued}); err != nil {
		t.Fatal(err)
	}
	// No event: the message service publishes none for a message queued.
	out := g.python(`
typ, d = M.append('Sent', '(\\Seen)', None, b'` + strings.ReplaceAll(sent, "\r\n", `\r\n`) + `')
assert typ == 'OK', d
typ, n = M.select('Sent')
print('SENT', n)
`)
	if !strings.Contains(out, "SENT [b'1']") {
		t.Errorf("BUG: the client's copy is stored beside the outbox's:\n%s", out)
	}
}
