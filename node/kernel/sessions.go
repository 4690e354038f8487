package kernel

import (
	"context"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/wire"
)

// serve runs s, an inbound session or one dialled to via.
func (k *Kernel) serve(ctx context.Context, s *peer.Session, inbound bool, via string) {
	k.serveKept(ctx, s, inbound, via, nil, false)
}

// serveKept registers s (resolving a duplicate), runs it until it ends
// and unregisters it. via is the host:port an outbound s was dialled to.
// kept, if not nil, receives the session the node keeps with this peer (s
// or the older one), or nil; target marks that session as one with a
// --connect peer.
func (k *Kernel) serveKept(ctx context.Context, s *peer.Session, inbound bool, via string, kept chan<- *peer.Session, target bool) {
	ctx, cancel := context.WithCancel(ctx) // the session's: frames to subsystems carry it
	defer cancel()
	keep, drop := k.register(ctx, s, inbound, via, target)
	if kept != nil {
		kept <- keep
	}
	if drop != nil {
		k.plog.Debug("kernel: duplicate session closed", "peer", s.Peer().String())
		drop.CloseWithError(wire.CodeDuplicateSession, "")
	}
	if keep != s {
		// s never runs: count its traffic once it has closed.
		<-s.Done()
		k.end(s)
		return
	}
	ev := kernelapi.PeerEvent{PeerInfo: peerInfo(s, inbound)}
	k.cfg.Router.Publish(kernelapi.TopicPeerUp, ev)
	k.plog.Info("peer connected", "peer", s.Peer().String(), "remote", s.Info().RemoteAddr.String(), "inbound", inbound)
	err := s.Run(ctx)
	// A session replaced by a newer one with the same peer ends without
	// announcing the peer gone: it is not.
	if k.end(s) {
		k.cfg.Router.Publish(kernelapi.TopicPeerDown, ev)
	}
	k.plog.Info("peer disconnected", "peer", s.Peer().String(), "err", err)
}

// register adds s, unless the node has a session with the same peer: of
// the two it keeps the one dialled by the node with the lesser address (or
// the newer, if the same node dialled both, its old one being stale). The
// session kept is marked as one with a --connect peer if target.
func (k *Kernel) register(ctx context.Context, s *peer.Session, inbound bool, via string, target bool) (keep, drop *peer.Session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live[s] = struct{}{}
	old, ok := k.sessions[s.Peer()]
	if !ok || old.evicted { // none, or one closing to make room
		c := &conn{s: s, ctx: ctx, inbound: inbound, via: via, kept: target}
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
		c := &conn{s: s, ctx: ctx, inbound: inbound, via: via, kept: target || old.kept}
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
	return k.session(addr, true)
}

// session is Session; use says whether to count it as a use.
func (k *Kernel) session(addr identity.Address, use bool) *peer.Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[addr]; ok && !c.evicted {
		if use {
			c.touch()
		}
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

// outboundIdle is how long an outbound session must have been unused
// before it may be closed to make room: lookups dial many nodes in a
// short time, and an outbound slot must come free soon.
const outboundIdle = 5 * time.Second

// evictIdleOutbound closes the least recently used outbound session that
// is idle and not with a --connect peer or pinned, making room for a new
// one. It reports whether it closed one. k.mu must be held.
func (k *Kernel) evictIdleOutbound() bool {
	var victim *conn
	recent := time.Now().Add(-min(k.evictIdle(), outboundIdle)).UnixNano()
	for addr, c := range k.sessions {
		// Not a session a subsystem keeps (a talk, a table node), in
		// use a moment ago, or with a call in flight (a lookup's).
		if c.inbound || c.evicted || c.kept || k.pinned(addr) || c.used.Load() > recent || c.s.Stats().Pending > 0 {
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
