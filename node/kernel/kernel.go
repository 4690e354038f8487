// Package kernel is the core of a node: it listens for peers, dials them,
// runs the peer protocol on each session, and owns the node's view of its
// connections. Other subsystems reach it only through the router.
//
// The kernel keeps one session per peer. When two nodes dial each other at
// once, both keep the connection dialled by the node with the lesser
// address and close the other (error 1050), so they agree without talking.
package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

// Endpoint is the kernel's router id.
const Endpoint = "kernel"

// Topics the kernel publishes on the router.
const (
	TopicPeerUp   = "peer.up"   // event: PeerEvent
	TopicPeerDown = "peer.down" // event: PeerEvent
)

// PeerEvent announces a session that began or ended.
type PeerEvent struct {
	Address identity.Address
	Info    peer.Info
	Inbound bool
}

// Requests the kernel serves on the router.
type (
	// PeersRequest asks for the sessions; the reply is a Peers.
	PeersRequest struct{}
	// ConnectRequest asks the kernel to dial a peer ("host:port" or
	// "address@host:port") now; the reply is the peer's address.
	ConnectRequest struct{ Target string }
	// SendRequest sends a one-way frame to a peer with a session; the
	// reply is nil once it is queued.
	SendRequest struct {
		To   identity.Address
		Name string
		Data any
	}
	// SessionRequest asks about the session with a peer; the reply is its
	// peer.Info, or an error wrapping ErrNoSession.
	SessionRequest struct{ Address identity.Address }
	// CloseRequest closes the session with a peer, if there is one.
	CloseRequest struct {
		Address identity.Address
		Reason  string
	}
	// CallRequest sends a request frame to a peer with a session and
	// waits for its answer; the reply is the answer's wire.Envelope, and
	// an error frame is an error (see peer.CodeOf).
	CallRequest struct {
		To   identity.Address
		Name string
		Data any
	}
)

// ErrNoSession is returned for a frame to a peer the node has no session
// with.
var ErrNoSession = errors.New("no session with that peer")

// Peers describes the kernel's sessions and traffic.
type Peers struct {
	Listen string // the address the kernel listens on

	Inbound, Outbound int
	// TrafficIn and TrafficOut count the bytes, TLS included, of every
	// peer connection since the node was made: sessions, and handshakes
	// that failed or were refused. Connections closed before TLS count
	// nothing.
	TrafficIn, TrafficOut uint64
	Connections           []node.ConnInfo
	Targets               []node.TargetInfo // the configured peers (--connect)
}

// A FrameHandler serves the frames of one message name. It runs on the
// session's reading goroutine and must not block (see peer.Handler).
type FrameHandler func(k *Kernel, s *peer.Session, e wire.Envelope)

// Config configures a Kernel.
type Config struct {
	Identity *identity.Identity
	Router   *router.Router
	Logger   *slog.Logger
	// Meta, if not nil, keeps the traffic totals across restarts.
	Meta *store.Meta

	Listen  string   // host:port
	Connect []string // peers to dial and keep: host:port or address@host:port

	MaxInbound, MaxOutbound, MaxPerIP int
	MaxFrame                          int
	HandshakeTimeout, IdleTimeout     time.Duration
	Hashcash                          wire.HashcashPolicy
	Capabilities                      []string

	// Handlers serve message names beyond the session's own (hello, id,
	// ping…): node_find, talk_request…. Other names are answered with
	// error 9020.
	Handlers map[string]FrameHandler
}

// Kernel is the peer-to-peer core of a node.
type Kernel struct {
	cfg Config
	ep  *transport.Endpoint
	log *slog.Logger

	mu       sync.Mutex
	sessions map[identity.Address]*conn
	// live holds every session not yet ended: the registered ones, and
	// those closing as duplicates. Peers counts their traffic.
	live     map[*peer.Session]struct{}
	perIP    map[netip.Addr]int
	inbound  int // sessions and handshakes
	outbound int
	refusing int // connections being refused with error 9100

	targets map[string]*node.TargetInfo // the configured peers, by target

	listenAddr atomic.Pointer[net.TCPAddr]
	// runCtx is Run's context: sessions live as long as the kernel, not
	// as long as the request that dialled them.
	runCtx context.Context
	// Traffic of the connections that have ended, and before this run. A
	// session's traffic moves here from live under mu.
	closedIn, closedOut atomic.Uint64

	wg sync.WaitGroup
}

