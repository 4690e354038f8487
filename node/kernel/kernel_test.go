package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

type testKernel struct {
	*Kernel
	r    *router.Router
	up   *router.Subscription
	down *router.Subscription
}

func newKernel(t *testing.T, mod func(*Config)) *testKernel {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r := router.New()
	cfg := Config{
		Identity: id, Router: r,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Listen:     "127.0.0.1:0",
		MaxInbound: 16, MaxOutbound: 16, MaxPerIP: 16,
		MaxFrame:         1 << 20,
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      time.Minute,
	}
	if mod != nil {
		mod(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tk := &testKernel{Kernel: k, r: r, up: r.Subscribe(kernelapi.TopicPeerUp, 64), down: r.Subscribe(kernelapi.TopicPeerDown, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("kernel: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("kernel: %v", err)
		}
	})
	return tk
}

func (k *testKernel) target() string {
	return fmt.Sprintf("%s@%s", k.Address(), k.ListenAddr())
}

// waitUp waits for a peer.up event naming addr.
func (k *testKernel) waitUp(t *testing.T, addr identity.Address) kernelapi.PeerEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-k.up.C():
			if pe := ev.(kernelapi.PeerEvent); pe.Address == addr {
				return pe
			}
		case <-timeout:
			t.Fatalf("no session with %s", addr)
		}
	}
}

// waitUpAll waits for k's sessions with every one of addrs, in any order.
func (k *testKernel) waitUpAll(t *testing.T, addrs ...identity.Address) {
	t.Helper()
	want := make(map[identity.Address]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	timeout := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case ev := <-k.up.C():
			delete(want, ev.(kernelapi.PeerEvent).Address)
		case <-timeout:
			t.Fatalf("no session with %d of %d peers", len(want), len(addrs))
		}
	}
}

func TestTwoNodesConnect(t *testing.T) {
	a := newKernel(t, nil)
	b := newKernel(t, nil)
	s, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	if s.Peer() != b.Address() {
		t.Fatalf("session with %v, want %v", s.Peer(), b.Address())
	}
	ev := b.waitUp(t, a.Address())
	if !ev.Inbound || ev.ID.Port != a.ListenAddr().Port {
		t.Fatalf("b saw %+v; want inbound, a's listen port %d", ev, a.ListenAddr().Port)
	}
	pa, pb := a.Peers(), b.Peers()
	if pa.Outbound != 1 || pa.Inbound != 0 || pb.Inbound != 1 || len(pb.Connections) != 1 {
		t.Fatalf("peers: a %+v, b %+v", pa, pb)
	}
	if pa.TrafficOut == 0 || pb.TrafficIn == 0 {
		t.Fatal("traffic not counted")
	}
	// Connecting again returns the same session.
	again, err := a.Connect(context.Background(), b.target())
	if err != nil || again != s {
		t.Fatalf("second Connect: %v (same session: %v)", err, again == s)
	}
	// Pings go through the session.
	if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestThreeNodesOverRouter(t *testing.T) {
	a, b, c := newKernel(t, nil), newKernel(t, nil), newKernel(t, nil)
	ep, _ := a.r.Register("console", 1)
	for _, to := range []*testKernel{b, c} {
		v, err := ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.ConnectRequest{Target: to.ListenAddr().String()})
		if err != nil {
			t.Fatal(err)
		}
		if v.(kernelapi.PeerInfo).Address != to.Address() {
			t.Fatalf("connected to %v, want %v", v, to.Address())
		}
	}
	if _, err := b.Connect(context.Background(), c.target()); err != nil {
		t.Fatal(err)
	}
	// c registers each inbound session on its own: wait for both.
	c.waitUpAll(t, a.Address(), b.Address())
	v, err := ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.PeersRequest{})
	if err != nil || v.(kernelapi.Peers).Outbound != 2 {
		t.Fatalf("a's peers: %+v, %v", v, err)
	}
	if p := c.Peers(); p.Inbound != 2 {
		t.Fatalf("c's peers: %+v", p)
	}
	// Frames to peers go through the router too.
	v, err = ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.CallRequest{To: b.Address(), Name: wire.NamePing})
	if err != nil || v.(wire.Envelope).Name != wire.NamePong {
		t.Fatalf("ping b through the router: %v, %v", v, err)
	}
	stranger, _ := identity.Generate()
	if _, err := ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.SendRequest{To: stranger.Address, Name: "talk_msg"}); !errors.Is(err, kernelapi.ErrNoSession) {
		t.Fatalf("send to a stranger: %v, want kernelapi.ErrNoSession", err)
	}
}

