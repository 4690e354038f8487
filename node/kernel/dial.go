package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// ErrTooManyPeers is returned by Connect at the max-outbound limit.
var ErrTooManyPeers = fmt.Errorf("%w: too many outbound sessions (max-outbound)", kernelapi.ErrBusy)

// ErrOwnAddress is wrapped by the error of Connect to a target that is
// this node itself.
var ErrOwnAddress = errors.New("that is this node's own address")

// Connect dials target ("host:port" or "address@host:port") and returns
// the session with that peer: the new one, or the one the node already
// had with it.
//
// A target's host:port must lead to its peer: a session with the
// target's address that was not dialled to that host:port (the peer
// dialled this node, or was reached at another host:port) does not show
// that it does. If an outbound slot is free, Connect then dials the
// target all the same, to check; the check never evicts a session. If
// the TLS handshake shows that another key answers there, Connect fails
// with an error wrapping transport.ErrAddressMismatch. Otherwise it
// returns the session it had, ending the check connection with error
// 1050: a check that cannot tell (no free slot, the host:port does not
// answer, as for a peer behind NAT, or closes before TLS) is no reason
// to give up a working session. A host:port that answered with the
// address is remembered for the session and not checked again.
func (k *Kernel) Connect(ctx context.Context, target string) (*peer.Session, error) {
	return k.connect(ctx, target, false, false)
}

