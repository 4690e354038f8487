package messages

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// Timing of delivery.
const (
	pollEvery    = 30 * time.Second // the outbox is looked at this often, and when woken
	fetchEvery   = 5 * time.Minute  // the node asks its relays for what waits for it
	firstRetry   = time.Minute      // a message is published again after this, doubling
	maxRetry     = time.Hour        // up to this
	reachTimeout = 20 * time.Second // finding and dialling a recipient or relay
	mintTimeout  = 10 * time.Minute
	maxSending   = 4 // messages delivered at once
	maxPushes    = 4 // copies pushed at once for one message
)

// deliverLoop delivers the outbox's due messages, and asks the relays for
// what waits for this node, until ctx ends.
func (s *Service) deliverLoop(ctx context.Context) {
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	var lastFetch time.Time
	for {
		if now := s.cfg.Now(); now.Sub(lastFetch) >= fetchEvery {
			lastFetch = now
			s.wg.Go(func() { s.fetch(ctx) })
		}
		s.deliverDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-poll.C:
		}
	}
}

// deliverDue starts delivering the messages due now that are not being
// delivered already, as long as fewer than maxSending are; the others
// wait for the next round, which a delivery that ends starts (wake). It
// does not wait for the deliveries: a message that takes long (minting,
// an unreachable recipient) holds up no other.
func (s *Service) deliverDue(ctx context.Context) {
	due, err := s.cfg.DB.Outbox().Due(s.cfg.Now())
	if err != nil {
		s.log.Warn("messages: outbox not read", "err", err)
		return
	}
	for _, m := range due {
		if !s.startSending(m.ID) {
			continue
		}
		select {
		case s.sending <- struct{}{}:
		default:
			s.endSending(m.ID)
			return
		}
		s.wg.Go(func() {
			defer func() {
				<-s.sending
				s.endSending(m.ID)
				s.wake()
			}()
			s.deliver(ctx, m.ID)
		})
	}
}

// startSending notes that message id is being delivered, and reports
// whether it was not already.
func (s *Service) startSending(id [16]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[id] {
		return false
	}
	s.inFlight[id] = true
	return true
}

// endSending notes that message id is no longer being delivered.
func (s *Service) endSending(id [16]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, id)
}

// deliver makes one attempt at a message: it mints its stamp if it has
// none, then hands it to the recipient or to the relays near it.
func (s *Service) deliver(ctx context.Context, id [16]byte) {
	m, err := s.cfg.DB.Outbox().Get(id)
	if err != nil || m.State.Final() {
		return
	}
	if !m.Expires.After(s.cfg.Now()) {
		s.setState(id, func(m *store.OutMsg) { m.State = store.OutExpired })
		return
	}
	env, err := envelope.Parse(m.Envelope, 0)
	if err != nil {
		s.setState(id, func(m *store.OutMsg) { m.State, m.Reason = store.OutRefused, "its envelope is damaged: "+err.Error() })
		return
	}
	if env.Stamp == "" {
		if env, err = s.stamp(ctx, id, env); err != nil {
			s.log.Debug("messages: stamp not minted", "err", err)
			s.retry(id, nil)
			return
		}
	}
	raw, err := env.MarshalBinary()
	if err != nil {
		s.log.Warn("messages: envelope not encoded", "err", err)
		return
	}
	// The stamped envelope is kept with the attempt's outcome.
	stamped := func(m *store.OutMsg) {
		if !bytes.Equal(m.Envelope, raw) {
			m.Envelope = raw
		}
	}
	to := identity.Address(env.Recipient)
	direct, relays, refusal := s.place(ctx, to, hex.EncodeToString(id[:]), raw)
	if refusal != "" {
		s.setState(id, func(m *store.OutMsg) { m.State, m.Reason = store.OutRefused, refusal })
		return
	}
	if !direct && relays == 0 {
		s.retry(id, stamped)
		return
	}
	s.setState(id, func(m *store.OutMsg) {
		stamped(m)
		if m.State.Final() {
			return // the receipt came first
		}
		m.Direct = m.Direct || direct
		m.Relays = max(m.Relays, relays)
		m.Attempts++
		if m.Receipt {
			// A receipt is placed once: its sender asks no receipt of it.
			m.State = store.OutDelivered
			return
		}
		m.State = store.OutSent
		m.NextAttempt = s.next(m)
	})
}

