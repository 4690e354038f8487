package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Defaults of Config.
const (
	DefaultMaxHandshakes = 16
	DefaultIPv6Prefix    = 64
	DefaultEvictIdle     = 30 * time.Second
)

// A handshake is an inbound connection not yet authenticated.
type handshake struct {
	start  time.Time
	cancel context.CancelFunc
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
		hctx, h, why := k.admitHandshake(ctx, ip)
		if why != "" {
			k.refuse(ctx, c, ip, why)
			continue
		}
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			defer k.releaseIP(ip)
			k.serveInbound(ctx, hctx, c, h)
		}()
	}
}

// serveInbound runs the handshake of an inbound connection, within hctx,
// then the session if there is room for it.
func (k *Kernel) serveInbound(ctx, hctx context.Context, c *tls.Conn, h *handshake) {
	s, err := peer.Handshake(hctx, c, k.sessionConfig())
	displaced := k.endHandshake(h)
	if err != nil {
		k.countUnserved(c)
		k.plog.Debug("kernel: inbound handshake failed", "remote", c.RemoteAddr().String(), "displaced", displaced, "err", err)
		return
	}
	if why := k.admitSession(s); why != "" {
		k.plog.Info("kernel: peer refused", "ip", remoteIP(c.RemoteAddr()), "peer", s.Peer().String(), "why", why)
		s.CloseWithError(wire.CodeTooManyConnections, why)
		<-s.Done()
		k.countUnserved(c)
		return
	}
	defer k.releaseInbound()
	k.serve(ctx, s, true, "")
}

// maxRefusals bounds the connections refused with error 9100 at a time.
// Beyond it, a connection the node has no room for is closed at once,
// before TLS, so that a flood of connections costs few handshakes.
const maxRefusals = 4

// refuse tells the peer on c, which the node has no room for, why (error
// 9100) if few other refusals are under way, and closes c.
func (k *Kernel) refuse(ctx context.Context, c *tls.Conn, ip netip.Addr, why string) {
	k.mu.Lock()
	tell := k.refusing < maxRefusals
	if tell {
		k.refusing++
	}
	k.mu.Unlock()
	k.plog.Info("kernel: peer refused", "ip", ip, "why", why)
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
			k.plog.Debug("kernel: refusing peer", "remote", c.RemoteAddr().String(), "err", err)
		}
		k.countUnserved(c)
	}()
}

// admitHandshake reserves room for the handshake of an inbound connection
// from ip, or says why there is none: the peer's IP address (or IPv6
// prefix) has max-per-ip connections, or max-inbound sessions are open
// and none may make room. When max-handshakes are under way, the oldest
// is cut short to make room: a peer completes its handshake in a few
// round trips, so connections that only hold a slot cannot keep it out.
// The handshake must run within hctx.
func (k *Kernel) admitHandshake(ctx context.Context, ip netip.Addr) (hctx context.Context, h *handshake, why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := k.ipKey(ip)
	// Loopback is exempt: several nodes on one machine are a local
	// network, not one peer taking every slot.
	if k.perIP[key] >= k.cfg.MaxPerIP && !ip.IsLoopback() {
		return nil, nil, fmt.Sprintf("no room for another session from %s (max-per-ip)", key)
	}
	if k.inbound >= k.cfg.MaxInbound && k.evictableInbound() == nil {
		return nil, nil, "no room for another inbound session (max-inbound)"
	}
	if len(k.handshakes) >= k.maxHandshakes() {
		var oldest *handshake
		for o := range k.handshakes {
			if oldest == nil || o.start.Before(oldest.start) {
				oldest = o
			}
		}
		delete(k.handshakes, oldest)
		oldest.cancel()
	}
	hctx, cancel := context.WithCancel(ctx)
	h = &handshake{start: time.Now(), cancel: cancel}
	k.handshakes[h] = struct{}{}
	k.perIP[key]++
	return hctx, h, ""
}

// endHandshake releases the room of h. It reports whether h was cut
// short to make room for another.
func (k *Kernel) endHandshake(h *handshake) (displaced bool) {
	h.cancel()
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.handshakes[h]
	delete(k.handshakes, h)
	return !ok
}

