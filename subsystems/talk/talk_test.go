package talk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

func TestParseRefusesBadInput(t *testing.T) {
	env := func(name string, rid uint64, data string) wire.Envelope {
		return wire.Envelope{Name: name, RID: rid, Data: json.RawMessage(data)}
	}
	long := strings.Repeat("x", MaxText+1)
	for _, tc := range []struct {
		why string
		e   wire.Envelope
	}{
		{"no data", env(NameMsg, 0, "")},
		{"not an object", env(NameMsg, 0, `"hi"`)},
		{"request without rid", env(NameRequest, 0, `{"talk":"a1","nickname":"bob","stamp":"1:8:x"}`)},
		{"request without nickname", env(NameRequest, 5, `{"talk":"a1","stamp":"1:8:x"}`)},
		{"nickname with a control character", env(NameRequest, 5, `{"talk":"a1","nickname":"bo\u001b[2Jb","stamp":"1:8:x"}`)},
		{"nickname of two words", env(NameRequest, 5, `{"talk":"a1","nickname":"bob smith","stamp":"1:8:x"}`)},
		{"nickname too long", env(NameNick, 0, `{"talk":"a1","nickname":"`+strings.Repeat("n", 257)+`"}`)},
		{"empty talk id", env(NameMsg, 0, `{"talk":"","text":"hi"}`)},
		{"talk id with a space", env(NameMsg, 0, `{"talk":"a b","text":"hi"}`)},
		{"talk id too long", env(NameMsg, 0, `{"talk":"`+strings.Repeat("a", MaxTalkIDLen+1)+`","text":"hi"}`)},
		{"talk id not a string", env(NameMsg, 0, `{"talk":7,"text":"hi"}`)},
		{"empty text", env(NameMsg, 0, `{"talk":"a1","text":""}`)},
		{"text too long", env(NameMsg, 0, `{"talk":"a1","text":"`+long+`"}`)},
		{"text with an escape", env(NameMsg, 0, `{"talk":"a1","text":"\u001b]0;owned\u0007"}`)},
		{"text with a C1 control", env(NameMsg, 0, `{"talk":"a1","text":"a\u009bb"}`)},
		{"text not UTF-8", env(NameMsg, 0, "{\"talk\":\"a1\",\"text\":\"\xff\xfe\"}")},
		{"unknown status", env(NameResponse, 0, `{"talk":"a1","status":9}`)},
		{"status as text", env(NameResponse, 0, `{"talk":"a1","status":"1"}`)},
		{"accepted without nickname", env(NameResponse, 0, `{"talk":"a1","status":1}`)},
		{"reason too long", env(NameClose, 0, `{"talk":"a1","reason":"`+strings.Repeat("r", MaxReason+1)+`"}`)},
	} {
		if v, err := parse(tc.e); !errors.Is(err, errInvalid) {
			t.Errorf("%s: parse = %v, %v; want errInvalid", tc.why, v, err)
		}
	}
	for _, e := range []wire.Envelope{
		env(NameRequest, 5, `{"talk":"a1","nickname":"bob_smith","stamp":"1:8:x","extra":1}`),
		env(NameMsg, 0, `{"talk":"a1","text":"ça va?\tüñí 😀"}`),
		env(NameMsg, 0, `{"talk":"a1","text":"","ignore":true}`),
		env(NameResponse, 0, `{"talk":"a1","status":2}`),
		env(NameClose, 0, `{"talk":"a1"}`),
	} {
		if _, err := parse(e); err != nil {
			t.Errorf("parse %s %s: %v", e.Name, e.Data, err)
		}
	}
}

// testNode is a node with a talk service, in process.
type testNode struct {
	*nodetest.Node
	r    *router.Router
	svc  *Service
	ep   *router.Endpoint // the test's own endpoint
	addr identity.Address
	db   *store.DB
}

const testBits = 8

