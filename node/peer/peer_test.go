package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

func TestHandshakeAndPing(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			a, b := newNode(t), newNode(t)
			srv := serve(t, a, addr, a.config())
			want := a.id.Address
			c, err := dial(t, b, srv.addr, &want, b.config(func(c *Config) { c.ListenPort = 0 }))
			if err != nil {
				t.Fatal(err)
			}
			run(t, c)
			r := srv.next(t)
			if r.err != nil {
				t.Fatal(r.err)
			}
			s := r.s

			// What each side learnt of the other.
			ci, si := c.Info(), s.Info()
			if c.Peer() != a.id.Address || s.Peer() != b.id.Address {
				t.Fatalf("peers: client sees %v, server sees %v", c.Peer(), s.Peer())
			}
			if ci.Hello.Software != "phpchat-node/test" || ci.Hello.Protocol != wire.ProtocolVersion {
				t.Errorf("client got hello %+v", ci.Hello)
			}
			if ci.ID.Port != 25000 || !ci.ID.Has("relay") || ci.ID.Hashcash["msg"] != 15 {
				t.Errorf("client got id %+v", ci.ID)
			}
			if si.ID.Port != 0 || si.ID.Address != b.id.Address {
				t.Errorf("server got id %+v", si.ID)
			}
			// Each side tells the other where it sees it from.
			if ci.Hello.ObservedAddr != si.RemoteAddr.String() {
				t.Errorf("server observed the client at %q, client is %v", ci.Hello.ObservedAddr, si.RemoteAddr)
			}
			if si.Hello.ObservedAddr != srv.addr {
				t.Errorf("client observed the server at %q, server is %v", si.Hello.ObservedAddr, srv.addr)
			}

			ping(t, c)
			ping(t, s)
			for name, st := range map[string]Stats{"client": c.Stats(), "server": s.Stats()} {
				if st.BytesIn == 0 || st.BytesOut == 0 || st.FramesIn == 0 || st.FramesOut == 0 {
					t.Errorf("%s stats %+v", name, st)
				}
				if st.FirstSeen.IsZero() || st.LastSeen.Before(st.FirstSeen) || st.Pending != 0 {
					t.Errorf("%s stats %+v", name, st)
				}
			}

			c.Close("bye")
			if err := waitDone(t, s); !errors.Is(err, ErrPeerQuit) || !strings.Contains(err.Error(), "bye") {
				t.Errorf("server: Err = %v, want ErrPeerQuit with the reason", err)
			}
			if err := waitDone(t, c); !errors.Is(err, ErrClosed) {
				t.Errorf("client: Err = %v, want ErrClosed", err)
			}
			if err := c.Send(context.Background(), "x", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after close: %v", err)
			}
		})
	}
}

func TestWrongExpectedAddressRefused(t *testing.T) {
	a, b, other := newNode(t), newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	want := other.id.Address
	_, err := dial(t, b, srv.addr, &want, b.config())
	if !errors.Is(err, transport.ErrAddressMismatch) {
		t.Fatalf("err = %v, want ErrAddressMismatch", err)
	}
	if r := srv.next(t); r.err == nil {
		t.Fatal("server made a session the client refused")
	}
}

func TestOwnAddressRefused(t *testing.T) {
	a := newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	twin := &node{id: a.id}
	twin.ep, _ = transport.New(a.id)
	_, err := dial(t, twin, srv.addr, nil, twin.config())
	if wire.CodeOf(err) != wire.CodeOwnAddress {
		t.Errorf("client: err = %v, want code 1020", err)
	}
	if r := srv.next(t); wire.CodeOf(r.err) != wire.CodeOwnAddress {
		t.Errorf("server: err = %v, want code 1020", r.err)
	}
}

