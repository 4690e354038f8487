package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/node/wire"
)

// Handshake runs the TLS handshake on conn if it has not run, then the
// peer handshake: each side sends hello and id, and answers the other's id
// with id_ok. It returns when both sides have identified, with a Session
// ready to Run, or with an error after which conn is closed.
//
// The handshake must complete within cfg.HandshakeTimeout and before ctx
// ends; ctx bounds the handshake only. A peer that breaks the protocol is
// sent an error frame and quit, and the error returned is a *wire.ProtocolError;
// so is the error frame of a peer that refuses this side (Remote).
func Handshake(ctx context.Context, conn *tls.Conn, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		conn.Close()
		return nil, err
	}
	addr, stop, err := startTLS(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	s := newSession(conn, cfg, addr)
	err = s.handshake(ctx)
	if !stop() && err == nil {
		// ctx ended as the handshake completed: the deadline may be
		// broken; honour the cancellation.
		err = fmt.Errorf("peer: handshake: %w", ctx.Err())
		s.closeConn()
	}
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	now := time.Now()
	s.firstSeen = now
	s.lastSeen.Store(now.UnixNano())
	return s, nil
}

// Refuse tells the peer on conn that this node will not have a session
// with it, and why: it runs the TLS handshake if it has not run, sends an
// error frame with code and text (the code's standard text if empty) and
// quit in place of hello, and closes conn once the peer has closed its side
// or cfg.CloseTimeout has passed. The peer's Handshake returns the error
// frame as a remote *wire.ProtocolError. Refuse returns an error only if the TLS
// handshake failed, in which case nothing was sent.
func Refuse(ctx context.Context, conn *tls.Conn, cfg Config, code wire.Code, text string) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		conn.Close()
		return err
	}
	addr, stop, err := startTLS(ctx, conn, cfg)
	if err != nil {
		return err
	}
	defer stop()
	if text == "" {
		text = code.Text()
	}
	s := newSession(conn, cfg, addr)
	s.cfg.Logger.Debug("peer: refusing session", "peer", addr, "remote", s.info.RemoteAddr, "code", code, "text", text)
	s.shutdownIdle(&wire.ProtocolError{Code: code, Text: text, Err: ErrClosed}, finalFrames(code, "", 0, text)...)
	return nil
}

// startTLS sets conn's deadline for the handshake, runs the TLS handshake
// if it has not run and returns the peer's address. stop stops ctx from
// cutting conn's deadline short. On error conn is closed.
func startTLS(ctx context.Context, conn *tls.Conn, cfg Config) (addr identity.Address, stop func() bool, err error) {
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })

	if err := conn.HandshakeContext(ctx); err != nil {
		stop()
		conn.Close()
		return addr, nil, fmt.Errorf("peer: TLS handshake with %s: %w", conn.RemoteAddr(), err)
	}
	addr, err = transport.PeerAddress(conn)
	if err != nil {
		stop()
		conn.Close()
		return addr, nil, fmt.Errorf("peer: %s: %w", conn.RemoteAddr(), err)
	}
	return addr, stop, nil
}