type conn struct {
	s       *peer.Session
	inbound bool
	via     string // outbound: the host:port dialled
	// verified holds the other host:ports at which the peer has answered
	// with its address (see Connect).
	verified map[string]bool
	used     atomic.Int64 // unix nanoseconds of the last request through it
	evicted  bool         // closed to make room; still registered until it ends
	kept     bool         // with a --connect peer: never evicted
}

// reaches reports whether the peer of c is known to answer at hostport.
func (c *conn) reaches(hostport string) bool {
	return (!c.inbound && c.via == hostport) || c.verified[hostport]
}

func (c *conn) touch() { c.used.Store(time.Now().UnixNano()) }

// New returns a kernel; Run starts it.
func New(cfg Config) (*Kernel, error) {
	ep, err := transport.New(cfg.Identity)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, t := range cfg.Connect {
		if _, _, err := transport.ParseTarget(t); err != nil {
			return nil, err
		}
	}
	return &Kernel{
		cfg:      cfg,
		ep:       ep,
		log:      cfg.Logger,
		sessions: make(map[identity.Address]*conn),
		live:     make(map[*peer.Session]struct{}),
		perIP:    make(map[netip.Addr]int),
		targets:  make(map[string]*node.TargetInfo),
	}, nil
}

// Address returns the node's address.
func (k *Kernel) Address() identity.Address { return k.cfg.Identity.Address }

// ListenAddr returns the address the kernel listens on, once it runs.
func (k *Kernel) ListenAddr() *net.TCPAddr { return k.listenAddr.Load() }

// Run listens, dials the configured peers and serves until ctx ends.
func (k *Kernel) Run(ctx context.Context, ready func()) error {
	l, err := k.ep.Listen(ctx, k.cfg.Listen)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer l.Close()
	k.listenAddr.Store(l.Addr().(*net.TCPAddr))
	re, err := k.cfg.Router.Register(Endpoint, 256)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer re.Close()
	k.loadTraffic()
	defer k.saveTraffic()

	ctx, cancel := context.WithCancel(ctx)
	k.mu.Lock()
	k.runCtx = ctx
	k.mu.Unlock()
	defer func() {
		cancel()
		l.Close()
		k.closeAll("node shutting down")
		k.wg.Wait()
	}()
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.accept(ctx, l)
	}()
	for _, t := range k.cfg.Connect {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.keep(ctx, t)
		}()
	}
	k.log.Info("kernel listening", "addr", l.Addr().String())
	ready()
	return re.Serve(ctx, func(ctx context.Context, m *router.Msg) (any, error) {
		switch req := m.Body.(type) {
		case PeersRequest:
			return k.Peers(), nil
		case ConnectRequest:
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				s, err := k.Connect(ctx, req.Target)
				if err != nil {
					m.Reply(nil, err)
					return
				}
				m.Reply(s.Peer(), nil)
			}()
			return nil, router.ErrDeferred
		case SessionRequest:
			s := k.Session(req.Address)
			if s == nil {
				return nil, fmt.Errorf("session with %s: %w", req.Address, ErrNoSession)
			}
			return s.Info(), nil
		case CloseRequest:
			if s := k.Session(req.Address); s != nil {
				s.Close(req.Reason)
			}
			return nil, nil
		case SendRequest:
			s := k.Session(req.To)
			if s == nil {
				return nil, fmt.Errorf("send %s to %s: %w", req.Name, req.To, ErrNoSession)
			}
			return nil, s.Send(ctx, req.Name, req.Data)
		case CallRequest:
			s := k.Session(req.To)
			if s == nil {
				return nil, fmt.Errorf("call %s on %s: %w", req.Name, req.To, ErrNoSession)
			}
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				e, err := s.Call(ctx, req.Name, req.Data)
				if err != nil {
					m.Reply(nil, err)
					return
				}
				m.Reply(e, nil)
			}()
			return nil, router.ErrDeferred
		default:
			return nil, fmt.Errorf("kernel: unexpected %T", m.Body)
		}
	})
}

// sessionConfig is the peer.Config of every session.
func (k *Kernel) sessionConfig() peer.Config {
	port := 0
	if a := k.ListenAddr(); a != nil {
		port = a.Port
	}
	return peer.Config{
		Identity:         k.cfg.Identity,
		Software:         "phpchat-node/" + node.Version,
		ListenPort:       port,
		Capabilities:     k.cfg.Capabilities,
		Hashcash:         k.cfg.Hashcash,
		Handler:          k.handle,
		Logger:           k.log,
		HandshakeTimeout: k.cfg.HandshakeTimeout,
		IdleTimeout:      k.cfg.IdleTimeout, // pinged at half of it
		MaxFrameSize:     k.cfg.MaxFrame,
	}
}

