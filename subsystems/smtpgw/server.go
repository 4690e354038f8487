// Package smtpgw is the node's SMTP gateway: a mail client submits a
// message to `<address>@<mail domain>` or `<nickname>@<mail domain>`, and
// the gateway queues one copy per recipient with the offline-message
// service (msgapi, over the router). It answers 250 to DATA only once
// every copy is durable in the outbox. It relays nothing else: any other
// recipient is refused at RCPT.
//
// The message kept is the one the client wrote, byte for byte, except for
// three header fields: From is set to the node's mail address and
// nickname, Bcc is removed and a Message-ID is added if there is none.
package smtpgw

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/phpchat/phpchat-node/node/connlimit"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
)

// Endpoint is the gateway's router id, from which it calls the message
// service.
const Endpoint = "smtp"

// Defaults of Config.
const (
	DefaultListen         = "127.0.0.1:21025"
	DefaultDomain         = "phpchat.lan"
	DefaultMaxMessageSize = 8 << 20 // as the message service's
	DefaultMaxRecipients  = 100
	DefaultMaxConns       = 64
	DefaultReadTimeout    = 5 * time.Minute // idle time of a read, also within DATA
	DefaultWriteTimeout   = time.Minute
	DefaultSendTimeout    = time.Minute // queueing one message's copies
	// MaxLineLength bounds a command line and a line of a message
	// (RFC 5321 allows 1000 bytes; clients exceed it, go-smtp doubles it).
	MaxLineLength = 2000
)

// Config configures a Server.
type Config struct {
	Router *router.Router
	Logger *slog.Logger
	// Listen is the TCP address to listen on (DefaultListen if empty).
	Listen string
	// Domain is the mail domain: recipients are <address>@Domain or
	// <nickname>@Domain (DefaultDomain if empty).
	Domain string
	// Self is the node's address; Nickname its name in From (may be
	// empty).
	Self     identity.Address
	Nickname string
	// Contacts resolves nicknames; nil: addresses only.
	Contacts *store.Contacts
	// Auth checks logins (required): a *mailauth.Checker, which logs a
	// failure and slows its source down.
	Auth Checker
	// TLS enables STARTTLS; nil: none, and AUTH is refused unless the
	// connection is over loopback.
	TLS *tls.Config
	// MaxMessageSize bounds a message (max-message-size; SIZE).
	MaxMessageSize int
	// MaxRecipients bounds the recipients of one message.
	MaxRecipients int
	// MaxConns bounds the connections served at once; more are told 421.
	MaxConns int
	// ReadTimeout is how long a read may wait, WriteTimeout a write.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// SendTimeout bounds the queueing of one message's copies.
	SendTimeout time.Duration
}

// A Checker checks a login from source (the client's IP address); it
// returns false, after the source's delay, for wrong credentials.
type Checker interface {
	Check(source, user, password string) bool
}

// Server is the SMTP gateway subsystem.
type Server struct {
	cfg Config
	log *slog.Logger
	// insecureAuthOK reports whether AUTH may go over a connection
	// without TLS whose local address is addr (tests replace it).
	insecureAuthOK func(local net.Addr) bool

	mu   sync.Mutex
	addr string // the address listened on, while Run runs
}

// New returns a server; Run starts it.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Listen = cmp.Or(cfg.Listen, DefaultListen)
	cfg.Domain = cmp.Or(cfg.Domain, DefaultDomain)
	cfg.MaxMessageSize = cmp.Or(cfg.MaxMessageSize, DefaultMaxMessageSize)
	cfg.MaxRecipients = cmp.Or(cfg.MaxRecipients, DefaultMaxRecipients)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	cfg.ReadTimeout = cmp.Or(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.SendTimeout = cmp.Or(cfg.SendTimeout, DefaultSendTimeout)
	return &Server{cfg: cfg, log: cfg.Logger, insecureAuthOK: isLoopback}
}

// Addr returns the address the server listens on, or "" when it does not
// run.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) setAddr(a string) {
	s.mu.Lock()
	s.addr = a
	s.mu.Unlock()
}

// Run listens and serves until ctx ends, then closes the listener and
// every connection. It may be run again after it returns.
func (s *Server) Run(ctx context.Context, ready func()) error {
	if s.cfg.Auth == nil {
		return errors.New("smtp: no credentials checker")
	}
	ep, err := s.cfg.Router.Register(Endpoint, 1)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	defer ep.Close()
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	s.setAddr(ln.Addr().String())
	defer s.setAddr("")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &backend{s: s, ctx: ctx, ep: ep}
	srv := smtp.NewServer(b)
	srv.Domain = s.cfg.Domain
	srv.TLSConfig = s.cfg.TLS
	srv.MaxMessageBytes = int64(s.cfg.MaxMessageSize)
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = MaxLineLength
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.AllowInsecureAuth = true // the session decides: see session.authAllowed
	srv.ErrorLog = slogLogger{s.log}

	served := make(chan error, 1)
	go func() {
		lim := connlimit.New(ln, s.cfg.MaxConns, "421 4.7.0 Too many connections, try again later\r\n", func(c net.Conn) {
			s.log.Warn("smtp: too many connections", "source", c.RemoteAddr().String())
		})
		served <- srv.Serve(&deadlineListener{Listener: lim, readTimeout: s.cfg.ReadTimeout})
	}()
	s.log.Info("smtp: listening", "addr", ln.Addr().String(), "starttls", s.cfg.TLS != nil)
	ready()

	select {
	case <-ctx.Done():
		srv.Close()
		<-served
		err = nil
	case err = <-served:
		srv.Close()
		err = fmt.Errorf("smtp: %w", err)
	}
	cancel()
	b.close() // no message is being queued once Run returns
	return err
}

// isLoopback reports whether addr is a loopback address.
func isLoopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// deadlineListener's connections wait at most readTimeout for each read,
// also in the middle of a message.
type deadlineListener struct {
	net.Listener
	readTimeout time.Duration
}

func (l *deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &deadlineConn{Conn: c, timeout: l.readTimeout}, nil
}

type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(b)
}

// slogLogger is go-smtp's error log.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.log.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.log.Warn("smtp: " + fmt.Sprint(v...)) }
