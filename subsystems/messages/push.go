package messages

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/wire"
)

// maxBackground bounds the background jobs of received envelopes
// (receipts, deletions at relays) running at once; more wait their turn.
const maxBackground = 32

// tryBackground runs fn on a goroutine of its own if fewer than
// maxBackground background jobs run, and drops it otherwise: for work a
// peer can ask for at no cost (answering a duplicate), which must not pile
// up.
func (s *Service) tryBackground(fn func()) {
	select {
	case s.bg <- struct{}{}:
	default:
		return
	}
	s.wg.Go(func() {
		defer func() { <-s.bg }()
		fn()
	})
}

// deletion is the msg_delete of a letter: its id and deletion secret.
func deletion(l *envelope.Letter) Delete {
	return Delete{ID: hex.EncodeToString(l.ID[:]), Secret: l.Secret[:]}
}

// background runs fn on a goroutine of its own, under the service's
// context, once fewer than maxBackground such jobs run.
func (s *Service) background(fn func()) {
	s.wg.Go(func() {
		select {
		case s.bg <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.bg }()
		fn()
	})
}

// pushFor makes sure the envelopes the relay holds for addr are being
// pushed to it. A recipient has one pusher at a time, which sends one
// envelope part at a time and waits for its answer: that is the flow
// control that keeps the session's queue short, so that pings and other
// frames pass between parts. A pusher asked again while it runs looks
// once more for new envelopes when it is done.
func (s *Service) pushFor(addr identity.Address) {
	s.mu.Lock()
	if _, ok := s.pushing[addr]; ok {
		s.pushing[addr] = true
		s.mu.Unlock()
		return
	}
	s.pushing[addr] = false
	s.mu.Unlock()
	s.wg.Go(func() {
		sent := make(map[[16]byte]bool)
		for {
			select {
			case s.push <- struct{}{}:
				s.pushWaiting(s.ctx, addr, sent)
				<-s.push
			case <-s.ctx.Done():
			}
			s.mu.Lock()
			again := s.pushing[addr] && s.ctx.Err() == nil
			if !again {
				delete(s.pushing, addr)
			} else {
				s.pushing[addr] = false
			}
			s.mu.Unlock()
			if !again {
				return
			}
		}
	})
}

// pushWaiting pushes the envelopes held for addr to it, oldest first,
// skipping those in sent (pushed already by this pusher) and adding those
// it pushes. It stops when the session is gone.
func (s *Service) pushWaiting(ctx context.Context, addr identity.Address, sent map[[16]byte]bool) {
	waiting, err := s.relay.ForRecipient(addr)
	if err != nil {
		s.log.Warn("messages: relay store not read", "err", err)
		return
	}
	for _, w := range waiting {
		if sent[w.ID] {
			continue
		}
		env, err := s.relay.Get(w.ID)
		if err != nil {
			continue // deleted or expired meanwhile
		}
		r, err := s.pushPatiently(ctx, addr, hex.EncodeToString(w.ID[:]), env.Envelope)
		if err != nil {
			s.log.Debug("messages: push to recipient failed", "peer", addr.String(), "err", err)
			return // gone: it fetches when it is back
		}
		sent[w.ID] = true
		if r.Status == StatusRefused {
			s.log.Debug("messages: recipient refused an envelope", "peer", addr.String(), "code", r.Code)
		}
	}
}

// Waits after a busy answer, doubling.
const (
	busyWait    = 50 * time.Millisecond
	maxBusyWait = 2 * time.Second
	maxBusy     = 8 // busy answers in a row before giving up
)

// pushPatiently is pushTo, tried again with backoff while the kernel (a
// full send queue) or the peer (error 9050) is busy.
func (s *Service) pushPatiently(ctx context.Context, to identity.Address, id string, raw []byte) (Response, error) {
	wait := busyWait
	for n := 0; ; n++ {
		r, err := s.pushTo(ctx, to, id, raw)
		if !busy(err) || n == maxBusy {
			return r, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return r, err
		}
		wait = min(2*wait, maxBusyWait)
	}
}

// busy reports whether err says that this node or the peer was too busy
// to take a frame, which is worth trying again.
func busy(err error) bool {
	var pe *wire.ProtocolError
	return errors.Is(err, kernelapi.ErrBusy) || errors.As(err, &pe) && pe.Code == wire.CodeBusy
}

// deleteAt shows the deletion secret of l to one relay.
func (s *Service) deleteAt(ctx context.Context, a identity.Address, d Delete) {
	if err := s.callAt(ctx, a, NameDelete, d); err != nil {
		s.log.Debug("messages: msg_delete not answered", "peer", a.String(), "err", err)
	}
}

// callAt reaches the node a and sends it a request frame.
func (s *Service) callAt(ctx context.Context, a identity.Address, name string, data any) error {
	rctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	if _, err := s.ep.Call(rctx, dhtapi.Endpoint, dhtapi.ReachRequest{Address: a}); err != nil {
		return err
	}
	_, err := s.ep.Call(rctx, kernelapi.Endpoint, kernelapi.CallRequest{To: a, Name: name, Data: data})
	return err
}