func newTestNode(t *testing.T, timeout time.Duration) *testNode {
	t.Helper()
	var svc *Service
	n, err := nodetest.Start(nodetest.Config{
		Dir: t.TempDir(), Hashcash: wire.HashcashPolicy{Purpose: testBits}, Names: Names,
		Extra: func(n *nodetest.Node) []nodetest.Run {
			svc = New(Config{Router: n.Router, Self: n.ID.Address, Contacts: n.DB.Contacts(),
				Stamps: &stamps.Checker{Spent: n.DB.Stamps()}, Nickname: "n-" + n.ID.Address.String()[3:9], Timeout: timeout, Bits: testBits})
			return []nodetest.Run{svc.Run}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return &testNode{Node: n, r: n.Router, svc: svc, ep: n.Endpoint, addr: n.ID.Address, db: n.DB}
}

func (n *testNode) call(t *testing.T, req any) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.ep.Call(ctx, talkapi.Endpoint, req)
}

// console attaches a console to n until the test ends, and returns its
// events.
func (n *testNode) console(t *testing.T) (<-chan any, func()) {
	t.Helper()
	sub := n.r.Subscribe(talkapi.TopicEvents, 256)
	v, err := n.call(t, talkapi.AttachRequest{})
	if err != nil {
		t.Fatal(err)
	}
	backlog := v.(talkapi.Attached).Backlog
	ch := make(chan any, 256)
	for _, ev := range backlog {
		ch <- ev
	}
	go func() { // ends with the subscription
		for ev := range sub.C() {
			ch <- ev
		}
	}()
	var closed atomic.Bool
	detach := func() {
		if closed.CompareAndSwap(false, true) {
			sub.Unsubscribe()
		}
	}
	t.Cleanup(detach)
	return ch, detach
}

// expect waits for an event of the kind and returns it.
func expect(t *testing.T, events <-chan any, kind string) talkapi.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case v := <-events:
			if ev := v.(talkapi.Event); ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", kind)
		}
	}
}

// connect dials b from a and waits until both talk services know.
func connect(t *testing.T, a, b *testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.ep.Call(ctx, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: b.Target()}); err != nil {
		t.Fatal(err)
	}
}

// raw sends a frame from a to b as a request and returns b's answer.
func raw(t *testing.T, a, b *testNode, name string, data any) (wire.Envelope, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := a.ep.Call(ctx, kernelapi.Endpoint, kernelapi.CallRequest{To: b.addr, Name: name, Data: data})
	e, _ := v.(wire.Envelope)
	return e, err
}

func mint(t *testing.T, resource string, bits int) string {
	t.Helper()
	st, err := hashcash.Mint(context.Background(), resource, bits)
	if err != nil {
		t.Fatal(err)
	}
	return st.String()
}

