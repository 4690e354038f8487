package messages

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/store"
)

// Bounds of one hand-off run.
const (
	maxHandOffRecipients = 16  // recipients looked up by a periodic run
	maxHandOffCopies     = 256 // copies pushed by one run
	maxHanded            = 1 << 16
)

// handOff is the state of the relay's hand-off of stored envelopes to
// nodes closer to their recipients than this node, which churn brings:
// peers that came up since the last run, where the periodic run resumes,
// and the copies handed already (so that they are not handed again).
type handOff struct {
	kick chan struct{}

	mu     sync.Mutex
	up     map[identity.Address]bool
	next   int // the recipient the next periodic run starts at
	handed map[handKey]bool
}

type handKey struct {
	id [16]byte
	to identity.Address
}

func newHandOff() *handOff {
	return &handOff{kick: make(chan struct{}, 1), up: make(map[identity.Address]bool), handed: make(map[handKey]bool)}
}

// peerUp notes a peer that came up, for the next run.
func (h *handOff) peerUp(a identity.Address) {
	h.mu.Lock()
	h.up[a] = true
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// takeUp returns the peers that came up since it was last called.
func (h *handOff) takeUp() []identity.Address {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]identity.Address, 0, len(h.up))
	for a := range h.up {
		out = append(out, a)
	}
	clear(h.up)
	return out
}

// claim reports whether the copy of id for to has not been handed yet,
// and notes it as handed.
func (h *handOff) claim(id [16]byte, to identity.Address) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := handKey{id, to}
	if h.handed[k] {
		return false
	}
	if len(h.handed) >= maxHanded {
		clear(h.handed) // at worst a copy is offered twice: a duplicate
	}
	h.handed[k] = true
	return true
}

// unclaim forgets a copy that could not be handed.
func (h *handOff) unclaim(id [16]byte, to identity.Address) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.handed, handKey{id, to})
}

// handOffLoop hands stored envelopes to closer nodes: every HandOffEvery
// after a lookup of their recipients, and to each peer that comes up.
func (s *Service) handOffLoop(ctx context.Context) {
	every := s.cfg.HandOffEvery
	if every <= 0 {
		every = DefaultHandOffEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.handOffRound(ctx)
		case <-s.hand.kick:
			s.handOffToPeers(ctx, s.hand.takeUp())
		}
	}
}

// closer reports whether a is closer to target than b (XOR distance).
func closer(a, b identity.Address, target identity.ID) bool {
	ia, ib := a.ID(), b.ID()
	for i := range target {
		da, db := ia[i]^target[i], ib[i]^target[i]
		if da != db {
			return da < db
		}
	}
	return false
}

// handOffToPeers hands each peer the envelopes it is closer to than this
// node, except its own (those are pushed to it as their recipient).
func (s *Service) handOffToPeers(ctx context.Context, peers []identity.Address) {
	if len(peers) == 0 {
		return
	}
	held, err := s.relay.All()
	if err != nil {
		s.log.Warn("messages: relay store not read", "err", err)
		return
	}
	budget := maxHandOffCopies
	for _, env := range held {
		target := identity.Address(env.Recipient).ID()
		for _, p := range peers {
			if budget == 0 || ctx.Err() != nil {
				return
			}
			if p == identity.Address(env.Recipient) || !closer(p, s.cfg.Identity.Address, target) {
				continue
			}
			if s.handCopy(ctx, env, p) {
				budget--
			}
		}
	}
}

// handOffRound is the periodic run: for up to maxHandOffRecipients of the
// recipients this node holds envelopes for, taken in turn from one run to
// the next, it looks up the nodes closest to the recipient and hands
// their envelopes to those among them closer than this node.
func (s *Service) handOffRound(ctx context.Context) {
	held, err := s.relay.All()
	if err != nil {
		s.log.Warn("messages: relay store not read", "err", err)
		return
	}
	byRcpt := make(map[[32]byte][]store.RelayEnvelope)
	var rcpts [][32]byte
	for _, env := range held {
		if byRcpt[env.Recipient] == nil {
			rcpts = append(rcpts, env.Recipient)
		}
		byRcpt[env.Recipient] = append(byRcpt[env.Recipient], env)
	}
	if len(rcpts) == 0 {
		return
	}
	// A stable order, so that the turns go round.
	slices.SortFunc(rcpts, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	s.hand.mu.Lock()
	start := s.hand.next % len(rcpts)
	n := min(len(rcpts), maxHandOffRecipients)
	s.hand.next = start + n
	s.hand.mu.Unlock()
	budget := maxHandOffCopies
	for i := range n {
		rcpt := identity.Address(rcpts[(start+i)%len(rcpts)])
		target := rcpt.ID()
		for _, a := range s.closest(ctx, target, rcpt) {
			if !closer(a, s.cfg.Identity.Address, target) {
				continue
			}
			for _, env := range byRcpt[rcpt] {
				if budget == 0 || ctx.Err() != nil {
					return
				}
				if s.handCopy(ctx, env, a) {
					budget--
				}
			}
		}
	}
}

// handCopy pushes the held envelope env to node a unless it was handed to
// a before; it reports whether it tried.
func (s *Service) handCopy(ctx context.Context, env store.RelayEnvelope, a identity.Address) bool {
	if !s.hand.claim(env.ID, a) {
		return false
	}
	full, err := s.relay.Get(env.ID)
	if err != nil {
		return false // deleted or expired meanwhile
	}
	if !s.pushCopy(ctx, a, hex.EncodeToString(env.ID[:]), full.Envelope) {
		s.hand.unclaim(env.ID, a)
	}
	return true
}
