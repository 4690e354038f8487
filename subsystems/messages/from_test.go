package messages

import (
	"errors"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

func TestSetFrom(t *testing.T) {
	const from = "<pc1x@phpchat.lan>"
	for _, tc := range []struct{ in, want string }{
		{"From: Alice <pc1alice@phpchat.lan>\r\nSubject: hi\r\n\r\nbody\r\nFrom: not a header\r\n",
			"From: " + from + "\r\nSubject: hi\r\n\r\nbody\r\nFrom: not a header\r\n"},
		{"Subject: hi\r\nfrom: x\r\n  folded\r\nTo: y\r\n\r\nbody",
			"From: " + from + "\r\nSubject: hi\r\nTo: y\r\n\r\nbody"},
		{"Subject: lf only\n\nbody\n", "From: " + from + "\r\nSubject: lf only\n\nbody\n"},
		{"just text\r\n", "From: " + from + "\r\n\r\njust text\r\n"},
		{"", "From: " + from + "\r\n\r\n"},
	} {
		if got := string(setFrom([]byte(tc.in), from)); got != tc.want {
			t.Errorf("setFrom(%q) =\n%q, want\n%q", tc.in, got, tc.want)
		}
	}
}

// Envelopes in parts take memory as their parts arrive, within one budget
// for all peers: a first part reserves nothing for the size it claims.
func TestAssemblerBudget(t *testing.T) {
	a := newAssembler(64<<20, maxPending)
	size := 16 * PartSize
	part := make([]byte, PartSize)
	now := time.Now()
	accepted := 0
	for i := 0; i < 1000; i++ {
		from := identity.Address{byte(i), byte(i >> 8)}
		_, err := a.add(from, Part{ID: "x", Part: 0, Parts: 16, Size: size, Data: part}, now)
		if err != nil {
			var perr *errPart
			if !errors.As(err, &perr) || perr.code != CodeOverQuota {
				t.Fatalf("peer %d: %v, want over_quota", i, err)
			}
			break
		}
		accepted++
	}
	if got := accepted * PartSize; got > maxAssembling {
		t.Fatalf("%d bytes held, budget %d", got, maxAssembling)
	}
	if accepted*size <= maxAssembling {
		t.Fatalf("only %d first parts taken: the claimed sizes were reserved", accepted)
	}
	a.forget(identity.Address{0, 0})
	if a.held != (accepted-1)*PartSize {
		t.Fatalf("held %d after a peer left, want %d", a.held, (accepted-1)*PartSize)
	}
}