func TestPeerInputRefused(t *testing.T) {
	a, b := newTestNode(t, time.Minute), newTestNode(t, time.Minute)
	connect(t, a, b)
	wantCode := func(what string, code wire.Code, e wire.Envelope, err error) {
		t.Helper()
		if got := wire.CodeOf(err); got != code {
			t.Errorf("%s: answer %s, %v; want error %d", what, e.Name, err, code)
		}
	}

	// Talks the receiver does not know, and frames that do not fit.
	e, err := raw(t, a, b, NameMsg, Msg{Talk: "nosuchtalk", Text: "hi"})
	wantCode("talk_msg on an unknown talk", wire.CodeInvalidData, e, err)
	e, err = raw(t, a, b, NameResponse, Response{Talk: "nosuchtalk", Status: talkapi.StatusAccepted, Nickname: "x"})
	wantCode("talk_response to no request", wire.CodeInvalidData, e, err)
	e, err = raw(t, a, b, NameClose, Close{Talk: "nosuchtalk"})
	wantCode("talk_close of an unknown talk", wire.CodeInvalidData, e, err)
	e, err = raw(t, a, b, NameNick, NickChange{Talk: "nosuchtalk", Nickname: "x"})
	wantCode("nickname change on an unknown talk", wire.CodeInvalidData, e, err)
	e, err = raw(t, a, b, NameMsg, json.RawMessage(`{"talk":"t1","text":"\u001b[2J"}`))
	wantCode("talk_msg with an escape sequence", wire.CodeInvalidData, e, err)

	// Stamps: missing work, another resource, a replay.
	req := Request{Talk: "t1", Nickname: "mallory", Stamp: mint(t, Resource(b.addr, a.addr, "t1"), 1)}
	e, err = raw(t, a, b, NameRequest, req)
	wantCode("talk_request with too few bits", wire.CodeHashcash, e, err)
	req.Stamp = mint(t, Resource(a.addr, b.addr, "t1"), testBits)
	e, err = raw(t, a, b, NameRequest, req)
	wantCode("talk_request paid for another callee", wire.CodeHashcash, e, err)

	// No stamp at all: 4000 too, as for node_find.
	e, err = raw(t, a, b, NameRequest, json.RawMessage(`{"talk":"t1","nickname":"mallory"}`))
	wantCode("talk_request without a stamp", wire.CodeHashcash, e, err)

	// A good request to a node without a console: status 4.
	req.Stamp = mint(t, Resource(b.addr, a.addr, "t1"), testBits)
	e, err = raw(t, a, b, NameRequest, req)
	var resp Response
	if err != nil || e.Decode(&resp) != nil || resp.Status != talkapi.StatusNoUI || resp.Talk != "t1" {
		t.Fatalf("talk_request without a console: %s %s, %v; want status 4", e.Name, e.Data, err)
	}
	e, err = raw(t, a, b, NameRequest, req)
	wantCode("replayed stamp", wire.CodeHashcash, e, err)

	// A console attached: the request rings, and a second with the same
	// id is refused.
	events, _ := b.console(t)
	req = Request{Talk: "t2", Nickname: "mallory", Stamp: mint(t, Resource(b.addr, a.addr, "t2"), testBits)}
	e, err = raw(t, a, b, NameRequest, req)
	if err != nil || e.Decode(&resp) != nil || resp.Status != talkapi.StatusWaiting {
		t.Fatalf("talk_request with a console: %s %s, %v; want status 0", e.Name, e.Data, err)
	}
	ev := expect(t, events, talkapi.KindRequest)
	if ev.Nickname != "mallory" || ev.Peer != a.addr.String() || !ev.FirstTime || ev.PeerFingerprint != a.addr.Fingerprint() {
		t.Fatalf("request event %+v", ev)
	}
	req.Stamp = mint(t, Resource(b.addr, a.addr, "t2"), testBits)
	e, err = raw(t, a, b, NameRequest, req)
	wantCode("second request with the same talk id", wire.CodeInvalidData, e, err)
	// Not open yet: lines are refused.
	e, err = raw(t, a, b, NameMsg, Msg{Talk: "t2", Text: "let me in"})
	wantCode("talk_msg before the talk is accepted", wire.CodeInvalidData, e, err)

	// The user's side: bad lines, unknown talks.
	if _, err := b.call(t, talkapi.AcceptRequest{Talk: 99}); !errors.Is(err, talkapi.ErrNoTalk) {
		t.Errorf("accept of no request: %v", err)
	}
	if _, err := b.call(t, talkapi.SendRequest{Talk: ev.Talk, Text: "hi"}); !errors.Is(err, talkapi.ErrNoTalk) {
		t.Errorf("line on a talk not open: %v", err)
	}
	if _, err := b.call(t, talkapi.NickRequest{Nickname: " padded"}); !errors.Is(err, talkapi.ErrBadInput) {
		t.Errorf("bad nickname: %v", err)
	}
	if _, err := b.call(t, talkapi.StartRequest{Peer: b.addr}); !errors.Is(err, talkapi.ErrBadInput) {
		t.Errorf("talk to self: %v", err)
	}
}