// handle dispatches a frame the session does not serve itself.
func (k *Kernel) handle(s *peer.Session, e wire.Envelope) {
	k.mu.Lock()
	if c, ok := k.sessions[s.Peer()]; ok && c.s == s {
		c.touch()
	}
	k.mu.Unlock()
	if h, ok := k.cfg.Handlers[e.Name]; ok {
		h(k, s, e)
		return
	}
	if e.Name == wire.NameError {
		return // an error frame answering nothing of ours: never answer it
	}
	s.SendError(context.Background(), e, wire.CodeUnknownCommand, fmt.Sprintf("unknown command %q", e.Name))
}

func (k *Kernel) accept(ctx context.Context, l *transport.Listener) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.AcceptTLS()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then go on.
			k.log.Warn("kernel: accept", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ip := remoteIP(c.RemoteAddr())
		if why := k.admitInbound(ip); why != "" {
			k.refuse(ctx, c, why)
			continue
		}
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			defer k.releaseInbound(ip)
			s, err := peer.Handshake(ctx, c, k.sessionConfig())
			if err != nil {
				k.countUnserved(c)
				k.log.Debug("kernel: inbound handshake failed", "remote", c.RemoteAddr().String(), "err", err)
				return
			}
			k.serve(ctx, s, true, "")
		}()
	}
}

// maxRefusals bounds the connections refused with error 9100 at a time.
// Beyond it, a connection the node has no room for is closed at once,
// before TLS, so that a flood of connections costs few handshakes.
const maxRefusals = 4

// refuse tells the peer on c, which the node has no room for, why (error
// 9100) if few other refusals are under way, and closes c.
func (k *Kernel) refuse(ctx context.Context, c *tls.Conn, why string) {
	k.mu.Lock()
	tell := k.refusing < maxRefusals
	if tell {
		k.refusing++
	}
	k.mu.Unlock()
	k.log.Debug("kernel: refusing peer", "remote", c.RemoteAddr().String(), "why", why, "told", tell)
	if !tell {
		c.NetConn().Close()
		return
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer func() {
			k.mu.Lock()
			k.refusing--
			k.mu.Unlock()
		}()
		if err := peer.Refuse(ctx, c, k.sessionConfig(), wire.CodeTooManyConnections, why); err != nil {
			k.log.Debug("kernel: refusing peer", "remote", c.RemoteAddr().String(), "err", err)
		}
		k.countUnserved(c)
	}()
}

// admitInbound reserves room for an inbound connection from ip, or says
// why there is none.
func (k *Kernel) admitInbound(ip netip.Addr) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inbound >= k.cfg.MaxInbound {
		return "no room for another inbound session (max-inbound)"
	}
	if k.perIP[ip] >= k.cfg.MaxPerIP {
		return fmt.Sprintf("no room for another session from %s (max-per-ip)", ip)
	}
	k.inbound++
	k.perIP[ip]++
	return ""
}

func (k *Kernel) releaseInbound(ip netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.inbound--
	if k.perIP[ip]--; k.perIP[ip] <= 0 {
		delete(k.perIP, ip)
	}
}

// ErrTooManyPeers is returned by Connect at the max-outbound limit.
var ErrTooManyPeers = errors.New("too many outbound sessions (max-outbound)")

// Connect dials target ("host:port" or "address@host:port") and returns
// the session with that peer: the new one, or the one the node already
// had with it.
//
// A target's host:port must lead to its peer: a session with the
// target's address that was not dialled to that host:port (the peer
// dialled this node, or was reached at another host:port) does not show
// that it does. If an outbound slot is free, Connect then dials the
// target all the same, to check; the check never evicts a session. If
// the TLS handshake shows that another key answers there, Connect fails
// with an error wrapping transport.ErrAddressMismatch. Otherwise it
// returns the session it had, ending the check connection with error
// 1050: a check that cannot tell (no free slot, the host:port does not
// answer, as for a peer behind NAT, or closes before TLS) is no reason
// to give up a working session. A host:port that answered with the
// address is remembered for the session and not checked again.
func (k *Kernel) Connect(ctx context.Context, target string) (*peer.Session, error) {
	return k.connect(ctx, target, false)
}

