package smtpgw

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

const (
	testDomain   = "phpchat.lan"
	testPassword = "correct horse battery staple"
	testNickname = "Alice Ä."
)

// fakeMessages is the message service's endpoint: it records what it is
// asked to queue, and fails while fail is set.
type fakeMessages struct {
	mu   sync.Mutex
	sent []msgapi.SendRequest
	fail bool
	// failAfter > 0 fails a request that would take more copies than that.
	failAfter int
}

func (f *fakeMessages) serve(ctx context.Context, m *router.Msg) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch req := m.Body.(type) {
	case msgapi.SendAllRequest:
		// All or none, as the service writes them.
		if f.fail || f.failAfter > 0 && len(f.sent)+len(req.To) > f.failAfter {
			return nil, errors.New("outbox: store: No space left on device")
		}
		var ids []string
		for _, to := range req.To {
			f.sent = append(f.sent, msgapi.SendRequest{To: to, Content: req.Content})
			id := make([]byte, 16)
			rand.Read(id)
			ids = append(ids, hex.EncodeToString(id))
		}
		return ids, nil
	}
	return nil, fmt.Errorf("unexpected %T", m.Body)
}

func (f *fakeMessages) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

// take returns the requests recorded since the last take.
func (f *fakeMessages) take() []msgapi.SendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent
	f.sent = nil
	return s
}

// gateway is a running Server with a fake message service.
type gateway struct {
	srv    *Server
	msgs   *fakeMessages
	addr   string
	user   string
	self   identity.Address
	bob    identity.Address // in the address book as "bob"
	zoe    identity.Address // as "zoë"
	cancel context.CancelFunc
	done   chan error
}

func newID(t testing.TB) identity.Address {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id.Address
}

// startGateway starts a gateway; edit may change its Config before it
// starts.
func startGateway(t testing.TB, edit func(*Config)) *gateway {
	t.Helper()
	db, err := store.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g := &gateway{msgs: &fakeMessages{}, self: newID(t), bob: newID(t), zoe: newID(t)}
	g.user = g.self.String() + "@" + testDomain
	for nick, a := range map[string]identity.Address{"bob": g.bob, "zoë": g.zoe} {
		if _, err := db.Contacts().Add(store.Contact{Address: a.String(), Nickname: nick}); err != nil {
			t.Fatal(err)
		}
	}
	r := router.New()
	ep, err := r.Register(msgapi.Endpoint, 256)
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	t.Cleanup(fcancel)
	go ep.Serve(fctx, g.msgs.serve)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{
		Router: r, Listen: "127.0.0.1:0", Domain: testDomain, Self: g.self, Nickname: testNickname,
		Contacts:       db.Contacts(),
		Auth:           &mailauth.Checker{Credentials: mailauth.Credentials{User: g.user, Password: testPassword}},
		MaxMessageSize: 1 << 20, MaxRecipients: 5,
	}
	if edit != nil {
		edit(&cfg)
	}
	g.srv = New(cfg)
	g.cancel = cancel
	g.done = make(chan error, 1)
	g.start(t, ctx)
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) start(t testing.TB, ctx context.Context) {
	t.Helper()
	ready := make(chan struct{})
	go func() { g.done <- g.srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-g.done:
		t.Fatalf("Run: %v", err)
	}
	g.addr = g.srv.Addr()
}

func (g *gateway) stop() {
	g.cancel()
	<-g.done
}

// client is a raw SMTP conversation, to check each reply code.
type client struct {
	t  testing.TB
	nc net.Conn
	c  *textproto.Conn
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, nc: nc, c: textproto.NewConn(nc)}
	t.Cleanup(func() { nc.Close() })
	c.expect(220)
	return c
}

// expect reads a reply and checks its code; it returns the reply's text.
func (c *client) expect(code int) string {
	c.t.Helper()
	got, msg, err := c.c.ReadResponse(0)
	if err != nil && got == 0 {
		c.t.Fatalf("want %d: %v", code, err)
	}
	if got != code {
		c.t.Fatalf("got %d %q, want %d", got, msg, code)
	}
	return msg
}

