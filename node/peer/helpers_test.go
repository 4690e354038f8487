package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// testTimeout bounds every wait in the tests that is not the subject of a
// test; nothing should come near it.
const testTimeout = 10 * time.Second

type node struct {
	id *identity.Identity
	ep *transport.Endpoint
}

func newNode(t testing.TB) *node {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ep, err := transport.New(id)
	if err != nil {
		t.Fatal(err)
	}
	return &node{id: id, ep: ep}
}

// config returns a configuration for n with the given changes.
func (n *node) config(mod ...func(*Config)) Config {
	c := Config{
		Identity:     n.id,
		Software:     "phpchat-node/test",
		ListenPort:   25000,
		Capabilities: []string{"dht", "relay"},
		Hashcash:     wire.HashcashPolicy{"node_find": 12, "talk_request": 15, "msg": 15},
	}
	for _, m := range mod {
		m(&c)
	}
	return c
}

// server is a listener whose connections become running sessions.
type server struct {
	addr    string
	results chan serverResult
}

type serverResult struct {
	s   *Session
	err error
}

// serve listens on addr with cfg; every handshake's outcome is sent on
// results, and successful sessions run until the test ends.
func serve(t testing.TB, n *node, addr string, cfg Config) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := n.ep.Listen(ctx, addr)
	if err != nil {
		cancel()
		if strings.HasPrefix(addr, "[::1]") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	srv := &server{addr: l.Addr().String(), results: make(chan serverResult, 64)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTLS()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Handshake(ctx, c, cfg)
				select {
				case srv.results <- serverResult{s, err}:
				default:
					t.Error("server results not read")
				}
				if err == nil {
					s.Run(ctx)
				}
			}()
		}
	}()
	return srv
}

// next returns the outcome of the next handshake on the server.
func (srv *server) next(t testing.TB) serverResult {
	t.Helper()
	select {
	case r := <-srv.results:
		return r
	case <-time.After(testTimeout):
		t.Fatal("no handshake on the server")
		return serverResult{}
	}
}

// dial connects n to srv and runs the handshake, without Run.
func dial(t testing.TB, n *node, addr string, expect *identity.Address, cfg Config) (*Session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := n.ep.Dial(ctx, addr, expect)
	if err != nil {
		return nil, err
	}
	return Handshake(ctx, c, cfg)
}

// run runs s until the test ends, and checks that it stops.
func run(t testing.TB, s *Session) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.Done():
		case <-time.After(testTimeout):
			t.Error("session did not stop")
		}
	})
}

// connect returns a running client session to srv and the server's side.
func connect(t testing.TB, cli *node, srv *server, ccfg Config) (client, server *Session) {
	t.Helper()
	c, err := dial(t, cli, srv.addr, nil, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	r := srv.next(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	return c, r.s
}

// raw is a hand-driven client: valid TLS, frames written by the test.
type raw struct {
	t    testing.TB
	n    *node
	c    *tls.Conn
	r    *wire.Reader
	peer identity.Address
}

func dialRaw(t testing.TB, n *node, addr string) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := n.ep.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, _ := transport.PeerAddress(c)
	return &raw{t: t, n: n, c: c, r: wire.NewReader(c, 0), peer: peer}
}

func (rc *raw) write(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("raw write: %v", err)
	}
}

func (rc *raw) send(name string, rid uint64, data any) {
	rc.t.Helper()
	b, err := wire.AppendFrame(nil, name, rid, data)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.write(string(b))
}

// next reads the next envelope from the server.
func (rc *raw) next() (wire.Envelope, error) {
	rc.c.SetReadDeadline(time.Now().Add(testTimeout))
	return rc.r.ReadEnvelope()
}

// hello sends a valid hello.
func (rc *raw) hello() {
	rc.send(wire.NameHello, 0, wire.Hello{Protocol: wire.ProtocolVersion, Software: "raw/1"})
}

// handshake completes the handshake as a well-behaved peer would.
func (rc *raw) handshake() {
	rc.t.Helper()
	rc.hello()
	rc.send(wire.NameID, 0, wire.ID{Address: rc.n.id.Address, Port: 0})
	var gotID, gotOK bool
	for !gotID || !gotOK {
		e, err := rc.next()
		if err != nil {
			rc.t.Fatalf("raw handshake: %v", err)
		}
		switch e.Name {
		case wire.NameID:
			gotID = true
			rc.send(wire.NameIDOK, 0, nil)
		case wire.NameIDOK:
			gotOK = true
		case wire.NameHello:
		default:
			rc.t.Fatalf("raw handshake: unexpected %s %s", e.Name, e.Data)
		}
	}
}

// rid returns the n-th request id of the raw client's parity.
func (rc *raw) rid(n uint64) uint64 {
	if bytes.Compare(rc.n.id.Address[:], rc.peer[:]) < 0 {
		return 2*n - 1
	}
	return 2 * n
}

// expectError reads past the handshake frames to an error frame and
// checks its code; it returns the frame's data.
func (rc *raw) expectError(code wire.Code) wire.Error {
	rc.t.Helper()
	_, we := rc.expectErrorFrame(code)
	return we
}

// expectErrorFrame is expectError, returning the frame too.
func (rc *raw) expectErrorFrame(code wire.Code) (wire.Envelope, wire.Error) {
	rc.t.Helper()
	for {
		e, err := rc.next()
		if err != nil {
			rc.t.Fatalf("waiting for error %v: %v", code, err)
		}
		switch e.Name {
		case wire.NameHello, wire.NameID, wire.NameIDOK, wire.NamePing:
			continue
		case wire.NameError:
			var we wire.Error
			if err := e.Decode(&we); err != nil {
				rc.t.Fatal(err)
			}
			if we.Code != code {
				rc.t.Fatalf("error frame %+v, want code %v", we, code)
			}
			return e, we
		default:
			rc.t.Fatalf("waiting for error %v: got %s %s", code, e.Name, e.Data)
		}
	}
}

// expectQuit reads quit and then the end of the stream.
func (rc *raw) expectQuit() {
	rc.t.Helper()
	e, err := rc.next()
	if err != nil || e.Name != wire.NameQuit {
		rc.t.Fatalf("want quit, got %+v, %v", e, err)
	}
	if e, err := rc.next(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		rc.t.Fatalf("after quit: %+v, %v; want end of stream", e, err)
	}
	rc.c.Close() // as a peer does after quit; the server waits for it
}

// ping calls ping on s and fails the test if no pong comes back.
func ping(t testing.TB, s *Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	e, err := s.Call(ctx, wire.NamePing, nil)
	if err != nil || e.Name != wire.NamePong {
		t.Fatalf("ping: %+v, %v", e, err)
	}
}

// waitDone waits for s to stop and returns its error.
func waitDone(t testing.TB, s *Session) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(testTimeout):
		t.Fatal("session did not stop")
		return nil
	}
}