func TestWrongExpectedAddressRefused(t *testing.T) {
	a, b := newKernel(t, nil), newKernel(t, nil)
	other, _ := identity.Generate()
	_, err := a.Connect(context.Background(), fmt.Sprintf("%s@%s", other.Address, b.ListenAddr()))
	if !errors.Is(err, transport.ErrAddressMismatch) {
		t.Fatalf("Connect with a wrong address: %v, want ErrAddressMismatch", err)
	}
	// One sentence, naming the target once and the node that answered.
	if msg := err.Error(); strings.Count(msg, b.ListenAddr().String()) != 1 || strings.Count(msg, other.Address.String()) != 1 || !strings.Contains(msg, b.Address().String()) {
		t.Errorf("error %q: want the target once and the address that answered", msg)
	}
	if a.Session(b.Address()) != nil || len(a.Peers().Connections) != 0 {
		t.Fatal("a kept a session with the wrong peer")
	}
	if _, err := a.Connect(context.Background(), fmt.Sprintf("%s@%s", a.Address(), b.ListenAddr())); err == nil {
		t.Fatal("Connect to our own address accepted")
	}
}

// Two nodes that dial each other at once end with one session, the same
// connection on both sides: the one dialled by the lesser address.
func TestCrossDialKeepsOneSession(t *testing.T) {
	for i := 0; i < 5; i++ {
		a, b := newKernel(t, nil), newKernel(t, nil)
		if lesser(b.Address(), a.Address()) {
			a, b = b, a // a is the lesser: its connection must win
		}
		errs := make(chan error, 2)
		go func() { _, err := a.Connect(context.Background(), b.target()); errs <- err }()
		go func() { _, err := b.Connect(context.Background(), a.target()); errs <- err }()
		for j := 0; j < 2; j++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		// b's side of a's connection comes up as inbound.
		for ev := b.waitUp(t, a.Address()); !ev.Inbound; ev = b.waitUp(t, a.Address()) {
		}
		sa, sb := a.Session(b.Address()), b.Session(a.Address())
		if sa == nil || sb == nil {
			t.Fatal("no session kept")
		}
		if sa.Info().RemoteAddr.String() != b.ListenAddr().String() {
			t.Fatalf("a kept the connection b dialled (remote %v)", sa.Info().RemoteAddr)
		}
		if sb.Info().RemoteAddr.String() == a.ListenAddr().String() {
			t.Fatal("b kept the connection it dialled")
		}
		if _, err := sa.Call(context.Background(), wire.NamePing, nil); err != nil {
			t.Fatalf("ping over the kept session: %v", err)
		}
	}
}

// A node at its inbound limits tells the peer why it refuses it (9100),
// and keeps its sessions.
func TestInboundLimitsRefusedWith9100(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"max-inbound", func(c *Config) { c.MaxInbound = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newKernel(t, tc.mod)
			a1, a2 := newKernel(t, nil), newKernel(t, nil)
			s1, err := a1.Connect(context.Background(), b.target())
			if err != nil {
				t.Fatal(err)
			}
			b.waitUp(t, a1.Address())
			_, err = a2.Connect(context.Background(), b.target())
			var pe *wire.ProtocolError
			if !errors.As(err, &pe) || !pe.Remote || pe.Code != wire.CodeTooManyConnections {
				t.Fatalf("connect beyond %s: %v, want error 9100 from the peer", tc.name, err)
			}
			if !strings.Contains(pe.Text, tc.name) {
				t.Errorf("error text %q does not name %s", pe.Text, tc.name)
			}
			if a2.Session(b.Address()) != nil {
				t.Error("a2 holds a session with b")
			}
			if _, err := s1.Call(context.Background(), wire.NamePing, nil); err != nil {
				t.Fatalf("ping over the first session: %v", err)
			}
			if p := b.Peers(); p.Inbound != 1 {
				t.Fatalf("b has %d inbound sessions, want 1", p.Inbound)
			}
			// The bytes of a2's refused handshake count in its traffic.
			if p := a2.Peers(); p.TrafficIn == 0 || p.TrafficOut == 0 {
				t.Errorf("refused handshake not counted: a2's traffic in %d, out %d", p.TrafficIn, p.TrafficOut)
			}
		})
	}
}