// do sends a command line and checks the reply's code.
func (c *client) do(code int, line string) string {
	c.t.Helper()
	if err := c.c.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(code)
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// login greets and logs in with AUTH PLAIN.
func (c *client) login(g *gateway) {
	c.t.Helper()
	c.do(250, "EHLO client.example")
	c.do(235, "AUTH PLAIN "+plain(g.user, testPassword))
}

// send sends a whole message; it returns DATA's reply text.
func (c *client) send(code int, rcpt, msg string) string {
	c.t.Helper()
	c.do(250, "MAIL FROM:<me@example.org>")
	c.do(250, "RCPT TO:<"+rcpt+">")
	c.do(354, "DATA")
	w := c.c.DotWriter()
	io.WriteString(w, msg)
	w.Close()
	return c.expect(code)
}

const simple = "Subject: hello\r\nTo: bob@phpchat.lan\r\n\r\nHi Bob.\r\n"

// sendOK checks that the gateway still serves: a new client sends a
// message that is queued.
func (g *gateway) sendOK(t testing.TB) {
	t.Helper()
	c := dial(t, g.addr)
	c.login(g)
	c.send(250, "bob@"+testDomain, simple)
	c.do(221, "QUIT")
	if n := len(g.msgs.take()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
}

func TestExtensions(t *testing.T) {
	g := startGateway(t, nil)
	c := dial(t, g.addr)
	ext := c.do(250, "EHLO client.example")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN", "SIZE 1048576"} {
		if !strings.Contains(ext, want) {
			t.Errorf("EHLO does not offer %s:\n%s", want, ext)
		}
	}
	if strings.Contains(ext, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate:\n%s", ext)
	}
}

func TestReplies(t *testing.T) {
	g := startGateway(t, nil)
	bad := []byte(g.bob.String())
	bad[len(bad)-1] ^= 1 // a typo: the checksum fails
	_, perr := identity.ParseAddress(string(bad))

	t.Run("auth required", func(t *testing.T) {
		c := dial(t, g.addr)
		c.do(250, "EHLO client.example")
		c.do(530, "MAIL FROM:<me@example.org>")
		c.do(502, "RCPT TO:<bob@phpchat.lan>") // no MAIL
	})
	t.Run("wrong password", func(t *testing.T) {
		c := dial(t, g.addr)
		c.do(250, "EHLO client.example")
		c.do(535, "AUTH PLAIN "+plain(g.user, "guess"))
		c.do(530, "MAIL FROM:<me@example.org>")
		c.do(235, "AUTH PLAIN "+plain(strings.ToUpper(g.user), testPassword))
	})
	t.Run("auth login", func(t *testing.T) {
		c := dial(t, g.addr)
		c.do(250, "EHLO client.example")
		b64 := base64.StdEncoding.EncodeToString
		if got := c.do(334, "AUTH LOGIN"); got != b64([]byte("Username:")) {
			t.Errorf("challenge %q", got)
		}
		c.do(334, b64([]byte(g.user)))
		c.do(235, b64([]byte(testPassword)))
		c.send(250, "bob@phpchat.lan", simple)
		// with the user name on the AUTH line, and a wrong password
		c = dial(t, g.addr)
		c.do(250, "EHLO client.example")
		c.do(334, "AUTH LOGIN "+b64([]byte(g.user)))
		c.do(535, b64([]byte("guess")))
		c.do(334, "AUTH LOGIN")
		c.do(501, "*") // cancelled
	})
	g.msgs.take()

	recipients := []struct {
		rcpt string
		code int
		text string
	}{
		{"bob@phpchat.lan", 250, ""},
		{"BOB@PHPChat.LAN", 250, ""},
		{g.zoe.String() + "@phpchat.lan", 250, ""},
		{strings.ToUpper(g.zoe.String()) + "@phpchat.lan", 250, ""},
		{"carol@phpchat.lan", 550, `unknown nickname "carol"`},
		{string(bad) + "@phpchat.lan", 550, perr.Error()},
		{"bob@example.org", 550, "not an open relay"},
		{g.bob.String() + "@example.org", 550, "not an open relay"},
		{g.self.String() + "@phpchat.lan", 550, "own address"},
		{"postmaster", 550, "want <address>@phpchat.lan"},
	}
	c := dial(t, g.addr)
	c.login(g)
	c.do(250, "MAIL FROM:<me@example.org>")
	for _, r := range recipients {
		text := c.do(r.code, "RCPT TO:<"+r.rcpt+">")
		if !strings.Contains(text, r.text) {
			t.Errorf("RCPT %s: %q does not say %q", r.rcpt, text, r.text)
		}
	}
	c.do(354, "DATA")
	w := c.c.DotWriter()
	io.WriteString(w, simple)
	w.Close()
	c.expect(250)
	sent := g.msgs.take()
	if len(sent) != 2 || sent[0].To != g.bob || sent[1].To != g.zoe {
		t.Fatalf("queued %d copies, want one for bob and one for zoe", len(sent))
	}

	t.Run("utf-8 nickname", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		c.do(250, "MAIL FROM:<me@example.org> SMTPUTF8 BODY=8BITMIME")
		c.do(250, "RCPT TO:<Zoë@phpchat.lan>")
		c.do(354, "DATA")
		w := c.c.DotWriter()
		io.WriteString(w, "Subject: é\r\n\r\nÉté.\r\n")
		w.Close()
		c.expect(250)
		if sent := g.msgs.take(); len(sent) != 1 || sent[0].To != g.zoe {
			t.Fatalf("queued %v, want one copy for zoë", sent)
		}
	})

	t.Run("malformed commands", func(t *testing.T) {
		c := dial(t, g.addr)
		c.do(500, "XYZZ y")                     // unknown
		c.do(501, "FOO bar")                    // mangled
		c.do(502, "MAIL FROM:<me@example.org>") // no EHLO
		c.do(250, "EHLO client.example")
		c.do(454, "AUTH PLAIN !!!") // not base64
		c.do(235, "AUTH PLAIN "+plain(g.user, testPassword))
		c.do(503, "AUTH PLAIN "+plain(g.user, testPassword))
		c.do(501, "MAIL FROM me@example.org")
		c.do(502, "RCPT TO:<bob@phpchat.lan>")
		c.do(502, "DATA")
		c.do(250, "MAIL FROM:<me@example.org>")
		c.do(501, "MAIL FROM:<me@example.org> SIZE=lots")
		c.do(501, "RCPT TO:bob")
		c.do(501, "DATA now")
		c.do(501, "BDAT x")
		c.do(250, "RSET")
		c.send(250, "bob@phpchat.lan", simple)
		if n := len(g.msgs.take()); n != 1 {
			t.Fatalf("%d messages queued, want 1", n)
		}
	})

	t.Run("too many recipients", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		c.do(250, "MAIL FROM:<me@example.org>")
		for range 5 {
			c.do(250, "RCPT TO:<bob@phpchat.lan>")
		}
		c.do(452, "RCPT TO:<bob@phpchat.lan>")
	})

	t.Run("oversize", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		c.do(552, "MAIL FROM:<me@example.org> SIZE=2000000")
		big := simple + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1100)
		text := c.send(552, "bob@phpchat.lan", big)
		if !strings.Contains(text, "size") {
			t.Errorf("552 %q", text)
		}
		// exactly the limit once From and Message-ID are set: too large
		c.do(250, "MAIL FROM:<me@example.org>")
		c.do(250, "RCPT TO:<bob@phpchat.lan>")
		c.do(354, "DATA")
		w := c.c.DotWriter()
		io.WriteString(w, big[:1<<20-100])
		w.Close()
		c.expect(552)
		c.send(250, "bob@phpchat.lan", simple)
		if n := len(g.msgs.take()); n != 1 {
			t.Fatalf("%d messages queued, want 1", n)
		}
	})

	t.Run("line too long", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		c.do(250, "MAIL FROM:<me@example.org>")
		c.do(250, "RCPT TO:<bob@phpchat.lan>")
		c.do(354, "DATA")
		w := c.c.DotWriter()
		io.WriteString(w, "Subject: long\r\n\r\n"+strings.Repeat("y", MaxLineLength+10)+"\r\n")
		w.Close()
		c.expect(500)
		g.sendOK(t)
	})

	t.Run("stops mid-DATA", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		c.do(250, "MAIL FROM:<me@example.org>")
		c.do(250, "RCPT TO:<bob@phpchat.lan>")
		c.do(354, "DATA")
		io.WriteString(c.nc, "Subject: cut\r\n\r\nThe first half")
		c.nc.Close()
		g.sendOK(t) // the cut message is not queued: sendOK checks one message only
	})

	t.Run("pipelining", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		io.WriteString(c.nc, "MAIL FROM:<me@example.org>\r\nRCPT TO:<bob@phpchat.lan>\r\n"+
			"RCPT TO:<carol@phpchat.lan>\r\nDATA\r\n")
		for _, code := range []int{250, 250, 550, 354} {
			c.expect(code)
		}
		io.WriteString(c.nc, simple+".\r\nMAIL FROM:<me@example.org>\r\nRCPT TO:<bob@phpchat.lan>\r\nRSET\r\nQUIT\r\n")
		for _, code := range []int{250, 250, 250, 250, 221} {
			c.expect(code)
		}
		if n := len(g.msgs.take()); n != 1 {
			t.Fatalf("%d messages queued, want 1", n)
		}
	})

	t.Run("store failure", func(t *testing.T) {
		c := dial(t, g.addr)
		c.login(g)
		g.msgs.setFail(true)
		text := c.send(451, "bob@phpchat.lan", simple)
		g.msgs.setFail(false)
		if !strings.Contains(text, "try again") {
			t.Errorf("451 %q", text)
		}
		c.send(250, "bob@phpchat.lan", simple) // the client's retry
		if n := len(g.msgs.take()); n != 1 {
			t.Fatalf("%d messages queued, want 1", n)
		}
	})
}

