package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

func newEndpoint(t testing.TB) *Endpoint {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// listen starts a listener on addr whose connections run the TLS
// handshake; their outcomes arrive on the returned channel.
func listen(t *testing.T, e *Endpoint, addr string) (*Listener, <-chan serverResult) {
	t.Helper()
	l, err := e.Listen(context.Background(), addr)
	if err != nil {
		if strings.HasPrefix(addr, "[::1]") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	results := make(chan serverResult, 8)
	go func() {
		for {
			c, err := l.AcceptTLS()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := c.HandshakeContext(ctx)
				var a identity.Address
				if err == nil {
					a, err = PeerAddress(c)
				}
				results <- serverResult{c, a, err}
			}()
		}
	}()
	return l, results
}

type serverResult struct {
	c    *tls.Conn
	peer identity.Address
	err  error
}

func TestDialAndAccept(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			srv, cli := newEndpoint(t), newEndpoint(t)
			l, results := listen(t, srv, addr)
			want := srv.Address()
			c, err := cli.Dial(context.Background(), l.Addr().String(), &want)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := PeerAddress(c)
			if err != nil || got != want {
				t.Fatalf("client: PeerAddress = %v, %v; want %v", got, err, want)
			}
			cs := c.ConnectionState()
			if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != ALPN || cs.DidResume {
				t.Fatalf("client: version %x, ALPN %q, resumed %v", cs.Version, cs.NegotiatedProtocol, cs.DidResume)
			}
			r := <-results
			if r.err != nil || r.peer != cli.Address() {
				t.Fatalf("server: PeerAddress = %v, %v; want %v", r.peer, r.err, cli.Address())
			}
			defer r.c.Close()
			// Data flows, and both sides count raw bytes.
			go r.c.Write([]byte("hi"))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
				t.Fatalf("read %q, %v", buf, err)
			}
			cc := c.NetConn().(*CountingConn)
			if cc.BytesRead() == 0 || cc.BytesWritten() == 0 {
				t.Fatalf("counts: read %d, written %d", cc.BytesRead(), cc.BytesWritten())
			}
		})
	}
}

func TestDialWithoutExpectation(t *testing.T) {
	srv, cli := newEndpoint(t), newEndpoint(t)
	l, results := listen(t, srv, "127.0.0.1:0")
	c, err := cli.Dial(context.Background(), l.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a, _ := PeerAddress(c); a != srv.Address() {
		t.Fatalf("PeerAddress = %v, want %v", a, srv.Address())
	}
	if r := <-results; r.err == nil {
		r.c.Close()
	}
}

func TestDialWrongAddressRefused(t *testing.T) {
	srv, cli, other := newEndpoint(t), newEndpoint(t), newEndpoint(t)
	l, results := listen(t, srv, "127.0.0.1:0")
	want := other.Address()
	c, err := cli.Dial(context.Background(), l.Addr().String(), &want)
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded with a wrong expected address")
	}
	if !errors.Is(err, ErrAddressMismatch) {
		t.Fatalf("err = %v, want ErrAddressMismatch", err)
	}
	if !strings.Contains(err.Error(), want.String()) || !strings.Contains(err.Error(), srv.Address().String()) {
		t.Fatalf("error %q does not name both addresses", err)
	}
	if r := <-results; r.err == nil {
		r.c.Close()
		t.Fatal("server completed a handshake the client refused")
	}
}

// Clients that do not follow the rules are refused by the server.
func TestServerRefuses(t *testing.T) {
	srv, cli := newEndpoint(t), newEndpoint(t)
	l, results := listen(t, srv, "127.0.0.1:0")
	for name, mutate := range map[string]func(*tls.Config){
		"no ALPN":      func(c *tls.Config) { c.NextProtos = nil },
		"other ALPN":   func(c *tls.Config) { c.NextProtos = []string{"phpchat/2"} },
		"h2 ALPN":      func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} },
		"no cert":      func(c *tls.Config) { c.GetClientCertificate = nil },
		"TLS 1.2 only": func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := cli.ClientConfig(nil)
			mutate(cfg)
			d := tls.Dialer{Config: cfg}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", l.Addr().String())
			if err == nil {
				// TLS 1.3: the server's verdict on the client arrives after
				// the client's handshake; it shows on the first read.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatal("client was not refused")
			}
			r := <-results
			if r.err == nil {
				r.c.Close()
				t.Fatal("server accepted the client")
			}
			t.Logf("client: %v; server: %v", err, r.err)
			if strings.Contains(name, "ALPN") && !strings.Contains(err.Error(), "no application protocol") {
				t.Fatalf("client: %v, want the alert no_application_protocol", err)
			}
		})
	}
}

