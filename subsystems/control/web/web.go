// Package web serves the web console: the control socket's functions over
// a WebSocket (CommChannel's HTTP half), and one embedded page that uses
// them to show talk, messages, contacts and live statistics.
//
// Only the node's owner gets in. The login token (a file in the data
// directory, made on first use) is exchanged at /login for an HttpOnly,
// SameSite=Strict session cookie, which every other request must carry.
// Every request's Host must name this server (no DNS rebinding) and a
// WebSocket upgrade's Origin must be this server's (no cross-site use).
// A wrong token is answered 401 after a delay that grows with each failure
// from the same source.
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

// DefaultListen is the default listen address.
const DefaultListen = "127.0.0.1:21080"

// DefaultMaxConns is the default of Config.MaxConns.
const DefaultMaxConns = 32

// TokenFileName is the login token's file name in the data directory.
const TokenFileName = "web-token"

//go:embed static
var staticFS embed.FS

// Config configures a Server.
type Config struct {
	Router *router.Router
	Logger *slog.Logger
	// Listen is the TCP address to listen on; a listener that is not
	// loopback needs TLS.
	Listen string
	// Functions is the control socket's function table, served as it is.
	Functions map[string]control.Handler
	// Timeouts gives functions their own deadline, as on the socket.
	Timeouts map[string]time.Duration
	// TokenFile holds the login token; it is made (mode 0600) if missing.
	TokenFile string
	// TLS, if set, makes the server speak HTTPS.
	TLS *tls.Config
	// MaxConns bounds the WebSockets open at once (0: DefaultMaxConns).
	MaxConns int
	// Hosts are more host names that requests may use besides IP
	// literals, localhost and the names of TLS's certificates.
	Hosts []string
}

// Server is the web console's HTTP server.
type Server struct {
	cfg    Config
	logger *slog.Logger
	mux    *http.ServeMux
	hosts  map[string]bool

	tokenOnce sync.Once
	token     string
	tokenErr  error

	fails failures
	// sleep waits for d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration)

	conns   atomic.Int64  // WebSockets open
	ids     atomic.Uint64 // WebSockets opened
	dropped atomic.Uint64 // events dropped for slow browsers
	addr    atomic.Value  // string: the bound address, once listening
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, sleep: sleepCtx}
	s.hosts = allowedHosts(cfg)
	s.fails.m = make(map[string]*failure)
	s.routes()
	return s
}

// Stats are the server's figures.
type Stats struct {
	Conns   int64  // WebSockets open
	Dropped uint64 // events dropped for slow browsers
}

// Stats returns the server's figures.
func (s *Server) Stats() Stats {
	return Stats{Conns: s.conns.Load(), Dropped: s.dropped.Load()}
}

// Addr returns the address the server listens on, once Run has called
// ready, else "".
func (s *Server) Addr() string {
	a, _ := s.addr.Load().(string)
	return a
}

// URL returns the server's base URL ("http://127.0.0.1:21080/"), once Run
// has called ready, else "".
func (s *Server) URL() string {
	a := s.Addr()
	if a == "" {
		return ""
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + a + "/"
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Token returns the login token, making its file on first use.
func (s *Server) Token() (string, error) {
	s.tokenOnce.Do(func() { s.token, s.tokenErr = LoadToken(s.cfg.TokenFile) })
	return s.token, s.tokenErr
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context, ready func()) error {
	if _, err := s.Token(); err != nil {
		return err
	}
	l, err := s.listen()
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // a WebSocket clears it once upgraded
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.addr.Store(l.Addr().String())
	s.logger.Info("web console listening", "url", s.URL())
	ready()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("web console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx) // hijacked WebSockets end with ctx
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web console: %w", err)
	}
	return nil
}

// listen opens the listener, refusing plain HTTP off loopback.
func (s *Server) listen() (net.Listener, error) {
	host, _, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("web-listen %q: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLS == nil && !isLoopback(host) {
		return nil, fmt.Errorf("web-listen %s is not a loopback address: set web-tls-cert and web-tls-key", s.cfg.Listen)
	}
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	if s.cfg.TLS != nil {
		c := s.cfg.TLS.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
		l = tls.NewListener(l, c)
	}
	return l, nil
}

// isLoopback reports whether host is a loopback IP or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// contentSecurity is the Content-Security-Policy of every response: the
// page's own scripts, styles and WebSocket only, no inline script.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// routes sets up the handlers.
func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /login", s.login)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("GET /ws", s.authed(s.serveWS))
	s.mux.Handle("GET /{$}", s.authed(files.ServeHTTP))
	for _, name := range []string{"app.js", "channel.js", "style.css", "icon.svg"} {
		s.mux.Handle("GET /"+name, s.authed(files.ServeHTTP))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	inner := s.mux
	s.mux = http.NewServeMux()
	s.mux.Handle("/", s.guard(inner))
}

// guard sets the security headers of every response and refuses a Host
// that does not name this server.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurity)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if !s.hostAllowed(r.Host) {
			s.logger.Warn("web: request for another host refused", "host", clip(r.Host), "remote", r.RemoteAddr)
			http.Error(w, "misdirected request", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clip bounds peer text for the log.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