// A store failure with several recipients queues no copy at all: the
// client's retry sends none twice.
func TestFailureQueuesNothing(t *testing.T) {
	g := startGateway(t, nil)
	c := dial(t, g.addr)
	c.login(g)
	c.do(250, "MAIL FROM:<me@example.org>")
	c.do(250, "RCPT TO:<bob@phpchat.lan>")
	c.do(250, "RCPT TO:<zoë@phpchat.lan>")
	c.do(354, "DATA")
	// Room for one copy, not two.
	g.msgs.mu.Lock()
	g.msgs.failAfter = 1
	g.msgs.mu.Unlock()
	w := c.c.DotWriter()
	io.WriteString(w, simple)
	w.Close()
	c.expect(451)
	g.msgs.mu.Lock()
	defer g.msgs.mu.Unlock()
	if len(g.msgs.sent) != 0 {
		t.Fatalf("%d copies queued by a failed message, want none", len(g.msgs.sent))
	}
}

func TestAuthNeedsTLSOffLoopback(t *testing.T) {
	g := startGateway(t, nil)
	g.srv.insecureAuthOK = func(net.Addr) bool { return false } // as on a LAN address
	c := dial(t, g.addr)
	if ext := c.do(250, "EHLO client.example"); strings.Contains(ext, "AUTH") {
		t.Errorf("AUTH offered without TLS:\n%s", ext)
	}
	c.do(538, "AUTH PLAIN "+plain(g.user, testPassword))
	c.do(530, "MAIL FROM:<me@example.org>")
}