// A server without our protocol is refused by the client.
func TestClientRefusesServerWithoutALPN(t *testing.T) {
	srv, cli := newEndpoint(t), newEndpoint(t)
	cfg := srv.ServerConfig()
	cfg.NextProtos, cfg.GetConfigForClient = nil, nil
	cfg.VerifyConnection = nil
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := cli.Dial(context.Background(), l.Addr().String(), nil)
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded without ALPN")
	}
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
}

func TestDialTimeout(t *testing.T) {
	cli := newEndpoint(t)
	// A listener that never answers the TLS handshake.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := cli.Dial(ctx, l.Addr().String(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestCertAddress(t *testing.T) {
	id, _ := identity.Generate()
	good, err := newCertificate(id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a, err := certAddress([]*x509.Certificate{good.Leaf}); err != nil || a != id.Address {
		t.Fatalf("certAddress = %v, %v; want %v", a, err, id.Address)
	}
	if good.Leaf.Subject.CommonName != id.Address.String() {
		t.Errorf("CN = %q", good.Leaf.Subject.CommonName)
	}

	other, _ := identity.Generate()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	parse := func(der []byte, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// id's key, signed by another key.
	forged := parse(x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Key.Public(), other.Key))
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec := parse(x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecKey.Public(), ecKey))

	for name, certs := range map[string][]*x509.Certificate{
		"none":       nil,
		"two":        {good.Leaf, good.Leaf},
		"not self":   {forged},
		"ECDSA":      {ec},
		"chain tail": {good.Leaf, forged},
	} {
		if _, err := certAddress(certs); !errors.Is(err, ErrPeerCertificate) {
			t.Errorf("%s: err = %v, want ErrPeerCertificate", name, err)
		}
	}
	if _, ok := forged.PublicKey.(ed25519.PublicKey); !ok {
		t.Fatal("forged certificate has no Ed25519 key")
	}
}

func TestCertificateRenewal(t *testing.T) {
	e := newEndpoint(t)
	now := time.Now()
	e.now = func() time.Time { return now }
	c1, _ := e.certificate()
	if c2, _ := e.certificate(); c2 != c1 {
		t.Fatal("certificate renewed while fresh")
	}
	now = c1.Leaf.NotAfter.Add(-certRenew / 2)
	c3, err := e.certificate()
	if err != nil || c3 == c1 || !c3.Leaf.NotAfter.After(c1.Leaf.NotAfter) {
		t.Fatalf("certificate not renewed near expiry: %v", err)
	}
	if a, err := certAddress([]*x509.Certificate{c3.Leaf}); err != nil || a != e.Address() {
		t.Fatalf("renewed certificate: %v, %v", a, err)
	}
}

func TestParseTarget(t *testing.T) {
	id, _ := identity.Generate()
	a := id.Address.String()
	typo := a[:len(a)-1] + "q"
	if typo == a {
		typo = a[:len(a)-1] + "p"
	}
	for _, tc := range []struct {
		in, hostport string
		expect       bool
		ok           bool
	}{
		{"127.0.0.1:25000", "127.0.0.1:25000", false, true},
		{"[::1]:25000", "[::1]:25000", false, true},
		{a + "@example.org:25000", "example.org:25000", true, true},
		{strings.ToUpper(a) + "@[2001:db8::1]:1", "[2001:db8::1]:1", true, true},
		{"example.org", "", false, false},
		{":25000", "", false, false},
		{"pc1bad@host:1", "", false, false},
		{typo + "@host:1", "", false, false},
	} {
		hp, exp, err := ParseTarget(tc.in)
		if (err == nil) != tc.ok || hp != tc.hostport || (exp != nil) != tc.expect {
			t.Errorf("ParseTarget(%q) = %q, %v, %v", tc.in, hp, exp, err)
			continue
		}
		if exp != nil && *exp != id.Address {
			t.Errorf("ParseTarget(%q) address %v, want %v", tc.in, exp, id.Address)
		}
	}
}

func TestNewWithoutIdentity(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}
