// Package kernel is the core of a node: it listens for peers, dials them,
// runs the peer protocol on each session, and owns the node's view of its
// connections. Other subsystems reach it only through the router, with the
// requests of package kernelapi; frames of the peer protocol reach the
// subsystem that registered for their name (see frames.go). Only the
// kernel holds sessions.
//
// The files: kernel.go runs the kernel; admit.go accepts inbound
// connections within the limits; dial.go dials peers and checks their
// addresses; sessions.go keeps the set of sessions; frames.go routes
// peer frames to subsystems; api.go serves the router; traffic.go counts
// bytes.
//
// The kernel keeps one session per peer. When two nodes dial each other at
// once, both keep the connection dialled by the node with the lesser
// address and close the other (error 1050), so they agree without talking.
package kernel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

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
	// MaxHandshakes bounds the inbound connections not yet authenticated
	// (TLS, hello and id under way); 0 means DefaultMaxHandshakes. When
	// they are all taken, a new connection cuts the oldest short.
	MaxHandshakes int
	// IPv6Prefix is the length of the prefix by which MaxPerIP counts
	// IPv6 peers; 0 means DefaultIPv6Prefix (a /64).
	IPv6Prefix int
	// EvictIdle is how long an inbound session must have carried nothing
	// for a subsystem before, at MaxInbound, a new peer may take its place
	// (unless a subsystem pins it, or it is with a --connect peer); 0
	// means DefaultEvictIdle.
	EvictIdle                     time.Duration
	MaxFrame                      int
	HandshakeTimeout, IdleTimeout time.Duration
	Hashcash                      wire.HashcashPolicy
	Capabilities                  []string
	// Names are the frame names subsystems register for (see
	// kernelapi.HandleRequest). Until one is registered, as while its
	// subsystem starts or restarts, a frame of that name is answered
	// "busy" (9050), not "unknown command" (9020).
	Names []string
}

// Kernel is the peer-to-peer core of a node.
type Kernel struct {
	cfg Config
	ep  *transport.Endpoint
	log *slog.Logger
	// plog logs what peers cause (connections, refusals, protocol
	// errors), at a bounded rate: see peer.NewLimitedHandler.
	plog *slog.Logger

	mu       sync.Mutex
	sessions map[identity.Address]*conn
	// live holds every session not yet ended: the registered ones, and
	// those closing as duplicates. Peers counts their traffic.
	live       map[*peer.Session]struct{}
	perIP      map[netip.Prefix]int    // inbound sessions and handshakes, by ipKey
	handshakes map[*handshake]struct{} // inbound, not yet authenticated
	inbound    int                     // inbound sessions, those closing to make room included
	outbound   int
	// pins holds, for a peer, the router endpoints that use its
	// sessions (kernelapi.PinRequest).
	pins     map[identity.Address]map[string]bool
	refusing int // connections being refused with error 9100

	targets map[string]*node.TargetInfo // the configured peers, by target

	listenAddr atomic.Pointer[net.TCPAddr]
	// runCtx is Run's context: sessions live as long as the kernel, not
	// as long as the request that dialled them.
	runCtx context.Context
	// Traffic of the connections that have ended, and before this run. A
	// session's traffic moves here from live under mu.
	closedIn, closedOut atomic.Uint64

	// api is the kernel's router endpoint, while Run runs.
	api atomic.Pointer[router.Endpoint]
	// handlers maps a frame name to the endpoint registered for it.
	hmu      sync.RWMutex
	handlers map[string]string

	wg sync.WaitGroup
}

type conn struct {
	s       *peer.Session
	ctx     context.Context // ends with the session
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
		cfg:        cfg,
		ep:         ep,
		log:        cfg.Logger,
		plog:       slog.New(peer.NewLimitedHandler(cfg.Logger.Handler(), peer.DefaultLogRate, peer.DefaultLogBurst)),
		sessions:   make(map[identity.Address]*conn),
		live:       make(map[*peer.Session]struct{}),
		perIP:      make(map[netip.Prefix]int),
		handshakes: make(map[*handshake]struct{}),
		pins:       make(map[identity.Address]map[string]bool),
		targets:    make(map[string]*node.TargetInfo),
		handlers:   make(map[string]string),
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
	re, err := k.cfg.Router.Register(kernelapi.Endpoint, 256)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer re.Close()
	k.api.Store(re)
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
	k.wg.Go(func() { k.keepTrafficSaved(ctx) })
	for _, t := range k.cfg.Connect {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			k.keep(ctx, t)
		}()
	}
	k.log.Info("kernel listening", "addr", l.Addr().String())
	ready()
	return re.Serve(ctx, k.serveRequest)
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
		Logger:           k.plog,
		HandshakeTimeout: k.cfg.HandshakeTimeout,
		IdleTimeout:      k.cfg.IdleTimeout, // pinged at half of it
		MaxFrameSize:     k.cfg.MaxFrame,
	}
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