// Clients that break the handshake are cut off with the right error code,
// while another session on the same listener keeps working.
func TestHandshakeViolations(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config(func(c *Config) {
		c.HandshakeTimeout = 500 * time.Millisecond
		c.MaxFrameSize = 64 << 10
	}))
	good, _ := connect(t, b, srv, b.config())

	other := newNode(t)
	for _, tc := range []struct {
		name string
		code wire.Code
		do   func(rc *raw)
		rid  uint64 // of the error frame: the offending frame's
	}{
		{"garbage", wire.CodeNotJSON, func(rc *raw) { rc.write("GET / HTTP/1.1\r\n") }, 0},
		{"not an envelope", wire.CodeBadEnvelope, func(rc *raw) { rc.write(`{"name":5,"rid":3}` + "\n") }, 3},
		{"oversize", wire.CodeFrameTooLarge, func(rc *raw) {
			rc.write(`{"name":"hello","data":"` + strings.Repeat("x", 100<<10) + "\"}\n")
		}, 0},
		{"oversize without end", wire.CodeFrameTooLarge, func(rc *raw) { rc.write(strings.Repeat("x", 100<<10)) }, 0},
		{"frame before id", wire.CodeIdentifyFirst, func(rc *raw) {
			rc.hello()
			rc.send("node_find", 1, map[string]string{"target": "x"})
		}, 1},
		{"ping before id", wire.CodeIdentifyFirst, func(rc *raw) { rc.send(wire.NamePing, 0, nil) }, 0},
		{"ping with rid before id", wire.CodeIdentifyFirst, func(rc *raw) { rc.send(wire.NamePing, 8, nil) }, 8},
		{"id before hello", wire.CodeInvalidData, func(rc *raw) {
			rc.send(wire.NameID, 5, wire.ID{Address: rc.n.id.Address})
		}, 5},
		{"bad hello", wire.CodeInvalidData, func(rc *raw) { rc.send(wire.NameHello, 0, map[string]any{"protocol": "one"}) }, 0},
		{"protocol version", wire.CodeProtocolVersion, func(rc *raw) {
			rc.send(wire.NameHello, 0, wire.Hello{Protocol: 2})
		}, 0},
		{"id of another key", wire.CodeAddressMismatch, func(rc *raw) {
			rc.hello()
			rc.send(wire.NameID, 0, wire.ID{Address: other.id.Address})
		}, 0},
		{"bad id", wire.CodeInvalidData, func(rc *raw) {
			rc.hello()
			rc.send(wire.NameID, 0, map[string]any{"address": rc.n.id.Address, "port": 1 << 20})
		}, 0},
		{"slow client", wire.CodeTimeout, func(rc *raw) {}, 0},
		{"hello only", wire.CodeTimeout, func(rc *raw) { rc.hello() }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, newNode(t), srv.addr)
			tc.do(rc)
			if e, _ := rc.expectErrorFrame(tc.code); e.RID != tc.rid {
				t.Errorf("error frame has rid %d, want %d (the offending frame's)", e.RID, tc.rid)
			}
			rc.expectQuit()
			r := srv.next(t)
			if wire.CodeOf(r.err) != tc.code {
				t.Errorf("server: Handshake err = %v, want code %v", r.err, tc.code)
			}
			var pe *wire.ProtocolError
			if errors.As(r.err, &pe) && pe.Remote {
				t.Errorf("server: error %v marked remote", r.err)
			}
			ping(t, good)
		})
	}
}

// A repeated hello or id during the handshake is answered with 1010, and
// the handshake goes on.
func TestHandshakeRepeatedID(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	rc := dialRaw(t, b, srv.addr)
	rc.hello()
	rc.hello()
	rc.send(wire.NameID, 0, wire.ID{Address: b.id.Address})
	rc.send(wire.NameID, 0, wire.ID{Address: b.id.Address})
	var errs []wire.Error
	for gotOK := false; !gotOK || len(errs) < 2; {
		e, err := rc.next()
		if err != nil {
			t.Fatal(err)
		}
		switch e.Name {
		case wire.NameID:
			rc.send(wire.NameIDOK, 0, nil)
		case wire.NameIDOK:
			gotOK = true
		case wire.NameError:
			var we wire.Error
			e.Decode(&we)
			errs = append(errs, we)
		}
	}
	for _, we := range errs {
		if we.Code != wire.CodeAlreadyIdentified {
			t.Errorf("error %+v, want 1010", we)
		}
	}
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	rc.send(wire.NamePing, rc.rid(1), nil)
	if e, err := rc.next(); err != nil || e.Name != wire.NamePong || e.RID != rc.rid(1) {
		t.Fatalf("after handshake: %+v, %v; want pong", e, err)
	}
}

