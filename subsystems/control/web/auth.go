package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "phpchat_session"

// SessionLife is how long a session cookie is good for.
const SessionLife = 30 * 24 * time.Hour

// LoadToken returns the login token kept in path, making it (32 random
// bytes in hex, mode 0600) if the file does not exist.
func LoadToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("web console: no token file")
	}
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("web console token %s: too short, delete it to make a new one", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("web console token: %w", err)
	}
	tok := hex.EncodeToString(randomBytes(32))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadToken(path) // made meanwhile by the node or `web url`
	}
	if err != nil {
		return "", fmt.Errorf("web console token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("web console token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("web console token: %w", err)
	}
	return tok, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// login exchanges the token (query or form field "token") for a session
// cookie and sends the browser to the page.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	tok, err := s.Token()
	if err != nil {
		s.logger.Error("web: token", "err", err)
		http.Error(w, "no token", http.StatusInternalServerError)
		return
	}
	given := r.FormValue("token")
	if r.Method == http.MethodPost && r.Header.Get("Origin") != "" && !s.originAllowed(r) {
		http.Error(w, "cross-origin login refused", http.StatusForbidden)
		return
	}
	src := source(r)
	if subtle.ConstantTimeCompare([]byte(given), []byte(tok)) != 1 {
		n, release := s.fails.begin(r.Context(), src)
		defer release()
		s.logger.Warn("web: wrong login token", "remote", r.RemoteAddr, "failures", n)
		s.sleep(r.Context(), penalty(n))
		http.Error(w, "wrong token: run `phpchat-node web url` for the right one", http.StatusUnauthorized)
		return
	}
	s.fails.reset(src)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: s.session(tok, time.Now().Add(SessionLife)), Path: "/",
		MaxAge: int(SessionLife / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.cfg.TLS != nil,
	})
	s.logger.Info("web: logged in", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// session returns a session cookie's value: its expiry and a MAC of it
// keyed by the token, so that sessions survive restarts and end when the
// token file is replaced.
func (s *Server) session(tok string, expires time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(expires.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(b, mac(tok, b)...))
}

func mac(tok string, b []byte) []byte {
	m := hmac.New(sha256.New, []byte(tok))
	m.Write([]byte("phpchat web session\x00"))
	m.Write(b)
	return m.Sum(nil)
}

// validSession reports whether r carries a good session cookie.
func (s *Server) validSession(r *http.Request) bool {
	tok, err := s.Token()
	if err != nil {
		return false
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(raw[8:], mac(tok, raw[:8])) {
		return false
	}
	return time.Now().Unix() < int64(binary.BigEndian.Uint64(raw[:8]))
}

// authed wraps a handler that needs a session.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.validSession(r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, "Not logged in. Run `phpchat-node web url` and open the URL it prints.")
			return
		}
		h(w, r)
	}
}

// allowedHosts returns the host names requests may use besides IP
// literals: localhost, cfg.Hosts and the DNS names of TLS's certificates.
func allowedHosts(cfg Config) map[string]bool {
	m := map[string]bool{"localhost": true}
	for _, h := range cfg.Hosts {
		m[strings.ToLower(h)] = true
	}
	if cfg.TLS != nil {
		for _, c := range cfg.TLS.Certificates {
			leaf := c.Leaf
			if leaf == nil && len(c.Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(c.Certificate[0])
			}
			if leaf != nil {
				for _, n := range leaf.DNSNames {
					m[strings.ToLower(n)] = true
				}
			}
		}
	}
	return m
}

// hostAllowed reports whether a request's Host names this server: an IP
// literal or a known name. Any other name may be an attacker's that
// resolves to this node (DNS rebinding).
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return true
	}
	return s.hosts[strings.ToLower(host)]
}

// originAllowed reports whether r's Origin is this server as r reached
// it: the same scheme and host.
func (s *Server) originAllowed(r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return r.Header.Get("Origin") == scheme+"://"+r.Host
}

// source is the client's IP, the unit that failures are counted in.
func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// penalty is the delay before answering the nth wrong token from one
// source: 250 ms, doubling, at most 8 s.
func penalty(n int) time.Duration {
	return min(250*time.Millisecond<<min(n-1, 5), 8*time.Second)
}

// maxSources bounds the sources whose failures are remembered.
const maxSources = 1024

// failures counts wrong tokens per source. Attempts from one source are
// answered one at a time, so that the delays add up.
type failures struct {
	mu sync.Mutex
	m  map[string]*failure
}

type failure struct {
	n    int
	last time.Time
	turn chan struct{} // held while an attempt of the source is answered
}

// begin counts a failure of src and waits for its turn; it returns the
// failures counted and the function that ends the turn.
func (f *failures) begin(ctx context.Context, src string) (int, func()) {
	f.mu.Lock()
	e := f.m[src]
	if e == nil {
		if len(f.m) >= maxSources {
			f.forgetOld()
		}
		e = &failure{turn: make(chan struct{}, 1)}
		f.m[src] = e
	}
	e.n++
	e.last = time.Now()
	n := e.n
	f.mu.Unlock()
	select {
	case e.turn <- struct{}{}:
		return n, func() { <-e.turn }
	case <-ctx.Done():
		return n, func() {}
	}
}

// forgetOld drops sources that failed last over an hour ago, or all if
// none did: the map stays bounded.
func (f *failures) forgetOld() {
	for k, e := range f.m {
		if time.Since(e.last) > time.Hour {
			delete(f.m, k)
		}
	}
	if len(f.m) >= maxSources {
		clear(f.m)
	}
}

// reset forgets src's failures after a good token.
func (f *failures) reset(src string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.m[src]; e != nil {
		e.n = 0
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