// Several nodes on one machine are a local network: loopback peers are
// not limited per IP, every other address is.
func TestPerIPLimitSparesLoopback(t *testing.T) {
	b := newKernel(t, func(c *Config) { c.MaxPerIP = 1 })
	for range 3 {
		a := newKernel(t, nil)
		if _, err := a.Connect(context.Background(), b.target()); err != nil {
			t.Fatalf("a loopback peer beyond max-per-ip: %v", err)
		}
	}
	for _, pair := range [][2]string{
		{"192.0.2.7", "192.0.2.7"},
		{"2001:db8::1", "2001:db8::ffff:2"}, // one /64
	} {
		ip, other := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		_, h, why := b.admitHandshake(context.Background(), ip)
		if why != "" {
			t.Fatalf("first connection from %s refused: %s", ip, why)
		}
		if _, _, why := b.admitHandshake(context.Background(), other); !strings.Contains(why, "max-per-ip") {
			t.Fatalf("connection from %s after one from %s: %q, want a refusal naming max-per-ip", other, ip, why)
		}
		b.endHandshake(h)
		b.releaseIP(ip)
	}
}

// max-per-ip counts IPv4 peers by address and IPv6 peers by prefix.
func TestIPPrefix(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		bits int
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", 64, true},
		{"192.0.2.1", "192.0.2.2", 64, false},
		{"2001:db8::1", "2001:db8::1:2:3:4", 64, true},
		{"2001:db8::1", "2001:db8:0:1::1", 64, false},
		{"2001:db8::1", "2001:db8:0:1::1", 48, true},
		{"2001:db8::1", "2001:db8::2", 128, false},
		{"2001:db8::1", "2001:db8::1:2:3:4", 0, true}, // 0: the default, 64
		{"::ffff:192.0.2.1", "192.0.2.1", 64, true},
	} {
		a, b := netip.MustParseAddr(tc.a).Unmap(), netip.MustParseAddr(tc.b).Unmap()
		if same := ipPrefix(a, tc.bits) == ipPrefix(b, tc.bits); same != tc.same {
			t.Errorf("%s and %s with /%d: same key %v, want %v (%v, %v)", tc.a, tc.b, tc.bits, same, tc.same, ipPrefix(a, tc.bits), ipPrefix(b, tc.bits))
		}
	}
}