// handshake runs the exchange of hello, id and id_ok. On error the
// connection is closed.
func (s *Session) handshake(ctx context.Context) error {
	hello := wire.Hello{Protocol: wire.ProtocolVersion, Software: s.cfg.Software}
	if ap, err := netip.ParseAddrPort(s.conn.RemoteAddr().String()); err == nil {
		hello.ObservedAddr = ap.String()
	}
	b, err := wire.AppendFrame(nil, wire.NameHello, 0, hello)
	if err == nil {
		b, err = wire.AppendFrame(b, wire.NameID, 0, s.cfg.id())
	}
	if err != nil {
		s.closeConn()
		return fmt.Errorf("peer: handshake: %w", err)
	}
	if err := s.writeRaw(b); err != nil {
		return err
	}

	var gotHello, gotID, gotOK bool
	for !gotHello || !gotID || !gotOK {
		frame, err := s.r.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrFrameTooLarge):
				return s.refuse(wire.CodeFrameTooLarge, wire.Envelope{}, fmt.Sprintf("frame over %d bytes", s.cfg.MaxFrameSize), err)
			case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
				s.closeConn()
				return fmt.Errorf("peer: handshake: %w", ctx.Err())
			case errors.Is(err, os.ErrDeadlineExceeded):
				return s.refuse(wire.CodeTimeout, wire.Envelope{}, "handshake not complete in time", err)
			default:
				s.closeConn()
				return fmt.Errorf("peer: handshake with %s: read: %w", s.info.Address, err)
			}
		}
		e, err := wire.ParseEnvelope(frame)
		if err != nil {
			code := wire.CodeBadEnvelope
			if errors.Is(err, wire.ErrNotJSON) {
				code = wire.CodeNotJSON
			}
			return s.refuse(code, e, err.Error(), err)
		}
		switch e.Name {
		case wire.NameHello:
			if gotHello {
				if err := s.writeError(e, wire.CodeAlreadyIdentified, "second hello"); err != nil {
					return err
				}
				continue
			}
			var h wire.Hello
			if err := e.Decode(&h); err != nil {
				return s.refuse(wire.CodeInvalidData, e, err.Error(), err)
			}
			if err := h.Validate(); err != nil {
				return s.refuse(wire.CodeInvalidData, e, err.Error(), err)
			}
			if h.Protocol != wire.ProtocolVersion {
				return s.refuse(wire.CodeProtocolVersion, e,
					fmt.Sprintf("protocol %d not supported, want %d", h.Protocol, wire.ProtocolVersion), nil)
			}
			s.info.Hello, gotHello = h, true
		case wire.NameID:
			if gotID {
				if err := s.writeError(e, wire.CodeAlreadyIdentified, ""); err != nil {
					return err
				}
				continue
			}
			if !gotHello {
				return s.refuse(wire.CodeInvalidData, e, "hello must come first", nil)
			}
			var id wire.ID
			if err := e.Decode(&id); err != nil {
				return s.refuse(wire.CodeInvalidData, e, err.Error(), err)
			}
			if err := id.Validate(); err != nil {
				return s.refuse(wire.CodeInvalidData, e, err.Error(), err)
			}
			if s.info.Address == s.cfg.Identity.Address {
				return s.refuse(wire.CodeOwnAddress, e, "", nil)
			}
			if id.Address != s.info.Address {
				return s.refuse(wire.CodeAddressMismatch, e,
					fmt.Sprintf("id names %s, TLS key is %s", id.Address, s.info.Address), nil)
			}
			b, _ := wire.AppendFrame(nil, wire.NameIDOK, 0, nil)
			if err := s.writeRaw(b); err != nil {
				return err
			}
			s.info.ID, gotID = id, true
		case wire.NameIDOK:
			gotOK = true
		case wire.NameError:
			we, _ := wire.DecodeError(e) // a malformed error frame still ends the handshake
			s.closeConn()
			return &wire.ProtocolError{Code: we.Code, Text: we.Text, Name: we.Name, Remote: true}
		case wire.NameQuit:
			q := wire.DecodeQuit(e)
			s.closeConn()
			return fmt.Errorf("peer: handshake: %w: %q", ErrPeerQuit, q.Reason)
		default:
			return s.refuse(wire.CodeIdentifyFirst, e, "", nil)
		}
	}
	return nil
}

// writeRaw writes b to the connection during the handshake. On error the
// connection is closed.
func (s *Session) writeRaw(b []byte) error {
	if _, err := s.conn.Write(b); err != nil {
		s.closeConn()
		return fmt.Errorf("peer: handshake with %s: write: %w", s.info.Address, err)
	}
	return nil
}

// writeError sends a non-fatal error frame about e during the handshake.
func (s *Session) writeError(e wire.Envelope, code wire.Code, text string) error {
	b, _ := wire.AppendFrame(nil, wire.NameError, e.RID, wire.NewError(code, e.Name, text))
	return s.writeRaw(b)
}

// refuse ends the handshake with an error frame about the frame e (its
// name and rid, as far as they could be read; none for a zero e) and quit,
// and closes the connection.
func (s *Session) refuse(code wire.Code, e wire.Envelope, text string, cause error) error {
	pe := &wire.ProtocolError{Code: code, Text: text, Name: e.Name, Err: cause}
	if pe.Text == "" {
		pe.Text = code.Text()
	}
	s.cfg.Logger.Debug("peer: handshake refused", "peer", s.info.Address, "remote", s.info.RemoteAddr, "err", pe)
	s.shutdownIdle(pe, finalFrames(code, e.Name, e.RID, pe.Text)...)
	return pe
}

// finalFrames returns the error frame and quit that end a session; the
// error is about the frame with the given name and rid, if any.
func finalFrames(code wire.Code, name string, rid uint64, text string) [][]byte {
	e, _ := wire.AppendFrame(nil, wire.NameError, rid, wire.NewError(code, name, text))
	q, _ := wire.AppendFrame(nil, wire.NameQuit, 0, wire.NewQuit(code.Text()))
	return [][]byte{e, q}
}

// lesser reports whether a sorts before b.
func lesser(a, b identity.Address) bool { return bytes.Compare(a[:], b[:]) < 0 }
