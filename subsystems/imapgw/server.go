// Package imapgw is the IMAP gateway: it lets a mail client read the
// node's offline messages (INBOX, a view of the inbox), see what the node
// sent and how far each message got (Sent, a view of the outbox, the
// delivery state as a keyword), and keep folders of its own. It is built
// on go-imap's imapserver; sequence numbers and unilateral updates go
// through the library's MailboxTracker, one per mailbox, so that each
// session keeps its own view of a mailbox while others change it.
//
// UIDs and flags live in the store (store.Mailboxes), so that they survive
// a restart; the inbox's read flag is the INBOX's \Seen, and expunging a
// message of INBOX or Sent deletes it from the inbox or outbox. Messages
// that arrive are announced at once (the messages service's "mail"
// event); changes made elsewhere show at the next sync (an event, a
// command of the client, or every few seconds).
package imapgw

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/phpchat/phpchat-node/node/connlimit"
	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// Defaults of Config.
const (
	DefaultListen         = "127.0.0.1:21143"
	DefaultMaxConns       = 64
	DefaultMaxMessageSize = 8 << 20
)

// syncEvery is how often INBOX and Sent are compared with the inbox and
// outbox when no event says they changed: deletions and read flags made
// with `phpchat-node messages` show within this time.
const syncEvery = 5 * time.Second

// Config configures a Server.
type Config struct {
	Router *router.Router // for the messages service's events
	Logger *slog.Logger
	DB     *store.DB
	// Listen is the TCP address; DefaultListen when empty.
	Listen string
	// Auth checks the node's mail credentials.
	Auth *mailauth.Checker
	// TLS enables STARTTLS. Without it, clients log in only on a loopback
	// listener; with it, on any listener once TLS is on (and on loopback
	// without).
	TLS *tls.Config
	// MaxConns caps the connections served at once.
	MaxConns int
	// MaxMessageSize bounds an APPEND (the node's max-message-size).
	MaxMessageSize int
}

// Server is the IMAP gateway subsystem.
type Server struct {
	cfg  Config
	log  *slog.Logger
	addr atomic.Pointer[net.TCPAddr]
}

// New returns a server; Run starts it.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Listen = cmp.Or(cfg.Listen, DefaultListen)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	cfg.MaxMessageSize = cmp.Or(cfg.MaxMessageSize, DefaultMaxMessageSize)
	return &Server{cfg: cfg, log: cfg.Logger}
}

// Addr is the address the server listens on, once Run has called ready;
// nil before.
func (s *Server) Addr() *net.TCPAddr { return s.addr.Load() }

// caps are the capabilities advertised; the library adds those it serves
// itself (IDLE, ENABLE, UNSELECT, SASL-IR, LITERAL-, AUTH=PLAIN).
var caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapIdle: {}, imap.CapNamespace: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapSpecialUse: {}, imap.CapStatusSize: {},
}

// Run serves until ctx ends. It may be run again after it returns.
func (s *Server) Run(ctx context.Context, ready func()) error {
	st := &state{db: s.cfg.DB, log: s.log, maxSize: s.cfg.MaxMessageSize, boxes: map[string]*mailbox{}}
	if err := st.init(); err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	var events *router.Subscription
	if s.cfg.Router != nil {
		events = s.cfg.Router.Subscribe(msgapi.TopicEvents, 256)
		defer events.Unsubscribe()
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	lim := connlimit.New(ln, s.cfg.MaxConns, "* BYE Too many connections, try again later\r\n", nil)
	loopback := tcp.IP.IsLoopback()
	if !loopback && s.cfg.TLS == nil {
		s.log.Warn("imap: no TLS certificate on a listener that is not loopback: clients cannot log in", "listen", tcp)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(st, s.cfg.Auth, c), nil, nil
		},
		Caps:         caps,
		Logger:       libLogger{s.log},
		TLSConfig:    s.cfg.TLS,
		InsecureAuth: loopback,
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lim) }()
	s.addr.Store(tcp)
	defer s.addr.Store(nil)
	s.log.Info("imap: listening", "addr", tcp)
	ready()

	stop := func() {
		srv.Close()
		<-served
		lim.CloseAll()
		lim.Wait() // every session has ended
	}
	var eventsC <-chan any
	if events != nil {
		eventsC = events.C()
	}
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil
		case err := <-served:
			lim.CloseAll()
			lim.Wait()
			return fmt.Errorf("imap: %w", err)
		case ev := <-eventsC:
			e, _ := ev.(msgapi.Event)
			switch e.Kind {
			case msgapi.KindMail:
				st.sync(inboxName)
			case msgapi.KindState:
				st.sync(sentName)
			}
		case <-tick.C:
			st.sync(inboxName)
			st.sync(sentName)
		}
	}
}

// libLogger passes the library's messages to slog: a client's broken
// connection is routine, so at debug level.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "failed to read command") || strings.HasPrefix(msg, "failed to write") {
		l.log.Debug("imap: " + msg)
		return
	}
	l.log.Warn("imap: " + msg)
}

// errNoMailbox and the like are the replies of the session's errors.
var (
	errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	errExists    = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox exists"}
	errReadOnly  = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only (EXAMINE)"}
	errSpecial   = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "This mailbox cannot be deleted or renamed"}
	errBadName   = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	errServer    = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal server error, see the node's log"}
)

// reply maps an error of the session to its IMAP reply: an *imap.Error is
// the reply itself, a missing mailbox is NONEXISTENT, and any other error
// is logged and answered with a NO that does not show its text.
func (st *state) reply(op string, err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, store.ErrNotFound):
		return errNoMailbox
	case errors.Is(err, store.ErrMailboxExists):
		return errExists
	case errors.Is(err, store.ErrLowSpace):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Not enough disk space"}
	}
	st.log.Warn("imap: "+op+" failed", "err", err)
	return errServer
}