// After the handshake a malformed frame is answered and the session goes
// on; an oversize frame ends it.
func TestSessionViolations(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config(func(c *Config) { c.MaxFrameSize = 64 << 10 }))
	rc := dialRaw(t, b, srv.addr)
	rc.handshake()
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}

	pingPong := func(n uint64) {
		t.Helper()
		rc.send(wire.NamePing, rc.rid(n), nil)
		e, err := rc.next()
		if err != nil || e.Name != wire.NamePong || e.RID != rc.rid(n) {
			t.Fatalf("ping %d: got %+v, %v", n, e, err)
		}
	}
	pingPong(1)

	rc.write("not json\n")
	rc.expectError(wire.CodeNotJSON)
	pingPong(2)

	rc.write(`{"name":"x","rid":-1}` + "\n")
	rc.expectError(wire.CodeBadEnvelope)
	pingPong(3)

	rc.send("blaaaaa", rc.rid(4), nil)
	if we := rc.expectError(wire.CodeUnknownCommand); we.Name != "blaaaaa" {
		t.Errorf("unknown command error names %q", we.Name)
	}
	rc.send(wire.NameID, 0, wire.ID{Address: b.id.Address})
	rc.expectError(wire.CodeAlreadyIdentified)
	rc.send(wire.NameHello, 0, wire.Hello{Protocol: 1})
	rc.expectError(wire.CodeAlreadyIdentified)
	pingPong(5)

	rc.write(`{"name":"test","data":"` + strings.Repeat("x", 100<<10) + "\"}\n")
	rc.expectError(wire.CodeFrameTooLarge)
	rc.expectQuit()
	if err := waitDone(t, r.s); wire.CodeOf(err) != wire.CodeFrameTooLarge || !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("server session: Err = %v, want 9040", err)
	}
}

// A peer that answers nothing is pinged, then dropped with 9090.
func TestIdleTimeout(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config(func(c *Config) {
		c.PingInterval = 50 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
	}))
	rc := dialRaw(t, b, srv.addr)
	rc.handshake()
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if e, err := rc.next(); err != nil || e.Name != wire.NamePing {
		t.Fatalf("want a ping, got %+v, %v", e, err)
	}
	rc.expectError(wire.CodeTimeout) // skips further pings
	rc.expectQuit()
	if err := waitDone(t, r.s); wire.CodeOf(err) != wire.CodeTimeout {
		t.Fatalf("server session: Err = %v, want 9090", err)
	}
}

// Two sessions with nothing to say keep each other alive with pings.
func TestKeepalive(t *testing.T) {
	a, b := newNode(t), newNode(t)
	short := func(c *Config) {
		c.PingInterval = 20 * time.Millisecond
		c.IdleTimeout = 200 * time.Millisecond
	}
	srv := serve(t, a, "127.0.0.1:0", a.config(short))
	c, s := connect(t, b, srv, b.config(short))
	select {
	case <-c.Done():
		t.Fatalf("client session ended: %v", c.Err())
	case <-s.Done():
		t.Fatalf("server session ended: %v", s.Err())
	case <-time.After(600 * time.Millisecond): // three idle timeouts
	}
	if c.Stats().FramesIn < 3 || s.Stats().FramesIn < 3 {
		t.Fatalf("too few keepalive frames: client %+v, server %+v", c.Stats(), s.Stats())
	}
}

func TestCall(t *testing.T) {
	a, b := newNode(t), newNode(t)
	var gotError atomic.Value
	handler := func(s *Session, e wire.Envelope) {
		ctx := context.Background()
		switch e.Name {
		case "echo":
			s.Reply(ctx, e, "echo_reply", e.Data)
		case "stamp":
			s.SendError(ctx, e, wire.CodeHashcash, "")
		case "slow":
		case wire.NameError:
			gotError.Store(e)
		default:
			s.SendError(ctx, e, wire.CodeUnknownCommand, "")
		}
	}
	srv := serve(t, a, "127.0.0.1:0", a.config(func(c *Config) { c.Handler = handler }))
	c, s := connect(t, b, srv, b.config(func(c *Config) { c.MaxPendingCalls = 2 }))
	ctx := context.Background()

	e, err := c.Call(ctx, "echo", map[string]int{"n": 42})
	if err != nil || e.Name != "echo_reply" || string(e.Data) != `{"n":42}` {
		t.Fatalf("echo: %+v, %v", e, err)
	}
	_, err = c.Call(ctx, "stamp", nil)
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) || pe.Code != wire.CodeHashcash || !pe.Remote || pe.Name != "stamp" {
		t.Fatalf("stamp: err = %v, want remote 4000 on stamp", err)
	}
	_, err = c.Call(ctx, "nonsense", nil)
	if wire.CodeOf(err) != wire.CodeUnknownCommand {
		t.Fatalf("nonsense: err = %v, want 9020", err)
	}

	// Calls time out, and are bounded in number.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Call(short, "slow", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: err = %v, want deadline exceeded", err)
	}
	long, cancelLong := context.WithCancel(ctx)
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := c.Call(long, "slow", nil); errs <- err }()
	}
	for c.Stats().Pending < 2 {
		select {
		case err := <-errs:
			t.Fatalf("slow call ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := c.Call(ctx, "echo", nil); !errors.Is(err, ErrTooManyCalls) {
		t.Fatalf("third call: err = %v, want ErrTooManyCalls", err)
	}
	cancelLong()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: err = %v", err)
		}
	}
	if n := c.Stats().Pending; n != 0 {
		t.Fatalf("%d calls still pending", n)
	}

	// An error frame that answers no call goes to the handler.
	if err := c.SendError(ctx, wire.Envelope{Name: "whatever"}, wire.CodeInvalidData, "test"); err != nil {
		t.Fatal(err)
	}
	ping(t, c) // the error frame was read before the ping
	if e, _ := gotError.Load().(wire.Envelope); e.Name != wire.NameError {
		t.Fatalf("handler did not get the error frame")
	}

	// A call waiting when the session closes fails at once.
	go func() { _, err := c.Call(ctx, "slow", nil); errs <- err }()
	for c.Stats().Pending < 1 {
		time.Sleep(time.Millisecond)
	}
	s.Close("going")
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Fatalf("call on closed session: err = %v, want ErrClosed", err)
	}
}