// Sessions that only answer pings cannot keep a new peer out: at
// max-inbound, the least recently used idle inbound session makes room,
// unless a subsystem pins it or it is recent.
func TestIdleInboundSessionsMakeRoom(t *testing.T) {
	connectAll := func(t *testing.T, b *testKernel, n int) []*testKernel {
		t.Helper()
		var as []*testKernel
		for range n {
			a := newKernel(t, nil)
			if _, err := a.Connect(context.Background(), b.target()); err != nil {
				t.Fatal(err)
			}
			b.waitUp(t, a.Address())
			as = append(as, a)
		}
		return as
	}
	refused := func(err error) bool {
		var pe *wire.ProtocolError
		return errors.As(err, &pe) && pe.Remote && pe.Code == wire.CodeTooManyConnections
	}

	t.Run("idle", func(t *testing.T) {
		b := newKernel(t, func(c *Config) { c.MaxInbound = 2; c.EvictIdle = time.Nanosecond })
		as := connectAll(t, b, 2)
		// The first has carried a frame since: the second is the least
		// recently used.
		b.Session(as[0].Address()) // a use of the session
		old := as[1].Session(b.Address())
		newcomer := newKernel(t, nil)
		s, err := newcomer.Connect(context.Background(), b.target())
		if err != nil {
			t.Fatalf("a new peer at max-inbound with idle sessions: %v", err)
		}
		b.waitUp(t, newcomer.Address())
		select {
		case <-old.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the least recently used idle session was not closed")
		}
		if pe := (*wire.ProtocolError)(nil); !errors.As(old.Err(), &pe) || pe.Code != wire.CodeTooManyConnections {
			t.Errorf("the idle session ended with %v, want error 9100", old.Err())
		}
		if b.Session(as[0].Address()) == nil {
			t.Error("the session in use was closed")
		}
		if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
			t.Fatalf("ping the new peer: %v", err)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		b := newKernel(t, func(c *Config) { c.MaxInbound = 2; c.EvictIdle = time.Nanosecond })
		as := connectAll(t, b, 2)
		ep, err := b.r.Register("dht", 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if _, err := ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.PinRequest{Address: a.Address(), Pinned: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := newKernel(t, nil).Connect(context.Background(), b.target()); !refused(err) {
			t.Fatalf("a new peer with every session pinned: %v, want error 9100", err)
		}
		// Unpinned, or pinned by an endpoint gone: room again.
		ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.PinRequest{Address: as[0].Address()})
		ep.Close()
		if _, err := newKernel(t, nil).Connect(context.Background(), b.target()); err != nil {
			t.Fatalf("a new peer once the pins are gone: %v", err)
		}
	})
	t.Run("recent", func(t *testing.T) {
		b := newKernel(t, func(c *Config) { c.MaxInbound = 2; c.EvictIdle = time.Hour })
		connectAll(t, b, 2)
		if _, err := newKernel(t, nil).Connect(context.Background(), b.target()); !refused(err) {
			t.Fatalf("a new peer with only recent sessions: %v, want error 9100", err)
		}
	})
}

// Connections that never complete a handshake (slowloris) hold no room
// that a peer needs: they have their own budget, and the oldest gives way
// to a new connection.
func TestSlowHandshakesCannotKeepPeerOut(t *testing.T) {
	b := newKernel(t, func(c *Config) { c.MaxInbound = 4; c.MaxHandshakes = 2 })
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", b.ListenAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	a := newKernel(t, nil)
	s, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatalf("a peer after %d idle connections: %v", len(idle), err)
	}
	if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
		t.Fatal(err)
	}
	// The oldest were cut short at once, not at the handshake deadline.
	idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the oldest idle connection: %v, want it closed", err)
	}
}