func TestTalkBetweenServices(t *testing.T) {
	a, b := newTestNode(t, time.Minute), newTestNode(t, time.Second)
	connect(t, a, b)
	aEvents, _ := a.console(t)
	bEvents, detachB := b.console(t)

	// Accepted: lines flow both ways, both address books learn the peer.
	v, err := a.call(t, talkapi.StartRequest{Peer: b.addr})
	if err != nil {
		t.Fatal(err)
	}
	aTalk := v.(talkapi.TalkInfo).Talk
	expect(t, aEvents, talkapi.KindRinging)
	req := expect(t, bEvents, talkapi.KindRequest)
	if _, err := b.call(t, talkapi.AcceptRequest{Talk: req.Talk}); err != nil {
		t.Fatal(err)
	}
	expect(t, bEvents, talkapi.KindOpen)
	if ev := expect(t, aEvents, talkapi.KindOpen); ev.Talk != aTalk || !ev.Outgoing || ev.Nickname != b.svc.cfg.Nickname {
		t.Fatalf("open event at the caller: %+v", ev)
	}
	if _, err := a.call(t, talkapi.SendRequest{Talk: aTalk, Text: "hello ☺"}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, aEvents, talkapi.KindMsg); !ev.Mine {
		t.Fatalf("caller's own line: %+v", ev)
	}
	if ev := expect(t, bEvents, talkapi.KindMsg); ev.Text != "hello ☺" || ev.Mine || ev.Nickname != a.svc.cfg.Nickname {
		t.Fatalf("line at the callee: %+v", ev)
	}
	if _, err := b.call(t, talkapi.SendRequest{Talk: req.Talk, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	// While they talk, each kernel keeps the session for the talk
	// service: it is never closed to make room for another peer.
	waitPinned(t, a, b.addr, true)
	waitPinned(t, b, a.addr, true)
	if ev := expect(t, aEvents, talkapi.KindMsg); ev.Text != "hi" {
		t.Fatalf("line at the caller: %+v", ev)
	}
	for _, n := range []*testNode{a, b} {
		other := a.addr
		if n == a {
			other = b.addr
		}
		if _, err := n.db.Contacts().ByAddress(other.String()); err != nil {
			t.Errorf("address book after an accepted talk: %v", err)
		}
	}
	v, err = a.call(t, talkapi.StatusRequest{})
	if err != nil || v.(talkapi.Status).Letters[b.addr.String()] != "T" {
		t.Fatalf("status while talking: %v, %v", v, err)
	}

	// Lines received while no console is attached wait for the next.
	detachB()
	if _, err := a.call(t, talkapi.SendRequest{Talk: aTalk, Text: "are you there?"}); err != nil {
		t.Fatal(err)
	}
	expect(t, aEvents, talkapi.KindMsg)
	if _, err := a.call(t, talkapi.NickRequest{Nickname: "alice"}); err != nil {
		t.Fatal(err)
	}
	expect(t, aEvents, talkapi.KindNick)
	// The nickname change comes after the line on the same session: once
	// the status shows it, both wait in the backlog.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := b.call(t, talkapi.ListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if l := v.([]talkapi.TalkInfo); len(l) == 1 && l[0].Nickname == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nickname change not received")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bEvents, _ = b.console(t)
	if ev := expect(t, bEvents, talkapi.KindMsg); ev.Text != "are you there?" {
		t.Fatalf("backlog: %+v", ev)
	}
	if ev := expect(t, bEvents, talkapi.KindNick); ev.Nickname != "alice" || ev.OldNickname != a.svc.cfg.Nickname {
		t.Fatalf("backlog: %+v", ev)
	}

	// Closed by the caller.
	if _, err := a.call(t, talkapi.CloseRequest{Talk: aTalk}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, bEvents, talkapi.KindClosed); !ev.ByPeer {
		t.Fatalf("close at the callee: %+v", ev)
	}
	waitPinned(t, a, b.addr, false)
	waitPinned(t, b, a.addr, false)

	// Declined.
	if _, err := a.call(t, talkapi.StartRequest{Peer: b.addr}); err != nil {
		t.Fatal(err)
	}
	req = expect(t, bEvents, talkapi.KindRequest)
	if req.FirstTime || req.Contact == "" {
		t.Fatalf("second request from a known peer: %+v", req)
	}
	if _, err := b.call(t, talkapi.DeclineRequest{Talk: req.Talk}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, aEvents, talkapi.KindResponse); ev.Status != talkapi.StatusDeclined {
		t.Fatalf("decline at the caller: %+v", ev)
	}

	// Unanswered: b's request times out on both sides.
	if _, err := a.call(t, talkapi.StartRequest{Peer: b.addr}); err != nil {
		t.Fatal(err)
	}
	req = expect(t, bEvents, talkapi.KindRequest)
	if ev := expect(t, bEvents, talkapi.KindRequestClosed); ev.Talk != req.Talk || ev.Status != talkapi.StatusTimedOut {
		t.Fatalf("timeout at the callee: %+v", ev)
	}
	if ev := expect(t, aEvents, talkapi.KindResponse); ev.Status != talkapi.StatusTimedOut {
		t.Fatalf("timeout at the caller: %+v", ev)
	}
	if _, err := b.call(t, talkapi.AcceptRequest{Talk: req.Talk}); !errors.Is(err, talkapi.ErrNoTalk) {
		t.Fatalf("accept after the timeout: %v", err)
	}
}

// serveControl serves n's control socket with the consoles' functions
// until the test ends, and returns its path.
func (n *testNode) serveControl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	srv := &control.Server{Path: path, Router: n.r, Logger: slog.New(slog.DiscardHandler),
		Handlers: control.TalkHandlers(n.r, n.db.Contacts())}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("control socket: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control socket: %v", err)
		}
	})
	return path
}