// admitSession reserves room for the inbound session s, closing the least
// useful inbound session if max-inbound are open, or says why there is
// no room. A session with a peer the node has a session with needs no
// room: one of the two ends.
func (k *Kernel) admitSession(s *peer.Session) (why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.sessions[s.Peer()]; (ok && !c.evicted) || k.inbound < k.cfg.MaxInbound {
		k.inbound++
		return ""
	}
	v := k.evictableInbound()
	if v == nil {
		return "no room for another inbound session (max-inbound)"
	}
	v.evicted = true // it releases its room when it has ended
	v.s.CloseWithError(wire.CodeTooManyConnections, "closed to make room for another peer (max-inbound)")
	k.plog.Info("kernel: idle inbound session closed to make room", "peer", v.s.Peer().String(), "for", s.Peer().String())
	k.inbound++
	return ""
}

func (k *Kernel) releaseInbound() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.inbound--
}

// evictableInbound returns the least recently used inbound session that
// may make room for another, or nil: one idle for EvictIdle (no frame
// for a subsystem, no use by one), not with a --connect peer, and not
// pinned by a subsystem (see kernelapi.PinRequest). k.mu must be held.
func (k *Kernel) evictableInbound() *conn {
	idle := time.Now().Add(-k.evictIdle()).UnixNano()
	var victim *conn
	for addr, c := range k.sessions {
		if !c.inbound || c.evicted || c.kept || c.used.Load() > idle || k.pinned(addr) {
			continue
		}
		if victim == nil || c.used.Load() < victim.used.Load() {
			victim = c
		}
	}
	return victim
}

// pin records that the endpoint from does, or no longer does, use the
// sessions with addr.
func (k *Kernel) pin(from string, addr identity.Address, pinned bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !pinned {
		delete(k.pins[addr], from)
		if len(k.pins[addr]) == 0 {
			delete(k.pins, addr)
		}
		return
	}
	if k.pins[addr] == nil {
		k.pins[addr] = make(map[string]bool)
	}
	k.pins[addr][from] = true
}

// unpinAll drops the pins of the endpoint from.
func (k *Kernel) unpinAll(from string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for a, m := range k.pins {
		delete(m, from)
		if len(m) == 0 {
			delete(k.pins, a)
		}
	}
}

// Pinned reports whether a subsystem still registered on the router pins
// the sessions with addr (see kernelapi.PinRequest).
func (k *Kernel) Pinned(addr identity.Address) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pinned(addr)
}

// pinned reports whether an endpoint still registered on the router pins
// the sessions with addr. k.mu must be held.
func (k *Kernel) pinned(addr identity.Address) bool {
	for from := range k.pins[addr] {
		if k.cfg.Router.Registered(from) {
			return true
		}
	}
	return false
}

func (k *Kernel) releaseIP(ip netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := k.ipKey(ip)
	if k.perIP[key]--; k.perIP[key] <= 0 {
		delete(k.perIP, key)
	}
}

// ipKey is what max-per-ip counts ip under: the address for IPv4, its
// prefix of IPv6Prefix bits for IPv6, as one site commonly holds a /64.
func (k *Kernel) ipKey(ip netip.Addr) netip.Prefix {
	return ipPrefix(ip, k.cfg.IPv6Prefix)
}

func ipPrefix(ip netip.Addr, v6bits int) netip.Prefix {
	if !ip.Is6() {
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	if v6bits <= 0 || v6bits > 128 {
		v6bits = DefaultIPv6Prefix
	}
	p, _ := ip.Prefix(v6bits)
	return p
}

func (k *Kernel) maxHandshakes() int {
	if k.cfg.MaxHandshakes > 0 {
		return k.cfg.MaxHandshakes
	}
	return DefaultMaxHandshakes
}

func (k *Kernel) evictIdle() time.Duration {
	if k.cfg.EvictIdle > 0 {
		return k.cfg.EvictIdle
	}
	return DefaultEvictIdle
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