// A node refusing a peer says so in its log, naming the peer's IP and the
// limit.
func TestRefusalLogged(t *testing.T) {
	var mu sync.Mutex
	var buf strings.Builder
	b := newKernel(t, func(c *Config) {
		c.MaxInbound = 0
		c.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		}), nil))
	})
	if _, err := newKernel(t, nil).Connect(context.Background(), b.target()); err == nil {
		t.Fatal("connected at max-inbound 0")
	}
	mu.Lock()
	defer mu.Unlock()
	if out := buf.String(); !strings.Contains(out, "peer refused") || !strings.Contains(out, "ip=127.0.0.1") || !strings.Contains(out, "max-inbound") {
		t.Fatalf("log %q: want a line naming the peer's IP and max-inbound", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Connecting to this node itself is refused before the peer handshake, in
// plain words, whether the target plainly names the node or leads back to
// it by another way.
func TestConnectToSelf(t *testing.T) {
	k := newKernel(t, nil)
	via, _ := forward(t, k.ListenAddr().String())
	port := k.ListenAddr().Port
	for _, target := range []string{
		k.ListenAddr().String(),
		fmt.Sprintf("localhost:%d", port),
		k.target(),
		via,
	} {
		_, err := k.Connect(context.Background(), target)
		if !errors.Is(err, ErrOwnAddress) || !strings.Contains(err.Error(), "own address") || strings.Contains(err.Error(), "1020") {
			t.Errorf("connect to self as %s: %v, want ErrOwnAddress", target, err)
		}
	}
	if p := k.Peers(); len(p.Connections) != 0 {
		t.Fatalf("sessions with self: %+v", p.Connections)
	}
}

// serveEcho registers an endpoint id for the frame "echo" and answers each
// with the sender's address, until the test ends or stop is called.
func serveEcho(t *testing.T, k *testKernel, id string) (stop func()) {
	t.Helper()
	ep, err := k.r.Register(id, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := kernelapi.Handle(context.Background(), k.r, ep, "echo"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ep.Serve(ctx, func(ctx context.Context, m *router.Msg) (any, error) {
			f := m.Body.(kernelapi.Frame)
			_, err := ep.Call(ctx, kernelapi.Endpoint, kernelapi.ReplyRequest{
				To: f.From, RID: f.Envelope.RID, Name: "echo", Data: map[string]string{"from": f.From.String()},
			})
			return nil, err
		})
	}()
	stop = func() { cancel(); <-done; ep.Close() }
	t.Cleanup(stop)
	return stop
}

// Frames reach the endpoint registered for their name, over the router;
// other names are answered 9020, and names a subsystem will register for
// are answered 9050 while it is away.
func TestFramesRoutedByName(t *testing.T) {
	a := newKernel(t, nil)
	b := newKernel(t, func(c *Config) { c.Names = []string{"echo"} })
	s, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Call(context.Background(), "echo", nil); wire.CodeOf(err) != wire.CodeBusy {
		t.Fatalf("echo before its handler registered: %v, want code 9050", err)
	}
	stop := serveEcho(t, b, "echo-service")
	_, err = s.Call(context.Background(), "format_disk", nil)
	if wire.CodeOf(err) != wire.CodeUnknownCommand {
		t.Fatalf("unknown frame: %v, want code 9020", err)
	}
	reply, err := s.Call(context.Background(), "echo", nil)
	var data map[string]string
	if err != nil || reply.Name != "echo" || reply.Decode(&data) != nil || data["from"] != a.Address().String() {
		t.Fatalf("echo: %+v, %v", reply, err)
	}

	// A second endpoint cannot take the name while the first lives.
	other, _ := b.r.Register("other", 1)
	if err := kernelapi.Handle(context.Background(), b.r, other, "echo"); !errors.Is(err, kernelapi.ErrNameTaken) {
		t.Fatalf("second handler of echo: %v, want ErrNameTaken", err)
	}
	if err := kernelapi.Handle(context.Background(), b.r, other, wire.NamePing); err == nil {
		t.Fatal("a subsystem registered for ping, which the session serves")
	}
	other.Close()

	// The handler goes away (as a subsystem that failed): busy, and the
	// session survives; once it is back (restarted), echo works again.
	stop()
	if _, err := s.Call(context.Background(), "echo", nil); wire.CodeOf(err) != wire.CodeBusy {
		t.Fatalf("echo while its handler is away: %v, want code 9050", err)
	}
	serveEcho(t, b, "echo-service")
	if _, err := s.Call(context.Background(), "echo", nil); err != nil {
		t.Fatalf("echo after the handler came back: %v", err)
	}
	if _, err := s.Call(context.Background(), wire.NamePing, nil); err != nil {
		t.Fatalf("ping after refusals: %v", err)
	}
}

func TestTrafficTotalsSurviveRestart(t *testing.T) {
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, _ := identity.Generate()
	b := newKernel(t, nil)
	run := func() uint64 {
		r := router.New()
		k, err := New(Config{Identity: id, Router: r, Meta: db.Meta(), Listen: "127.0.0.1:0",
			MaxInbound: 4, MaxOutbound: 4, MaxPerIP: 4, MaxFrame: 1 << 20, HandshakeTimeout: 5 * time.Second, IdleTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx, func() { close(ready) }) }()
		<-ready
		if _, err := k.Connect(ctx, b.target()); err != nil {
			t.Fatal(err)
		}
		out := k.Peers().TrafficOut
		cancel()
		<-done
		return out
	}
	first := run()
	second := run()
	if first == 0 || second <= first {
		t.Fatalf("traffic out: %d then %d; the second run must add to the first", first, second)
	}
}

func TestOutboundLimitEvictsLeastRecentlyUsed(t *testing.T) {
	b, c, d := newKernel(t, nil), newKernel(t, nil), newKernel(t, nil)
	a := newKernel(t, func(cfg *Config) { cfg.MaxOutbound = 1; cfg.EvictIdle = time.Nanosecond })
	sb, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Connect(context.Background(), c.target()); err != nil {
		t.Fatalf("second peer at max-outbound 1: %v (the idle first should make room)", err)
	}
	select {
	case <-sb.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("least recently used session not closed")
	}
	if a.Session(c.Address()) == nil || a.Session(b.Address()) != nil {
		t.Fatal("a does not hold exactly the newer session")
	}
	// A --connect peer is never evicted.
	k := newKernel(t, func(cfg *Config) { cfg.MaxOutbound = 1; cfg.Connect = []string{b.target()} })
	b.waitUp(t, k.Address())
	if _, err := k.Connect(context.Background(), d.target()); !errors.Is(err, ErrTooManyPeers) {
		t.Fatalf("connect beyond the limit with only a --connect peer: %v, want ErrTooManyPeers", err)
	}
}

// A peer that comes back (same key, new connection) replaces its old
// session without being announced gone.
func TestReplacedSessionIsNotAnnouncedDown(t *testing.T) {
	b := newKernel(t, nil)
	a1 := newKernel(t, nil)
	if _, err := a1.Connect(context.Background(), b.target()); err != nil {
		t.Fatal(err)
	}
	b.waitUp(t, a1.Address())
	old := b.Session(a1.Address())
	a2 := newKernel(t, func(c *Config) { c.Identity = a1.cfg.Identity }) // a1, restarted
	if _, err := a2.Connect(context.Background(), b.target()); err != nil {
		t.Fatal(err)
	}
	b.waitUp(t, a1.Address())
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced session was not closed")
	}
	// The old session's end must not publish peer.down: wait a moment for
	// an event that must not come.
	select {
	case ev := <-b.down.C():
		t.Fatalf("peer.down published for %v while its new session is up", ev.(kernelapi.PeerEvent).Address)
	case <-time.After(time.Second):
	}
	if b.Session(a1.Address()) == nil {
		t.Fatal("b lost the peer")
	}
}

// A target (--connect, or Connect) counts as connected only if its
// host:port answers with its address, even when the node has a session
// with that address through another target.
func TestConnectTargetCheckedAtItsAddress(t *testing.T) {
	b, c := newKernel(t, nil), newKernel(t, nil)
	wrong := fmt.Sprintf("%s@%s", b.Address(), c.ListenAddr()) // c answers there, not b
	k := newKernel(t, func(cfg *Config) { cfg.Connect = []string{b.target()} })
	k.waitUp(t, b.Address())

	// As the redial of a --connect target does.
	if _, err := k.connect(context.Background(), wrong, true, false); !errors.Is(err, transport.ErrAddressMismatch) {
		t.Fatalf("target %s (c's host:port): %v, want ErrAddressMismatch", wrong, err)
	}
	// The same peer named at another host:port that does lead to it: the
	// session is kept, and no second one is made.
	s := k.Session(b.Address())
	fwd, dials := forward(t, b.ListenAddr().String())
	other := fmt.Sprintf("%s@%s", b.Address(), fwd)
	got, err := k.connect(context.Background(), other, true, false)
	if err != nil || got != s {
		t.Fatalf("target %s: %v (same session: %v)", other, err, got == s)
	}
	// Once the host:port has answered with the address, it is not checked
	// again, and leads to the session as a host:port alone.
	for _, target := range []string{other, fwd} {
		if got, err := k.Connect(context.Background(), target); err != nil || got != s {
			t.Fatalf("target %s again: %v (same session: %v)", target, err, got == s)
		}
	}
	if n := dials(); n != 1 {
		t.Fatalf("%s dialled %d times, want once", fwd, n)
	}
	if p := k.Peers(); p.Outbound != 1 || p.Inbound != 0 {
		t.Fatalf("k has %d outbound and %d inbound sessions, want 1 and 0", p.Outbound, p.Inbound)
	}
	if p := b.Peers(); p.Inbound != 1 {
		t.Fatalf("b has %d inbound sessions, want 1", p.Inbound)
	}
	// So does Connect, as for the console's /connect.
	if _, err := k.Connect(context.Background(), wrong); !errors.Is(err, transport.ErrAddressMismatch) {
		t.Fatalf("Connect(%s): %v, want ErrAddressMismatch", wrong, err)
	}
	// The peer, having dialled k, is reached at its own address too.
	if got, err := b.Connect(context.Background(), k.target()); err != nil || got != b.Session(k.Address()) {
		t.Fatalf("b connecting back to k: %v", err)
	}
	if p := k.Peers(); p.Outbound+p.Inbound != 1 {
		t.Fatalf("k has %d sessions, want 1", p.Outbound+p.Inbound)
	}
}

// forward listens on a port of its own and forwards each connection to
// to. It returns its address and a count of the connections it accepted.
func forward(t *testing.T, to string) (addr string, accepted func() int) {
	t.Helper()
	return listen(t, func(c net.Conn) {
		defer c.Close()
		d, err := net.Dial("tcp", to)
		if err != nil {
			return
		}
		defer d.Close()
		go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, d)
	})
}

// listen serves each connection to a port of its own with serve. It
// returns its address and a count of the connections it accepted.
func listen(t *testing.T, serve func(net.Conn)) (addr string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// A check of a target's host:port that cannot tell whether the peer
// answers there (nothing listens, or it closes before TLS, as a peer
// behind NAT or over its limits does) keeps the session with the peer.
func TestInconclusiveCheckKeepsSession(t *testing.T) {
	k, b := newKernel(t, nil), newKernel(t, nil)
	if _, err := b.Connect(context.Background(), k.target()); err != nil {
		t.Fatal(err)
	}
	k.waitUp(t, b.Address())
	s := k.Session(b.Address())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	closer, accepted := listen(t, func(c net.Conn) { c.Close() })

	for _, hostport := range []string{refused, closer} {
		target := fmt.Sprintf("%s@%s", b.Address(), hostport)
		if got, err := k.Connect(context.Background(), target); err != nil || got != s {
			t.Fatalf("Connect(%s): %v (same session: %v)", target, err, got == s)
		}
	}
	if accepted() != 1 {
		t.Fatalf("the closing listener accepted %d connections, want 1", accepted())
	}
	if p := k.Peers(); len(p.Connections) != 1 {
		t.Fatalf("k has %d sessions, want 1", len(p.Connections))
	}
}

// At max-outbound, checking a target's host:port never closes another
// peer's session to make room: the check is skipped.
func TestCheckNeverEvicts(t *testing.T) {
	b, c := newKernel(t, nil), newKernel(t, nil)
	k := newKernel(t, func(cfg *Config) { cfg.MaxOutbound = 1 })
	sb, err := k.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(context.Background(), k.target()); err != nil {
		t.Fatal(err)
	}
	k.waitUp(t, c.Address())
	sc := k.Session(c.Address())

	fwd, dials := forward(t, c.ListenAddr().String())
	target := fmt.Sprintf("%s@%s", c.Address(), fwd)
	if got, err := k.Connect(context.Background(), target); err != nil || got != sc {
		t.Fatalf("Connect(%s) at max-outbound: %v (same session: %v)", target, err, got == sc)
	}
	if k.Session(b.Address()) != sb {
		t.Fatal("the session with b was evicted for the check")
	}
	if n := dials(); n != 0 {
		t.Fatalf("%s dialled %d times at max-outbound, want never", fwd, n)
	}
}

// The traffic totals never go down, as they would if a session that ends
// were counted twice for a moment.
func TestTrafficTotalsNeverDecrease(t *testing.T) {
	b := newKernel(t, nil)
	const n = 8
	for range n {
		a := newKernel(t, nil)
		if _, err := a.Connect(context.Background(), b.target()); err != nil {
			t.Fatal(err)
		}
		b.waitUp(t, a.Address())
	}
	stop := make(chan struct{})
	polled := make(chan error, 1)
	go func() {
		var last kernelapi.Peers
		for {
			select {
			case <-stop:
				polled <- nil
				return
			default:
			}
			p := b.Peers()
			if p.TrafficIn < last.TrafficIn || p.TrafficOut < last.TrafficOut {
				polled <- fmt.Errorf("traffic went from in %d, out %d to in %d, out %d",
					last.TrafficIn, last.TrafficOut, p.TrafficIn, p.TrafficOut)
				return
			}
			last = p
		}
	}()
	b.closeAll("test")
	for range n {
		select {
		case <-b.down.C():
		case <-time.After(10 * time.Second):
			t.Fatal("sessions not ended")
		}
	}
	close(stop)
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
}