// socketConsole is a console attached over a control socket.
type socketConsole struct {
	nc net.Conn
	br *bufio.Reader
}

// attachSocket attaches a console over the control socket at path and
// returns it with the events of the "attached" frame's backlog to come.
func attachSocket(t *testing.T, path string) *socketConsole {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &socketConsole{nc: nc, br: bufio.NewReader(nc)}
	if _, err := io.WriteString(nc, `{"name":"console.attach","rid":1}`+"\n"); err != nil {
		t.Fatal(err)
	}
	c.expect(t, talkapi.KindAttached)
	return c
}

// expect reads events until one of the kind, and returns it.
func (c *socketConsole) expect(t *testing.T, kind string) talkapi.Event {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := control.ReadLine(c.br, control.MaxFrame)
		if err != nil {
			t.Fatalf("console: no %s event: %v", kind, err)
		}
		var f control.Frame
		if err := json.Unmarshal(line, &f); err != nil {
			t.Fatalf("console: frame %q: %v", line, err)
		}
		if f.Name != talkapi.EventFrame {
			t.Fatalf("console: frame %q, want events", line)
		}
		var ev talkapi.Event
		if err := json.Unmarshal(f.Data, &ev); err != nil {
			t.Fatalf("console: event %q: %v", f.Data, err)
		}
		if ev.Kind == kind {
			return ev
		}
	}
}

// waitConsoles waits until n counts want consoles attached.
func (n *testNode) waitConsoles(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := n.call(t, talkapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := v.(talkapi.Status).Consoles
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consoles attached, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A console that leaves is detached at once, not when the next event
// finds its socket closed: that event waits for the next console, and a
// request meanwhile gets "no user interface".
func TestConsoleLeavesOverSocket(t *testing.T) {
	a, b := newTestNode(t, time.Minute), newTestNode(t, time.Minute)
	connect(t, a, b)
	aEvents, _ := a.console(t)
	path := b.serveControl(t)

	cb := attachSocket(t, path)
	b.waitConsoles(t, 1)
	v, err := a.call(t, talkapi.StartRequest{Peer: b.addr})
	if err != nil {
		t.Fatal(err)
	}
	aTalk := v.(talkapi.TalkInfo).Talk
	req := cb.expect(t, talkapi.KindRequest)
	if _, err := b.call(t, talkapi.AcceptRequest{Talk: req.Talk}); err != nil {
		t.Fatal(err)
	}
	cb.expect(t, talkapi.KindOpen)
	expect(t, aEvents, talkapi.KindOpen)

	// The console leaves; a line comes meanwhile; the next console
	// gets it.
	cb.nc.Close()
	b.waitConsoles(t, 0)
	if _, err := a.call(t, talkapi.SendRequest{Talk: aTalk, Text: "still there?"}); err != nil {
		t.Fatal(err)
	}
	expect(t, aEvents, talkapi.KindMsg)
	cb = attachSocket(t, path)
	if ev := cb.expect(t, talkapi.KindMsg); ev.Text != "still there?" {
		t.Fatalf("line kept for the next console: %+v", ev)
	}

	// It leaves too: a request gets "no user interface".
	cb.nc.Close()
	b.waitConsoles(t, 0)
	if _, err := a.call(t, talkapi.StartRequest{Peer: b.addr}); err != nil {
		t.Fatal(err)
	}
	if ev := expect(t, aEvents, talkapi.KindResponse); ev.Status != talkapi.StatusNoUI {
		t.Fatalf("request after the console left: %+v, want status %d", ev, talkapi.StatusNoUI)
	}
}

// waitPinned waits until n's kernel does, or does not, keep the sessions
// with peer for a subsystem.
func waitPinned(t *testing.T, n *testNode, peer identity.Address, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Kernel.Pinned(peer) != want {
		if time.Now().After(deadline) {
			t.Fatalf("session with %s pinned = %v, want %v", peer, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