func TestSendQueueBounded(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	// Not running: nothing drains the queue.
	c, err := dial(t, b, srv.addr, nil, b.config(func(c *Config) {
		c.SendQueue = 2
		c.SendQueueBytes = 1000
		c.MaxFrameSize = 10 << 10
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close("done"); waitDone(t, c) }()
	srv.next(t)
	ctx := context.Background()
	big := strings.Repeat("x", 2000)
	if err := c.Send(ctx, "test", big); err != nil {
		t.Fatalf("first frame, over the byte bound, into an empty queue: %v", err)
	}
	if err := c.Send(ctx, "test", nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("over the byte bound: err = %v, want ErrQueueFull", err)
	}
	if err := c.Send(ctx, "test", strings.Repeat("x", 20<<10)); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("oversize send: err = %v, want ErrFrameTooLarge", err)
	}
	c2, err := dial(t, b, srv.addr, nil, b.config(func(c *Config) { c.SendQueue = 2 }))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c2.Close("done"); waitDone(t, c2) }()
	srv.next(t)
	for i := range 3 {
		err := c2.Send(ctx, "test", nil)
		if (i < 2) != (err == nil) || (i == 2 && !errors.Is(err, ErrQueueFull)) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := c2.Send(ctx, "Bad Name", nil); !errors.Is(err, wire.ErrBadEnvelope) {
		t.Fatalf("bad name: %v", err)
	}
}

// Frames queued before Close are sent before quit, even when the session
// never ran; a session closed with an error tells the peer why.
func TestCloseWithErrorBeforeRun(t *testing.T) {
	a, b := newNode(t), newNode(t)
	got := make(chan wire.Envelope, 4)
	srv := serve(t, a, "127.0.0.1:0", a.config(func(c *Config) {
		c.Handler = func(s *Session, e wire.Envelope) { got <- e }
	}))
	// The kernel refusing a duplicate: a session it never runs.
	c, err := dial(t, b, srv.addr, nil, b.config())
	if err != nil {
		t.Fatal(err)
	}
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := c.Send(context.Background(), "note", map[string]string{"last": "words"}); err != nil {
		t.Fatal(err)
	}
	c.CloseWithError(wire.CodeDuplicateSession, "")
	if err := waitDone(t, c); wire.CodeOf(err) != wire.CodeDuplicateSession || !errors.Is(err, ErrClosed) {
		t.Fatalf("closed session: Err = %v", err)
	}
	if err := c.Run(context.Background()); wire.CodeOf(err) != wire.CodeDuplicateSession {
		t.Fatalf("Run after Close = %v", err)
	}
	if err := waitDone(t, r.s); wire.CodeOf(err) != wire.CodeDuplicateSession || !errors.Is(err, ErrPeerQuit) {
		t.Fatalf("peer: Err = %v, want 1050 and ErrPeerQuit", err)
	}
	if e := <-got; e.Name != "note" || string(e.Data) != `{"last":"words"}` {
		t.Fatalf("peer got %+v first, want the note", e)
	}
	if e := <-got; e.Name != wire.NameError {
		t.Fatalf("peer got %+v, want the error frame", e)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	c, err := dial(t, b, srv.addr, nil, b.config())
	if err != nil {
		t.Fatal(err)
	}
	r := srv.next(t)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	ping(t, c)
	if err := c.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Run = %v, want ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
	if err := waitDone(t, r.s); !errors.Is(err, ErrPeerQuit) {
		t.Fatalf("peer: Err = %v, want ErrPeerQuit", err)
	}
}

func TestHandshakeContext(t *testing.T) {
	a, b := newNode(t), newNode(t)
	l, err := a.ep.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		// Completes TLS, then says nothing.
		c, err := l.AcceptTLS()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	conn, err := b.ep.Dial(ctx, l.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Handshake(ctx, conn, b.config())
	if !errors.Is(err, context.DeadlineExceeded) && wire.CodeOf(err) != wire.CodeTimeout {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Handshake took %v", d)
	}
}

func TestConfig(t *testing.T) {
	if _, err := (Config{}).withDefaults(); err == nil {
		t.Error("config without identity accepted")
	}
	id, _ := identity.Generate()
	if _, err := (Config{Identity: id, Capabilities: []string{"No"}}).withDefaults(); err == nil {
		t.Error("invalid capability accepted")
	}
	c, err := (Config{Identity: id}).withDefaults()
	if err != nil || c.HandshakeTimeout != DefaultHandshakeTimeout || c.MaxFrameSize != wire.MaxFrameSize {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if c.IdleTimeout != 120*time.Second || c.PingInterval != 60*time.Second {
		t.Errorf("default keepalive: ping after %v, close after %v; want 1m0s, 2m0s", c.PingInterval, c.IdleTimeout)
	}
	// The ping interval follows the idle timeout unless set.
	c, _ = (Config{Identity: id, IdleTimeout: 10 * time.Second}).withDefaults()
	if c.PingInterval != 5*time.Second {
		t.Errorf("idle timeout 10s: ping after %v, want 5s", c.PingInterval)
	}
}

// A node with no room for a peer tells it why: the peer's handshake ends
// with the error.
func TestRefuse(t *testing.T) {
	a, b := newNode(t), newNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	l, err := a.ep.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	refused := make(chan error, 1)
	go func() {
		c, err := l.AcceptTLS()
		if err != nil {
			refused <- err
			return
		}
		refused <- Refuse(ctx, c, a.config(), wire.CodeTooManyConnections, "full")
	}()
	_, err = dial(t, b, l.Addr().String(), &a.id.Address, b.config())
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) || !pe.Remote || pe.Code != wire.CodeTooManyConnections || pe.Text != "full" {
		t.Fatalf("handshake with a refusing node: %v, want remote error 9100 \"full\"", err)
	}
	if err := <-refused; err != nil {
		t.Fatalf("Refuse: %v", err)
	}
}

func TestProtocolErrorText(t *testing.T) {
	err := &wire.ProtocolError{Code: wire.CodeHashcash, Name: "node_find", Remote: true}
	if got := err.Error(); got != "peer: peer sent error 4000 hashcash verification failed on node_find" {
		t.Errorf("Error() = %q", got)
	}
	err = &wire.ProtocolError{Code: wire.CodeFrameTooLarge, Text: "frame over 10 bytes", Err: wire.ErrFrameTooLarge}
	if got := err.Error(); got != "peer: protocol error 9040 frame too large: frame over 10 bytes" || !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Errorf("Error() = %q", got)
	}
}

// Clients without the protocol's ALPN or without a certificate get no
// session, and the listener's other sessions go on.
func TestTLSRefusals(t *testing.T) {
	a, b := newNode(t), newNode(t)
	srv := serve(t, a, "127.0.0.1:0", a.config())
	good, _ := connect(t, b, srv, b.config())
	for name, mutate := range map[string]func(*tls.Config){
		"no ALPN": func(c *tls.Config) { c.NextProtos = nil },
		"no cert": func(c *tls.Config) { c.GetClientCertificate = nil },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := newNode(t).ep.ClientConfig(nil)
			mutate(cfg)
			d := tls.Dialer{Config: cfg}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", srv.addr)
			if err == nil {
				c.SetReadDeadline(time.Now().Add(testTimeout))
				_, err = c.Read(make([]byte, 1)) // TLS 1.3: the refusal comes as an alert
				c.Close()
			}
			if err == nil {
				t.Fatal("client not refused")
			}
			if r := srv.next(t); r.err == nil {
				t.Fatal("server made a session")
			}
			ping(t, good)
		})
	}
}
