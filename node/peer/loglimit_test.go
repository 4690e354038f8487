package peer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/wire"
)

// A peer's error and quit texts are cut to the spec's 512 bytes on
// receipt, in the handshake and in a running session.
func TestPeerTextBounded(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	bounded := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if n := len(err.Error()); n > wire.MaxTextLen+200 {
			t.Fatalf("%s: error of %d bytes: the peer's text was not cut", what, n)
		}
		var pe *wire.ProtocolError
		if errors.As(err, &pe) && (len(pe.Text) > wire.MaxTextLen || len(pe.Name) > wire.MaxNameLen) {
			t.Fatalf("%s: error text %d bytes, name %d", what, len(pe.Text), len(pe.Name))
		}
	}
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())

	rc := dialRaw(t, b, srv.addr)
	rc.hello()
	rc.send(wire.NameQuit, 0, wire.Quit{Reason: long})
	bounded("quit in the handshake", srv.next(t).err)

	rc = dialRaw(t, b, srv.addr)
	rc.hello()
	rc.send(wire.NameError, 0, wire.Error{Code: wire.CodeBusy, Text: long, Name: long})
	bounded("error in the handshake", srv.next(t).err)

	rc = dialRaw(t, b, srv.addr)
	rc.handshake()
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	rc.send(wire.NameError, 0, wire.Error{Code: wire.CodeBusy, Text: long, Name: long})
	rc.send(wire.NameQuit, 0, wire.Quit{Reason: long})
	bounded("error and quit in a session", waitDone(t, r.s))

	// A reply that is an error frame.
	rc = dialRaw(t, b, srv.addr)
	rc.handshake()
	r = srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	called := make(chan error, 1)
	go func() {
		_, err := r.s.Call(context.Background(), "node_find", nil)
		called <- err
	}()
	for {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Name == "node_find" {
			rc.send(wire.NameError, e.RID, wire.Error{Code: wire.CodeBusy, Text: long, Name: long})
			break
		}
	}
	bounded("error answering a call", <-called)
}

// The limited handler passes a burst of lines of one kind, drops the rest,
// and says how many it dropped on the next line it passes; other kinds
// are not held up.
func TestLimitedHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewLimitedHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), 2, 3)
	now := time.Unix(1000, 0)
	h.(*limitedHandler).l.now = func() time.Time { return now }
	log := slog.New(h).With("conn", 1)
	for range 100 {
		log.Debug("peer: invalid frame", "err", "x")
	}
	log.Info("peer connected")
	if n := strings.Count(buf.String(), "invalid frame"); n != 3 {
		t.Fatalf("%d lines of a kind passed at once, want the burst, 3:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "peer connected") {
		t.Fatalf("another kind was held up:\n%s", buf.String())
	}
	buf.Reset()
	now = now.Add(time.Second) // two tokens
	for range 10 {
		log.Debug("peer: invalid frame", "err", "x")
	}
	if got := buf.String(); strings.Count(got, "invalid frame") != 2 || !strings.Contains(got, "dropped=97") {
		t.Fatalf("a second later: %s; want 2 lines, the first with dropped=97", got)
	}
}
