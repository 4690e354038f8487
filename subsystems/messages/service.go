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
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the offline-message subsystem.
type Service struct {
	cfg Config
	log *slog.Logger

	// Made anew by each Run.
	ctx   context.Context // Run's: work that outlives the frame it came from
	ep    *router.Endpoint
	relay *store.Relay // the envelopes held for others
	parts *assembler
	work  chan struct{} // a token per frame being served
	kick  chan struct{} // the outbox has new work
	wg    sync.WaitGroup
}

// Limits of the service.
const (
	maxWork     = 32 // frames served at once
	maxPending  = 2  // envelopes in parts per peer at once
	inboxSize   = 256
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
	s.kick = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	s.ctx = ctx
	if err := kernelapi.Handle(ctx, s.cfg.Router, ep, Names...); err != nil {
		return fmt.Errorf("messages: %w", err)
	}
	s.wg.Go(func() { s.deliverLoop(ctx) })
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-up.C():
			p := ev.(kernelapi.PeerEvent)
			s.goWork(ctx, func() { s.pushWaiting(ctx, p.Address) })
		case ev := <-down.C():
			s.parts.forget(ev.(kernelapi.PeerEvent).Address)
		case m := <-ep.Inbox():
			s.serve(ctx, m)
		}
	}
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
			s.refuseBusy(mctx, f)
			m.Reply(nil, nil)
		}
		return
	}
	s.wg.Go(func() { m.Reply(s.request(mctx, m.Body)) })
}

// goWork runs fn on a goroutine of its own once a work token is free.
func (s *Service) goWork(ctx context.Context, fn func()) {
	s.wg.Go(func() {
		select {
		case s.work <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.work }()
		fn()
	})
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