func TestConnectionCap(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.MaxConns = 2 })
	a := dial(t, g.addr)
	dial(t, g.addr)
	nc, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	line, _ := bufio.NewReader(nc).ReadString('\n')
	if !strings.HasPrefix(line, "421 ") {
		t.Fatalf("third connection: %q, want 421", line)
	}
	a.do(221, "QUIT")
	// The slot is free once the server has closed a's connection.
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		nc.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after QUIT: %q", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadTimeout(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })
	c := dial(t, g.addr)
	c.login(g)
	c.do(250, "MAIL FROM:<me@example.org>")
	c.do(250, "RCPT TO:<bob@phpchat.lan>")
	c.do(354, "DATA")
	io.WriteString(c.nc, "Subject: slow\r\n\r\nAnd then noth")
	c.expect(451) // the server gave up waiting
	if _, err := io.ReadAll(c.nc); err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	if n := len(g.msgs.take()); n != 0 {
		t.Fatalf("%d messages queued, want none", n)
	}
}

func TestRestart(t *testing.T) {
	g := startGateway(t, nil)
	g.sendOK(t)
	c := dial(t, g.addr)
	g.stop()
	if _, err := io.ReadAll(c.nc); err != nil {
		t.Fatalf("connection not closed at stop: %v", err)
	}
	if a := g.srv.Addr(); a != "" {
		t.Fatalf("Addr %q after stop", a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.start(t, ctx)
	g.sendOK(t)
}

// selfSigned returns a TLS config for 127.0.0.1 and the certificate's PEM.
func selfSigned(t testing.TB) (*tls.Config, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