// connect is Connect; keep marks the session as one with a --connect peer,
// which is never evicted to make room. With verify, a check that cannot
// tell fails: the session is returned only if the peer has proved that it
// answers at the target's host:port.
func (k *Kernel) connect(ctx context.Context, target string, keep, verify bool) (*peer.Session, error) {
	hostport, expect, err := transport.ParseTarget(target)
	if err != nil {
		return nil, err
	}
	check := false // dial only to check that expect answers at hostport
	if (expect != nil && *expect == k.Address()) || k.isOwnHostPort(hostport) {
		return nil, fmt.Errorf("connect %s: %w", target, ErrOwnAddress)
	}
	if expect != nil {
		if s := k.Session(*expect); s != nil {
			if k.reaches(s, hostport) {
				k.markKept(s, keep)
				return s, nil
			}
			check = true
		}
	} else if s := k.sessionTo(hostport); s != nil {
		k.markKept(s, keep)
		return s, nil
	}
	// existing returns the session with expect, if the node still has
	// one, as the outcome of a check that could not tell.
	existing := func(why string, err error) *peer.Session {
		s := k.Session(*expect)
		if s != nil {
			k.log.Debug("kernel: address not checked", "target", target, "why", why, "err", err)
			k.markKept(s, keep)
		}
		return s
	}
	k.mu.Lock()
	runCtx := k.runCtx
	if runCtx == nil {
		k.mu.Unlock()
		return nil, fmt.Errorf("connect %s: kernel not running", target)
	}
	if k.outbound >= k.cfg.MaxOutbound {
		if check && verify {
			k.mu.Unlock()
			return nil, fmt.Errorf("connect %s: no slot to check the address: %w", target, ErrTooManyPeers)
		}
		if check {
			k.mu.Unlock()
			if s := existing("no free outbound slot", nil); s != nil {
				return s, nil
			}
			// The session ended meanwhile: dial for a new one.
			check = false
			k.mu.Lock()
		}
		if k.outbound >= k.cfg.MaxOutbound && !k.evictIdleOutbound() {
			k.mu.Unlock()
			return nil, fmt.Errorf("connect %s: %w", target, ErrTooManyPeers)
		}
	}
	k.outbound++
	k.mu.Unlock()
	release := func() { k.mu.Lock(); k.outbound--; k.mu.Unlock() }

	dctx, cancel := context.WithTimeout(ctx, k.cfg.HandshakeTimeout)
	defer cancel()
	c, err := k.dial(dctx, hostport, expect)
	if err != nil {
		release()
		if check && !verify && ctx.Err() == nil && !errors.Is(err, transport.ErrAddressMismatch) {
			if s := existing("check dial failed", err); s != nil {
				return s, nil
			}
		}
		var me *transport.AddressMismatchError
		if errors.As(err, &me) {
			// One sentence, naming the target once.
			return nil, &connectError{fmt.Sprintf("connect %s: another node answers there, %s", target, me.Got), err}
		}
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	if a, err := transport.PeerAddress(c); err == nil && a == k.Address() {
		// The host:port leads back here (another name for it, a
		// forwarded port): say so rather than refuse ourselves (1020).
		c.NetConn().Close()
		k.countUnserved(c)
		release()
		return nil, fmt.Errorf("connect %s: %w", target, ErrOwnAddress)
	}
	if check {
		if s := k.Session(*expect); s != nil {
			peer.Refuse(dctx, c, k.sessionConfig(), wire.CodeDuplicateSession, "") // TLS is done: it cannot fail
			k.countUnserved(c)
			release()
			k.markVerified(s, hostport)
			k.markKept(s, keep)
			return s, nil
		}
	}
	s, err := peer.Handshake(dctx, c, k.sessionConfig())
	if err != nil {
		k.countUnserved(c)
		release()
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	kept := make(chan *peer.Session, 1)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer release()
		k.serveKept(runCtx, s, false, hostport, kept, keep)
	}()
	select {
	case s := <-kept:
		if s == nil {
			return nil, fmt.Errorf("connect %s: session closed", target)
		}
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A connectError says what went wrong in its own words, wrapping the
// cause for errors.Is and errors.As.
type connectError struct {
	msg string
	err error
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.err }

// isOwnHostPort reports whether hostport is plainly the node's own
// listening address: its port, on a loopback address or the address it
// listens on. Others that lead here are found once TLS shows the key.
func (k *Kernel) isOwnHostPort(hostport string) bool {
	la := k.ListenAddr()
	if la == nil {
		return false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port != strconv.Itoa(la.Port) {
		return false
	}
	own, _ := netip.AddrFromSlice(la.IP)
	own = own.Unmap()
	if host == "localhost" {
		return own.IsUnspecified() || own == netip.IPv6Loopback() || own == netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if own.IsUnspecified() {
		return ip.IsLoopback() || ip.IsUnspecified()
	}
	return ip == own
}

// dial is the transport's Dial, adding the bytes of a failed TLS
// handshake to the totals.
func (k *Kernel) dial(ctx context.Context, hostport string, expect *identity.Address) (*tls.Conn, error) {
	c, err := k.ep.Dial(ctx, hostport, expect)
	var he *transport.HandshakeError
	if errors.As(err, &he) {
		k.closedIn.Add(he.BytesRead)
		k.closedOut.Add(he.BytesWritten)
	}
	return c, err
}

// keep dials target and redials it with backoff whenever the session ends,
// until ctx ends.
func (k *Kernel) keep(ctx context.Context, target string) {
	const minBackoff, maxBackoff = time.Second, 5 * time.Minute
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		s, err := k.connect(ctx, target, true, false)
		k.setTarget(target, s, err)
		if err != nil {
			// err names the target.
			k.log.Warn("kernel: cannot reach configured peer", "err", err, "retry_in", backoff)
		} else {
			select {
			case <-s.Done():
				k.setTarget(target, nil, s.Err())
			case <-ctx.Done():
				return
			}
			if time.Since(start) > maxBackoff {
				backoff = minBackoff // it held for a while
			}
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// setTarget records the outcome of dialling a configured peer: a session,
// or the error that ended or prevented one.
func (k *Kernel) setTarget(target string, s *peer.Session, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.targets[target]
	if t == nil {
		t = &node.TargetInfo{Target: target}
		k.targets[target] = t
	}
	t.Connected = s != nil
	t.Address = ""
	if s != nil {
		t.Address = s.Peer().String()
		t.LastError = ""
	} else if err != nil {
		t.LastError = err.Error()
		t.LastErrorAt = time.Now()
	}
}