// backoff is the wait before the next attempt after n attempts (n ≥ 1):
// firstRetry, doubling up to maxRetry.
func backoff(n int) time.Duration {
	d := firstRetry
	for i := 1; i < n && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// next returns the time of the next attempt at m after its m.Attempts:
// after the backoff, or when it expires if that is sooner, so that it is
// marked expired then.
func (s *Service) next(m *store.OutMsg) time.Time {
	t := s.cfg.Now().Add(backoff(m.Attempts))
	if m.Expires.Before(t) {
		return m.Expires
	}
	return t
}

// retry plans the next attempt at a message that could not be placed;
// also, if not nil, changes it (keeps its stamped envelope).
func (s *Service) retry(id [16]byte, also func(m *store.OutMsg)) {
	s.setState(id, func(m *store.OutMsg) {
		if m.State.Final() {
			return
		}
		if also != nil {
			also(m)
		}
		m.Attempts++
		m.NextAttempt = s.next(m)
	})
}

// setState updates a message of the outbox and tells the consoles of a
// new state.
func (s *Service) setState(id [16]byte, fn func(m *store.OutMsg)) {
	var before, after store.OutState
	m, err := s.cfg.DB.Outbox().Update(id, func(m *store.OutMsg) error {
		before = m.State
		fn(m)
		after = m.State
		return nil
	})
	if err != nil {
		s.log.Warn("messages: outbox not updated", "err", err)
		return
	}
	if before != after && !m.Receipt {
		s.cfg.Router.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindState, ID: hex.EncodeToString(id[:]), State: string(after)})
	}
}

// stamp mints the stamp of env through the miner pool. The stamped
// envelope is kept with the outcome of the attempt (one durable write, not
// three: a stamp lost in a crash is minted again); meanwhile the message
// shows as minting (see minting).
func (s *Service) stamp(ctx context.Context, id [16]byte, env *envelope.Envelope) (*envelope.Envelope, error) {
	s.setMinting(id, true)
	defer s.setMinting(id, false)
	deadline := time.Now().Add(mintTimeout)
	mctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	res, err := router.CallAs[minerapi.MintResult](mctx, s.ep, minerapi.Endpoint, minerapi.MintRequest{
		Resource: env.Resource(), Bits: envelope.StampBits(env.BodySize(), s.cfg.Bits),
		Priority: minerapi.Background, Deadline: deadline,
	})
	if err != nil {
		return nil, err
	}
	env.Stamp = res.Stamp
	return env, nil
}

// setMinting notes whether a message's stamp is being minted, and tells
// the consoles.
func (s *Service) setMinting(id [16]byte, on bool) {
	s.mu.Lock()
	if on {
		s.minting[id] = true
	} else {
		delete(s.minting, id)
	}
	s.mu.Unlock()
	if on {
		s.cfg.Router.Publish(msgapi.TopicEvents, msgapi.Event{Kind: msgapi.KindState, ID: hex.EncodeToString(id[:]), State: msgapi.StateMinting})
	}
}

// isMinting reports whether a message's stamp is being minted.
func (s *Service) isMinting(id [16]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minting[id]
}

// place hands the envelope raw (id) to its recipient if it can be reached,
// and else to up to Replicas of the nodes closest to the recipient's id.
// It reports whether the recipient took it, how many relays did, and the
// recipient's reason if it refused the envelope for good.
func (s *Service) place(ctx context.Context, to identity.Address, id string, raw []byte) (direct bool, relays int, refusal string) {
	rctx, cancel := context.WithTimeout(ctx, reachTimeout)
	_, err := router.CallAs[kernelapi.PeerInfo](rctx, s.ep, dhtapi.Endpoint, dhtapi.ReachRequest{Address: to})
	cancel()
	if err == nil {
		r, err := s.pushTo(ctx, to, id, raw)
		switch {
		case err != nil:
			s.log.Debug("messages: direct delivery failed", "peer", to.String(), "err", err)
		case r.Status == StatusAccepted || r.Status == StatusDuplicate:
			return true, 0, ""
		case r.Code == CodeFormat || r.Code == CodeTooLarge:
			return false, 0, fmt.Sprintf("the recipient refused it: %s (%s)", r.Code, r.Reason)
		}
	}
	return false, s.pushCopies(ctx, s.closest(ctx, to.ID(), to), id, raw), ""
}

// closest returns up to Replicas addresses of the nodes closest to target,
// closest first, neither this node nor any of except.
func (s *Service) closest(ctx context.Context, target identity.ID, except ...identity.Address) []identity.Address {
	lctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	res, err := router.CallAs[dhtapi.LookupResult](lctx, s.ep, dhtapi.Endpoint, dhtapi.LookupRequest{Target: target})
	if err != nil {
		s.log.Debug("messages: lookup failed", "err", err)
		return nil
	}
	var out []identity.Address
	for _, n := range res.Nodes {
		if len(out) == s.cfg.Replicas {
			break
		}
		if n.Address != s.cfg.Identity.Address && !slices.Contains(except, n.Address) {
			out = append(out, n.Address)
		}
	}
	return out
}