// connect is Connect; keep marks the session as one with a --connect peer,
// which is never evicted to make room.
func (k *Kernel) connect(ctx context.Context, target string, keep bool) (*peer.Session, error) {
	hostport, expect, err := transport.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	check := false // dial only to check that expect answers at hostport
	if expect != nil {
		if *expect == k.Address() {
			return nil, fmt.Errorf("connect %s: that is this node's own address", target)
		}
		if s := k.Session(*expect); s != nil {
			if k.reaches(s, hostport) {
				k.markKept(s, keep)
				return s, nil
			}
			check = true
		}
	} else if s := k.sessionTo(hostport); s != nil {
		k.markKept(s, keep)
		return s, nil
	}
	// existing returns the session with expect, if the node still has
	// one, as the outcome of a check that could not tell.
	existing := func(why string, err error) *peer.Session {
		s := k.Session(*expect)
		if s != nil {
			k.log.Debug("kernel: address not checked", "target", target, "why", why, "err", err)
			k.markKept(s, keep)
		}
		return s
	}
	k.mu.Lock()
	runCtx := k.runCtx
	if runCtx == nil {
		k.mu.Unlock()
		return nil, fmt.Errorf("connect %s: kernel not running", target)
	}
	if k.outbound >= k.cfg.MaxOutbound {
		if check {
			k.mu.Unlock()
			if s := existing("no free outbound slot", nil); s != nil {
				return s, nil
			}
			// The session ended meanwhile: dial for a new one.
			check = false
			k.mu.Lock()
		}
		if k.outbound >= k.cfg.MaxOutbound && !k.evictIdleOutbound() {
			k.mu.Unlock()
			return nil, fmt.Errorf("connect %s: %w", target, ErrTooManyPeers)
		}
	}
	k.outbound++
	k.mu.Unlock()
	release := func() { k.mu.Lock(); k.outbound--; k.mu.Unlock() }

	dctx, cancel := context.WithTimeout(ctx, k.cfg.HandshakeTimeout)
	defer cancel()
	c, err := k.dial(dctx, hostport, expect)
	if err != nil {
		release()
		if check && ctx.Err() == nil && !errors.Is(err, transport.ErrAddressMismatch) {
			if s := existing("check dial failed", err); s != nil {
				return s, nil
			}
		}
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	if check {
		if s := k.Session(*expect); s != nil {
			peer.Refuse(dctx, c, k.sessionConfig(), wire.CodeDuplicateSession, "") // TLS is done: it cannot fail
			k.countUnserved(c)
			release()
			k.markVerified(s, hostport)
			k.markKept(s, keep)
			return s, nil
		}
	}
	s, err := peer.Handshake(dctx, c, k.sessionConfig())
	if err != nil {
		k.countUnserved(c)
		release()
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	kept := make(chan *peer.Session, 1)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer release()
		k.serveKept(runCtx, s, false, hostport, kept, keep)
	}()
	select {
	case s := <-kept:
		if s == nil {
			return nil, fmt.Errorf("connect %s: session closed", target)
		}
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial is the transport's Dial, adding the bytes of a failed TLS
// handshake to the totals.
func (k *Kernel) dial(ctx context.Context, hostport string, expect *identity.Address) (*tls.Conn, error) {
	c, err := k.ep.Dial(ctx, hostport, expect)
	var he *transport.HandshakeError
	if errors.As(err, &he) {
		k.closedIn.Add(he.BytesRead)
		k.closedOut.Add(he.BytesWritten)
	}
	return c, err
}

// countUnserved adds the traffic of c, a closed connection that carries
// no session, to the totals.
func (k *Kernel) countUnserved(c *tls.Conn) {
	if cc, ok := c.NetConn().(*transport.CountingConn); ok {
		k.closedIn.Add(cc.BytesRead())
		k.closedOut.Add(cc.BytesWritten())
	}
}

func (k *Kernel) serve(ctx context.Context, s *peer.Session, inbound bool, via string) {
	k.serveKept(ctx, s, inbound, via, nil, false)
}

// serveKept registers s (resolving a duplicate), runs it until it ends
// and unregisters it. via is the host:port an outbound s was dialled to.
// kept, if not nil, receives the session the node keeps with this peer (s
// or the older one), or nil; target marks that session as one with a
// --connect peer.
func (k *Kernel) serveKept(ctx context.Context, s *peer.Session, inbound bool, via string, kept chan<- *peer.Session, target bool) {
	keep, drop := k.register(s, inbound, via, target)
	if kept != nil {
		kept <- keep
	}
	if drop != nil {
		k.log.Debug("kernel: duplicate session closed", "peer", s.Peer().String())
		drop.CloseWithError(wire.CodeDuplicateSession, "")
	}
	if keep != s {
		// s never runs: count its traffic once it has closed.
		<-s.Done()
		k.end(s)
		return
	}
	ev := PeerEvent{Address: s.Peer(), Info: s.Info(), Inbound: inbound}
	k.cfg.Router.Publish(TopicPeerUp, ev)
	k.log.Info("peer connected", "peer", s.Peer().String(), "remote", s.Info().RemoteAddr.String(), "inbound", inbound)
	err := s.Run(ctx)
	// A session replaced by a newer one with the same peer ends without
	// announcing the peer gone: it is not.
	if k.end(s) {
		k.cfg.Router.Publish(TopicPeerDown, ev)
	}
	k.log.Info("peer disconnected", "peer", s.Peer().String(), "err", err)
}

// register adds s, unless the node has a session with the same peer: of
// the two it keeps the one dialled by the node with the lesser address (or
// the newer, if the same node dialled both, its old one being stale). The
// session kept is marked as one with a --connect peer if target.
func (k *Kernel) register(s *peer.Session, inbound bool, via string, target bool) (keep, drop *peer.Session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live[s] = struct{}{}
	old, ok := k.sessions[s.Peer()]
	if !ok {
		c := &conn{s: s, inbound: inbound, via: via, kept: target}
		c.touch()
		k.sessions[s.Peer()] = c
		return s, nil
	}
	self, other := k.Address(), s.Peer()
	dialer := func(in bool) identity.Address {
		if in {
			return other
		}
		return self
	}
	newD, oldD := dialer(inbound), dialer(old.inbound)
	if newD == oldD || lesser(newD, oldD) {
		c := &conn{s: s, inbound: inbound, via: via, kept: target || old.kept}
		c.touch()
		k.sessions[s.Peer()] = c
		return s, old.s
	}
	old.kept = old.kept || target
	return old.s, s
}

// end removes s, which has ended, and moves its traffic to the totals, in
// one step as Peers sees them. It reports whether s was the peer's
// registered session.
func (k *Kernel) end(s *peer.Session) bool {
	st := s.Stats()
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.live, s)
	k.closedIn.Add(st.BytesIn)
	k.closedOut.Add(st.BytesOut)
	if c, ok := k.sessions[s.Peer()]; ok && c.s == s {
		delete(k.sessions, s.Peer())
		return true
	}
	return false
}

func lesser(a, b identity.Address) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Session returns the session with the peer, or nil. It counts as a use
// of the session (see Connect).
func (k *Kernel) Session(addr identity.Address) *peer.Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[addr]; ok && !c.evicted {
		c.touch()
		return c.s
	}
	return nil
}

// markKept marks s as a session with a --connect peer, if keep.
func (k *Kernel) markKept(s *peer.Session, keep bool) {
	if !keep || s == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[s.Peer()]; ok && c.s == s {
		c.kept = true
	}
}

// reaches reports whether s is the registered session with its peer and
// the peer is known to answer at hostport: s was dialled to it, or a
// check found the peer there.
func (k *Kernel) reaches(s *peer.Session, hostport string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.sessions[s.Peer()]
	return ok && c.s == s && c.reaches(hostport)
}

// markVerified records that the peer of s answered at hostport.
func (k *Kernel) markVerified(s *peer.Session, hostport string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[s.Peer()]; ok && c.s == s {
		if c.verified == nil {
			c.verified = make(map[string]bool)
		}
		c.verified[hostport] = true
	}
}

// sessionTo returns a session whose peer is known to answer at hostport,
// or nil.
func (k *Kernel) sessionTo(hostport string) *peer.Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.sessions {
		if !c.evicted && c.reaches(hostport) {
			c.touch()
			return c.s
		}
	}
	return nil
}

