package smtpgw

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// backend makes the sessions of one Run.
type backend struct {
	s   *Server
	ctx context.Context // Run's
	ep  *router.Endpoint

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // messages being queued
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	_, isTLS := c.TLSConnectionState()
	source := nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(source); err == nil {
		source = host
	}
	return &session{b: b, cfg: &b.s.cfg, source: source,
		authAllowed: isTLS || b.s.insecureAuthOK(nc.LocalAddr())}, nil
}

// begin counts a message being queued; it reports false once Run ends.
func (b *backend) begin() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

// close waits for the messages being queued and refuses new ones.
func (b *backend) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}

// session is one client connection (made anew after STARTTLS).
type session struct {
	b      *backend
	cfg    *Config
	source string // the client's IP address
	// authAllowed: the connection is under TLS or over loopback.
	authAllowed bool
	authed      bool
	to          []identity.Address // the current message's distinct recipients
}

// Replies of the session. A reply that is not an *smtp.SMTPError becomes
// go-smtp's permanent 554 after DATA (451 elsewhere), so every error the
// client may retry is one of these.
var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
		Message: "Encryption required for authentication: use STARTTLS"}
	errTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message larger than the maximum size"}
	errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6},
		Message: "Line too long"}
)

// refused is a recipient refused for good (550) with the reason.
func refused(ec smtp.EnhancedCode, format string, a ...any) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: ec, Message: fmt.Sprintf(format, a...)}
}

// unavailable is a temporary failure (451): the client tries again.
func unavailable(format string, a ...any) error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: fmt.Sprintf(format, a...)}
}

func (s *session) AuthMechanisms() []string {
	if !s.authAllowed {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.authAllowed {
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && !strings.EqualFold(identity, user) {
				return smtp.ErrAuthFailed
			}
			return s.login(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks the credentials; a failure is logged and slowed down by
// the checker, for this source only.
func (s *session) login(user, pass string) error {
	if !s.cfg.Auth.Check(s.source, user, pass) {
		return smtp.ErrAuthFailed
	}
	s.authed = true
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if !s.authed {
		return errAuthRequired
	}
	s.to = s.to[:0]
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.authed {
		return errAuthRequired
	}
	a, err := s.recipient(to)
	if err != nil {
		return err
	}
	for _, t := range s.to {
		if t == a {
			return nil // one copy per recipient
		}
	}
	s.to = append(s.to, a)
	return nil
}

// recipient resolves <address>@<domain> or <nickname>@<domain>.
func (s *session) recipient(to string) (identity.Address, error) {
	var none identity.Address
	i := strings.LastIndexByte(to, '@')
	if i < 0 {
		return none, refused(smtp.EnhancedCode{5, 1, 3}, "<%s>: want <address>@%s or <nickname>@%s", to, s.cfg.Domain, s.cfg.Domain)
	}
	local, domain := to[:i], to[i+1:]
	if !strings.EqualFold(domain, s.cfg.Domain) {
		return none, refused(smtp.EnhancedCode{5, 7, 1}, "<%s>: not an open relay: this gateway takes mail for @%s only", to, s.cfg.Domain)
	}
	a, perr := identity.ParseAddress(local)
	if perr == nil {
		if a == s.cfg.Self {
			return none, refused(smtp.EnhancedCode{5, 1, 1}, "<%s>: that is this node's own address", to)
		}
		return a, nil
	}
	if s.cfg.Contacts != nil {
		ct, err := s.cfg.Contacts.ByNickname(local)
		switch {
		case err == nil:
			a, err := identity.ParseAddress(ct.Address)
			if err != nil {
				return none, refused(smtp.EnhancedCode{5, 1, 1}, "<%s>: the address book has a bad address for %q: %v", to, local, err)
			}
			return a, nil
		case !errors.Is(err, store.ErrNotFound):
			s.b.s.log.Error("smtp: address book", "err", err)
			return none, unavailable("<%s>: the address book cannot be read, try again later", to)
		}
	}
	if strings.HasPrefix(strings.ToLower(local), identity.Prefix+"1") {
		return none, refused(smtp.EnhancedCode{5, 1, 1}, "<%s>: %v", to, perr) // a mistyped address
	}
	return none, refused(smtp.EnhancedCode{5, 1, 1}, "<%s>: unknown nickname %q: not in the address book", to, local)
}

func (s *session) Data(r io.Reader) error {
	if !s.authed {
		return errAuthRequired
	}
	data, err := io.ReadAll(r)
	switch {
	case errors.Is(err, smtp.ErrTooLongLine):
		return errLineTooLong
	case err != nil:
		var serr *smtp.SMTPError
		if errors.As(err, &serr) {
			return serr // too large
		}
		// A timeout, or the connection is gone: nothing is queued.
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: "the message was not received completely"}
	}
	if !s.b.begin() {
		return unavailable("the gateway is stopping, try again later")
	}
	defer s.b.wg.Done()

	from := (&mail.Address{Name: s.cfg.Nickname, Address: s.cfg.Self.String() + "@" + s.cfg.Domain}).String()
	msg := rewrite(data, from, s.newMessageID)
	if len(msg) > s.cfg.MaxMessageSize {
		return errTooLarge
	}
	return s.queue(msg)
}

// queue puts one copy of msg per recipient in the outbox, all in one
// durable write or none: a client told to try again sends no copy twice.
func (s *session) queue(msg []byte) error {
	ctx, cancel := context.WithTimeout(s.b.ctx, s.cfg.SendTimeout)
	defer cancel()
	ids, err := router.CallAs[[]string](ctx, s.b.ep, msgapi.Endpoint, msgapi.SendAllRequest{To: s.to, Content: msg})
	if err != nil {
		s.b.s.log.Warn("smtp: queueing failed", "source", s.source, "recipients", len(s.to), "size", len(msg), "err", err)
		switch {
		case errors.Is(err, msgapi.ErrTooLarge):
			return errTooLarge
		case errors.Is(err, msgapi.ErrBadInput):
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: err.Error()}
		}
		return unavailable("the message could not be queued, try again later: %v", err)
	}
	s.b.s.log.Info("smtp: message queued", "source", s.source, "recipients", len(ids), "size", len(msg), "ids", ids)
	return nil
}

func (s *session) newMessageID() string {
	return "<" + strings.ToLower(rand.Text()) + "@" + s.cfg.Domain + ">"
}

func (s *session) Reset() { s.to = s.to[:0] }

func (s *session) Logout() error { return nil }
