// Package messages is the offline-message service: it queues the user's
// messages durably, seals each for its recipient (package envelope), pays
// for it with a hashcash stamp from the miner pool, and delivers it to the
// recipient directly or to the nodes closest to the recipient's DHT id,
// until the recipient's signed receipt comes back. As a relay it holds the
// envelopes of others within quotas and hands them to their recipients
// when they connect or ask. It reaches peers only through the router.
package messages

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// Defaults of Config.
const (
	DefaultBits           = 20      // stamp bits of an envelope up to 64 KiB
	DefaultReplicas       = 8       // relays a message is stored on
	DefaultMaxMessageSize = 8 << 20 // bytes of a message's content
	DefaultExpiry         = 14 * 24 * time.Hour
	DefaultMailDomain     = "phpchat.lan"
	DefaultHandOffEvery   = 10 * time.Minute
	// StampExpiry is how long an envelope's stamp is valid: as long as
	// the envelope lives, since relays hand it on to one another and to
	// the recipient until it expires.
	StampExpiry = DefaultExpiry + 48*time.Hour
)

// Config configures a Service.
type Config struct {
	Router   *router.Router
	Logger   *slog.Logger
	Identity *identity.Identity
	DB       *store.DB
	// RelayLimits are the quotas of the envelopes held for others.
	RelayLimits store.RelayLimits
	// Stamps verifies and spends the stamps of incoming envelopes; its
	// policy's expiry must cover an envelope's lifetime.
	Stamps *stamps.Checker
	// Bits is the network minimum of an envelope's stamp (see
	// envelope.StampBits).
	Bits int
	// Replicas is how many relays near the recipient get a copy.
	Replicas int
	// MaxMessageSize bounds a message's content.
	MaxMessageSize int
	// Expiry is how long a new message lives.
	Expiry time.Duration
	// MailDomain is the domain of the nodes' mail addresses (From of a
	// received message is <sender>@MailDomain; DefaultMailDomain if
	// empty).
	MailDomain string
	// HandOffEvery is how often the relay hands the envelopes it holds to
	// nodes closer to their recipients (default DefaultHandOffEvery).
	HandOffEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the offline-message subsystem.
type Service struct {
	cfg Config
	log *slog.Logger

	// Made anew by each Run.
	ctx     context.Context // Run's: work that outlives the frame it came from
	ep      *router.Endpoint
	relay   *store.Relay // the envelopes held for others
	parts   *assembler
	work    chan struct{} // a token per frame being served
	push    chan struct{} // a token per recipient being pushed to
	sending chan struct{} // a token per message being delivered
	bg      chan struct{} // a token per background job
	kick    chan struct{} // the outbox has new work
	hand    *handOff
	wg      sync.WaitGroup

	mu        sync.Mutex
	peers     map[identity.Address]int  // sessions open, by peer
	pushing   map[identity.Address]bool // recipients with a pusher: true if asked again
	receipted map[[16]byte]time.Time    // duplicates answered with a receipt, when
	inFlight  map[[16]byte]bool         // outgoing messages being delivered
	minting   map[[16]byte]bool         // outgoing messages whose stamp is being minted
}

// Limits of the service.
const (
	// maxWork bounds the frames served at once. The relay store commits
	// the puts in flight together (group commit), so its throughput grows
	// with this bound; a frame holds at most one part (PartSize bytes).
	maxWork     = 256
	maxPushers  = 16 // recipients pushed to at once
	maxPending  = 2  // envelopes in parts per peer at once
	inboxSize   = 512
	sendTimeout = 2 * time.Minute // one push of an envelope to one peer
)

// New returns a service; Run starts it.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Bits = cmp.Or(cfg.Bits, DefaultBits)
	cfg.Replicas = cmp.Or(cfg.Replicas, DefaultReplicas)
	cfg.MaxMessageSize = cmp.Or(cfg.MaxMessageSize, DefaultMaxMessageSize)
	cfg.Expiry = cmp.Or(cfg.Expiry, DefaultExpiry)
	cfg.MailDomain = cmp.Or(cfg.MailDomain, DefaultMailDomain)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

// maxEnvelope is the largest envelope the node takes: a message of
// MaxMessageSize sealed, with room for the envelope's own fields.
func (s *Service) maxEnvelope() int { return s.cfg.MaxMessageSize + 64<<10 }

// Run serves until ctx ends. It may be run again after it returns.
func (s *Service) Run(ctx context.Context, ready func()) error {
	ep, err := s.cfg.Router.Register(msgapi.Endpoint, inboxSize)
	if err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	defer ep.Close()
	up := s.cfg.Router.Subscribe(kernelapi.TopicPeerUp, 256)
	defer up.Unsubscribe()
	down := s.cfg.Router.Subscribe(kernelapi.TopicPeerDown, 256)
	defer down.Unsubscribe()
	s.relay = s.cfg.DB.OpenRelay(store.RelayOptions{Limits: s.cfg.RelayLimits})
	defer s.relay.Close() // once every goroutine below has stopped
	s.ep = ep
	s.parts = newAssembler(s.maxEnvelope(), maxPending)
	s.work = make(chan struct{}, maxWork)
	s.push = make(chan struct{}, maxPushers)
	s.bg = make(chan struct{}, maxBackground)
	s.sending = make(chan struct{}, maxSending)
	s.kick = make(chan struct{}, 1)
	s.hand = newHandOff()
	s.mu.Lock()
	s.peers = make(map[identity.Address]int)
	s.pushing = make(map[identity.Address]bool)
	s.receipted = make(map[[16]byte]time.Time)
	s.minting = make(map[[16]byte]bool)
	s.inFlight = make(map[[16]byte]bool)
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	s.ctx = ctx
	if err := kernelapi.Handle(ctx, s.cfg.Router, ep, Names...); err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	sessions, err := router.CallAs[[]kernelapi.PeerInfo](ctx, ep, kernelapi.Endpoint, kernelapi.SessionsRequest{})
	if err != nil {
		return fmt.Errorf("messages: sessions: %w", err)
	}
	for _, p := range sessions {
		s.peerUp(p.Address)
	}
	s.wg.Go(func() { s.deliverLoop(ctx) })
	s.wg.Go(func() { s.handOffLoop(ctx) })
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-up.C():
			s.peerUp(ev.(kernelapi.PeerEvent).Address)
		case ev := <-down.C():
			s.peerDown(ev.(kernelapi.PeerEvent).Address)
		case m := <-ep.Inbox():
			s.serve(ctx, m)
		}
	}
}

