package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

// sessionNames are the message names a session serves itself; no
// subsystem may register for them.
var sessionNames = map[string]bool{
	wire.NameHello: true, wire.NameID: true, wire.NameIDOK: true, wire.NamePing: true,
	wire.NamePong: true, wire.NameError: true, wire.NameQuit: true,
}

// registerNames makes the endpoint from the handler of the frames named
// names: all of them, or none if another live endpoint holds one. An
// endpoint registers when its subsystem (re)starts: the pins of an earlier
// run under the same id are dropped, as that run's state is gone.
func (k *Kernel) registerNames(from string, names []string) error {
	k.hmu.Lock()
	defer k.hmu.Unlock()
	for _, n := range names {
		if n == "" || sessionNames[n] {
			return fmt.Errorf("kernel: %q is not a name a subsystem can serve", n)
		}
		if h, ok := k.handlers[n]; ok && h != from && k.cfg.Router.Registered(h) {
			return fmt.Errorf("kernel: frame %q: %w (%s)", n, kernelapi.ErrNameTaken, h)
		}
	}
	for _, n := range names {
		k.handlers[n] = from
	}
	k.unpinAll(from)
	return nil
}

// handle routes a frame the session does not serve itself to the endpoint
// registered for its name. It runs on the session's reading goroutine and
// never blocks: a handler whose inbox is full, or that is restarting,
// costs the peer a busy error (9050).
func (k *Kernel) handle(s *peer.Session, e wire.Envelope) {
	// A frame alone is no use of the session (see evictIdleInbound): a
	// peer could keep an idle session by sending garbage. A subsystem's
	// answer or request is.
	ctx := k.frameCtx(s)
	if e.Name == wire.NameError {
		return // an error frame answering nothing of ours: never answer it
	}
	k.hmu.RLock()
	to, ok := k.handlers[e.Name]
	k.hmu.RUnlock()
	if !ok {
		if slices.Contains(k.cfg.Names, e.Name) {
			s.SendError(ctx, e, wire.CodeBusy, "the service of "+e.Name+" is starting: try again later")
			return
		}
		s.SendError(ctx, e, wire.CodeUnknownCommand, fmt.Sprintf("unknown command %q", e.Name))
		return
	}
	f := kernelapi.Frame{From: s.Peer(), Remote: s.Info().RemoteAddr, Envelope: e}
	err := k.api.Load().Send(ctx, to, f)
	switch {
	case err == nil:
	case errors.Is(err, router.ErrInboxFull):
		s.SendError(ctx, e, wire.CodeBusy, to+" service busy: try again later")
	default:
		s.SendError(ctx, e, wire.CodeBusy, to+" service unavailable: try again later")
	}
}

// frameCtx returns the context of frames from s: it ends with the
// session.
func (k *Kernel) frameCtx(s *peer.Session) context.Context {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[s.Peer()]; ok && c.s == s {
		return c.ctx
	}
	return k.runCtx
}

// answer runs fn on the registered session with a peer, for a subsystem's
// answer or frame.
func (k *Kernel) answer(to identity.Address, what string, fn func(s *peer.Session) error) error {
	return k.answerUsing(to, true, what, fn)
}

// answerUsing is answer; use counts it as a use of the session (see
// Connect and the evictions): an error frame that refuses a peer's
// request does not.
func (k *Kernel) answerUsing(to identity.Address, use bool, what string, fn func(s *peer.Session) error) error {
	s := k.session(to, use)
	if s == nil {
		return fmt.Errorf("%s to %s: %w", what, to, kernelapi.ErrNoSession)
	}
	return localBusy(fn(s))
}

// localBusy marks the errors of this node's own session limits as
// kernelapi.ErrBusy: they say nothing about the peer.
func localBusy(err error) error {
	if errors.Is(err, peer.ErrQueueFull) || errors.Is(err, peer.ErrTooManyCalls) {
		return fmt.Errorf("%w: %w", kernelapi.ErrBusy, err)
	}
	return err
}
