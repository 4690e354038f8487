package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

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
	// Loopback is exempt: several nodes on one machine are a local
	// network, not one peer taking every slot.
	if k.perIP[ip] >= k.cfg.MaxPerIP && !ip.IsLoopback() {
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

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