// peerUp notes a session with a peer, pushes it what waits for it and
// hands it the envelopes it is closer to than this node.
func (s *Service) peerUp(a identity.Address) {
	s.mu.Lock()
	s.peers[a]++
	s.mu.Unlock()
	s.pushFor(a)
	s.hand.peerUp(a)
	s.tryBackground(func() { s.deliverTo(a) }) // else at its next attempt
}

// peerDown notes the end of a session with a peer.
func (s *Service) peerDown(a identity.Address) {
	s.mu.Lock()
	if s.peers[a]--; s.peers[a] <= 0 {
		delete(s.peers, a)
	}
	s.mu.Unlock()
	s.parts.forget(a)
}

// connected reports whether the node has a session with a.
func (s *Service) connected(a identity.Address) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[a] > 0
}

// serve starts the work of a message from the inbox; it never blocks.
func (s *Service) serve(ctx context.Context, m *router.Msg) {
	if err := m.Context().Err(); err != nil {
		m.Reply(nil, err)
		return
	}
	mctx := m.Bind(ctx)
	if f, ok := m.Body.(kernelapi.Frame); ok {
		if !s.tryWork(func() { s.frame(mctx, f); m.Reply(nil, nil) }) {
			m.Reply(nil, nil)
			s.refuseBusy(f)
		}
		return
	}
	s.wg.Go(func() { m.Reply(s.request(mctx, m.Body)) })
}

// tryWork runs fn on a goroutine of its own if a work token is free, and
// reports whether it was.
func (s *Service) tryWork(fn func()) bool {
	select {
	case s.work <- struct{}{}:
	default:
		return false
	}
	s.wg.Go(func() {
		defer func() { <-s.work }()
		fn()
	})
	return true
}

// wake tells the delivery loop that the outbox has new work.
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