// evictIdleOutbound closes the least recently used outbound session that
// is not with a --connect peer, making room for a new one. It reports
// whether it closed one. k.mu must be held.
func (k *Kernel) evictIdleOutbound() bool {
	var victim *conn
	for _, c := range k.sessions {
		if c.inbound || c.evicted || c.kept {
			continue
		}
		if victim == nil || c.used.Load() < victim.used.Load() {
			victim = c
		}
	}
	if victim == nil {
		return false
	}
	victim.evicted = true // it unregisters itself when it has ended
	victim.s.Close("making room for another peer")
	return true
}

func (k *Kernel) closeAll(reason string) {
	k.mu.Lock()
	all := make([]*peer.Session, 0, len(k.sessions))
	for _, c := range k.sessions {
		all = append(all, c.s)
	}
	k.mu.Unlock()
	for _, s := range all {
		s.Close(reason)
	}
}

// keep dials target and redials it with backoff whenever the session ends,
// until ctx ends.
func (k *Kernel) keep(ctx context.Context, target string) {
	const minBackoff, maxBackoff = time.Second, 5 * time.Minute
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		s, err := k.connect(ctx, target, true)
		k.setTarget(target, s, err)
		if err != nil {
			k.log.Warn("kernel: cannot reach peer", "target", target, "err", err, "retry_in", backoff)
		} else {
			select {
			case <-s.Done():
				k.setTarget(target, nil, s.Err())
			case <-ctx.Done():
				return
			}
			if time.Since(start) > maxBackoff {
				backoff = minBackoff // it held for a while
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// setTarget records the outcome of dialling a configured peer: a session,
// or the error that ended or prevented one.
func (k *Kernel) setTarget(target string, s *peer.Session, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.targets[target]
	if t == nil {
		t = &node.TargetInfo{Target: target}
		k.targets[target] = t
	}
	t.Connected = s != nil
	t.Address = ""
	if s != nil {
		t.Address = s.Peer().String()
		t.LastError = ""
	} else if err != nil {
		t.LastError = err.Error()
		t.LastErrorAt = time.Now()
	}
}

// Peers describes the sessions.
func (k *Kernel) Peers() Peers {
	k.mu.Lock()
	// A session's traffic is in the totals or in live, never both.
	p := Peers{TrafficIn: k.closedIn.Load(), TrafficOut: k.closedOut.Load()}
	live := make([]*peer.Session, 0, len(k.live))
	for s := range k.live {
		live = append(live, s)
	}
	conns := make([]*conn, 0, len(k.sessions))
	for _, c := range k.sessions {
		conns = append(conns, c)
	}
	for _, t := range k.cfg.Connect {
		if ti := k.targets[t]; ti != nil {
			p.Targets = append(p.Targets, *ti)
		} else {
			p.Targets = append(p.Targets, node.TargetInfo{Target: t})
		}
	}
	k.mu.Unlock()
	if a := k.ListenAddr(); a != nil {
		p.Listen = a.String()
	}
	for _, s := range live {
		st := s.Stats()
		p.TrafficIn += st.BytesIn
		p.TrafficOut += st.BytesOut
	}
	for _, c := range conns {
		st := c.s.Stats()
		info := c.s.Info()
		status := "o"
		if c.inbound {
			status = "i"
			p.Inbound++
		} else {
			p.Outbound++
		}
		remote := ""
		if info.RemoteAddr != nil {
			remote = info.RemoteAddr.String()
		}
		p.Connections = append(p.Connections, node.ConnInfo{
			Address: c.s.Peer().String(), Remote: remote, Inbound: c.inbound, Status: status,
			TrafficIn: st.BytesIn, TrafficOut: st.BytesOut, FirstSeen: st.FirstSeen, LastSeen: st.LastSeen,
		})
	}
	return p
}

// Contribute adds the kernel's figures to a node's Info: a
// node.Contributor.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	p, err := router.CallAs[Peers](ctx, ep, Endpoint, PeersRequest{})
	if err != nil {
		return err
	}
	n := p.Inbound + p.Outbound
	if p.Listen != "" {
		in.Listen = p.Listen // the bound address, as with port 0
	}
	in.Peers, in.PeersIn, in.PeersOut = &n, p.Inbound, p.Outbound
	in.TrafficIn, in.TrafficOut = &p.TrafficIn, &p.TrafficOut
	in.Connections = p.Connections
	in.Targets = p.Targets
	return nil
}

type traffic struct {
	In  uint64 `json:"in"`
	Out uint64 `json:"out"`
}

func (k *Kernel) loadTraffic() {
	if k.cfg.Meta == nil {
		return
	}
	var t traffic
	if err := k.cfg.Meta.Get("traffic", &t); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			k.log.Warn("kernel: traffic totals not loaded", "err", err)
		}
		return
	}
	k.closedIn.Store(t.In)
	k.closedOut.Store(t.Out)
}

// saveTraffic stores the totals; it runs once every session has ended.
func (k *Kernel) saveTraffic() {
	if k.cfg.Meta == nil {
		return
	}
	if err := k.cfg.Meta.Put("traffic", traffic{In: k.closedIn.Load(), Out: k.closedOut.Load()}); err != nil {
		k.log.Warn("kernel: traffic totals not saved", "err", err)
	}
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