// pushCopies is pushCopy to each of nodes at once; it returns how many
// took the envelope.
func (s *Service) pushCopies(ctx context.Context, nodes []identity.Address, id string, raw []byte) int {
	var n atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxPushes)
	for _, a := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if s.pushCopy(ctx, a, id, raw) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// pushCopy reaches the node a and pushes the envelope to it; it reports
// whether a holds it now.
func (s *Service) pushCopy(ctx context.Context, a identity.Address, id string, raw []byte) bool {
	rctx, cancel := context.WithTimeout(ctx, reachTimeout)
	_, err := router.CallAs[kernelapi.PeerInfo](rctx, s.ep, dhtapi.Endpoint, dhtapi.ReachRequest{Address: a})
	cancel()
	if err != nil {
		return false
	}
	r, err := s.pushTo(ctx, a, id, raw)
	if err != nil {
		s.log.Debug("messages: copy not placed", "peer", a.String(), "err", err)
		return false
	}
	return r.Status == StatusAccepted || r.Status == StatusDuplicate
}

// pushTo pushes the envelope to a peer with a session.
func (s *Service) pushTo(ctx context.Context, to identity.Address, id string, raw []byte) (Response, error) {
	pctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return push(pctx, s.ep, to, id, raw)
}

// queueReceipt puts the receipt of l in the outbox.
func (s *Service) queueReceipt(l *envelope.Letter) error {
	r, err := s.receipt(l)
	if err != nil {
		return err
	}
	if _, err := s.cfg.DB.Outbox().Add(r); err != nil {
		return err
	}
	s.wake()
	return nil
}

// receipt returns the outbox record of the receipt of l.
func (s *Service) receipt(l *envelope.Letter) (store.OutMsg, error) {
	now := s.cfg.Now()
	env, err := envelope.NewReceipt(s.cfg.Identity, l, now, now.Add(s.cfg.Expiry))
	if err != nil {
		return store.OutMsg{}, err
	}
	raw, err := env.MarshalBinary()
	if err != nil {
		return store.OutMsg{}, err
	}
	return store.OutMsg{
		ID: env.ID, To: l.From.String(), Envelope: raw, SecretHash: env.SecretHash, Receipt: true,
		State: store.OutQueued, NextAttempt: now, Created: now, Expires: env.Expires,
	}, nil
}

// dropCopies shows the deletion secret of l to the relays that may hold
// copies of it: the nodes closest to this node's id, and the peer it came
// from if that is not its sender.
func (s *Service) dropCopies(ctx context.Context, from identity.Address, l *envelope.Letter) {
	s.dropCopiesOf(ctx, from, l.From, deletion(l))
}

// dropCopiesOf is dropCopies of the letter from sender whose msg_delete is
// d (without the letter, which may be megabytes).
func (s *Service) dropCopiesOf(ctx context.Context, from, sender identity.Address, d Delete) {
	nodes := s.closest(ctx, s.cfg.Identity.Address.ID(), sender)
	if from != sender && !slices.Contains(nodes, from) {
		nodes = append(nodes, from)
	}
	var wg sync.WaitGroup
	for _, a := range nodes {
		wg.Go(func() { s.deleteAt(ctx, a, d) })
	}
	wg.Wait()
}

// fetch asks the nodes closest to this node's id for what they hold for
// it; they push it.
func (s *Service) fetch(ctx context.Context) {
	for _, a := range s.closest(ctx, s.cfg.Identity.Address.ID()) {
		if err := s.callAt(ctx, a, NameFetch, nil); err != nil {
			s.log.Debug("messages: msg_fetch not answered", "peer", a.String(), "err", err)
		}
	}
}

// deliverTo makes an attempt now at the messages waiting for a peer that
// has just connected, whatever their backoff: delivery within seconds of
// the recipient coming online.
func (s *Service) deliverTo(a identity.Address) {
	out, err := s.cfg.DB.Outbox().List()
	if err != nil {
		s.log.Warn("messages: outbox not read", "err", err)
		return
	}
	to := a.String()
	for _, m := range out {
		if m.To == to && !m.State.Final() && s.startSending(m.ID) {
			s.deliver(s.ctx, m.ID)
			s.endSending(m.ID)
		}
	}
}
