// Package transport carries peer connections: TCP with TLS 1.3 and mutual
// authentication.
//
// Each side presents a self-signed X.509 certificate holding its node's
// Ed25519 key, made in memory when the Endpoint is created and renewed
// before it expires. There are no certificate authorities: a peer is its
// key, and its identity.Address is derived from the key in its certificate.
// A side that dials a known address refuses a peer with another key. ALPN
// names the protocol version, "phpchat/1"; a connection without it is
// refused.
//
// TLS session resumption is off, so that every connection proves
// possession of the key afresh.
package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// ALPN is the TLS application protocol name of this version of the peer
// protocol.
const ALPN = "phpchat/1"

// DefaultDialTimeout bounds Dial, TCP connect and TLS handshake together,
// when the context has no deadline.
const DefaultDialTimeout = 10 * time.Second

// Certificate lifetime. Peers do not check the dates (the key is the
// identity); they are there for tools that look.
const (
	certValidity = 7 * 24 * time.Hour
	certRenew    = 24 * time.Hour // renew when less than this is left
	certBackdate = time.Hour      // NotBefore, against clock skew
)

// Errors of peer verification. The TLS handshake fails with an error that
// wraps one of them.
var (
	// ErrAddressMismatch reports that the peer's key is not the address
	// that was dialled.
	ErrAddressMismatch = errors.New("transport: peer address mismatch")
	// ErrPeerCertificate reports a peer certificate that is not one
	// self-signed Ed25519 certificate.
	ErrPeerCertificate = errors.New("transport: invalid peer certificate")
	// ErrProtocol reports a peer that does not speak ALPN.
	ErrProtocol = errors.New("transport: peer protocol not " + ALPN)
)

// An AddressMismatchError is the error of a handshake with a peer whose
// key is not the address dialled. It wraps ErrAddressMismatch.
type AddressMismatchError struct {
	Want, Got identity.Address
}

func (e *AddressMismatchError) Error() string {
	return fmt.Sprintf("%v: dialled %s, peer is %s", ErrAddressMismatch, e.Want, e.Got)
}

// Unwrap returns ErrAddressMismatch.
func (e *AddressMismatchError) Unwrap() error { return ErrAddressMismatch }

// An Endpoint is a node's side of peer connections: its identity and its
// certificate. It is safe for concurrent use.
type Endpoint struct {
	id  *identity.Identity
	now func() time.Time // for tests

	mu   sync.Mutex
	cert *tls.Certificate
}

// New returns an Endpoint for id, with a fresh certificate.
func New(id *identity.Identity) (*Endpoint, error) {
	if id == nil || len(id.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("transport: no identity")
	}
	e := &Endpoint{id: id, now: time.Now}
	if _, err := e.certificate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Address returns the address of the endpoint's node.
func (e *Endpoint) Address() identity.Address { return e.id.Address }

// certificate returns the current certificate, renewing it when it is
// about to expire.
func (e *Endpoint) certificate() (*tls.Certificate, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if e.cert != nil && e.cert.Leaf.NotAfter.Sub(now) > certRenew {
		return e.cert, nil
	}
	c, err := newCertificate(e.id, now)
	if err != nil {
		return nil, err
	}
	e.cert = &c
	return e.cert, nil
}

// newCertificate makes a self-signed certificate for id's key.
func newCertificate(id *identity.Identity, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id.Address.String()},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Key.Public(), id.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: parse own certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.Key, Leaf: leaf}, nil
}

// ServerConfig returns the TLS configuration for accepted connections: TLS
// 1.3 only, ALPN required, a client certificate required and verified as
// the package describes.
func (e *Endpoint) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		ClientAuth:             tls.RequireAnyClientCert, // verified by VerifyConnection
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return e.certificate()
		},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			// A client offering other protocols only is refused by
			// crypto/tls with the alert no_application_protocol (RFC
			// 7301), before any key exchange. One offering none it would
			// let through, and an error here is sent as internal_error:
			// send no_application_protocol first, as the spec says.
			if len(hello.SupportedProtos) == 0 {
				sendAlert(hello.Conn, alertNoApplicationProtocol)
				return nil, fmt.Errorf("%w: client offers none", ErrProtocol)
			}
			return nil, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(cs, nil)
			return err
		},
	}
}

// alertNoApplicationProtocol is the TLS alert of RFC 7301, section 3.2.
const alertNoApplicationProtocol = 120

// sendAlert writes a fatal TLS alert to c as a plaintext record, as
// before the key exchange; the peer takes the first alert it reads.
func sendAlert(c net.Conn, alert byte) {
	const recordAlert, levelFatal = 21, 2
	c.Write([]byte{recordAlert, 3, 3, 0, 2, levelFatal, alert})
}

// ClientConfig returns the TLS configuration for dialled connections. When
// expect is not nil, the handshake fails with ErrAddressMismatch unless the
// peer's key is that address.
func (e *Endpoint) ClientConfig(expect *identity.Address) *tls.Config {
	var want *identity.Address
	if expect != nil {
		a := *expect
		want = &a
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		InsecureSkipVerify:     true, // no CAs: verified by VerifyConnection
		SessionTicketsDisabled: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return e.certificate()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPeer(cs, want)
			return err
		},
	}
}

// verifyPeer checks a handshake's outcome and returns the peer's address.
func verifyPeer(cs tls.ConnectionState, expect *identity.Address) (identity.Address, error) {
	if cs.NegotiatedProtocol != ALPN {
		return identity.Address{}, fmt.Errorf("%w: negotiated %q", ErrProtocol, cs.NegotiatedProtocol)
	}
	a, err := certAddress(cs.PeerCertificates)
	if err != nil {
		return a, err
	}
	if expect != nil && a != *expect {
		return a, &AddressMismatchError{Want: *expect, Got: a}
	}
	return a, nil
}

// certAddress checks that certs is one self-signed Ed25519 certificate and
// returns the address of its key.
func certAddress(certs []*x509.Certificate) (identity.Address, error) {
	if len(certs) != 1 {
		return identity.Address{}, fmt.Errorf("%w: %d certificates, want 1", ErrPeerCertificate, len(certs))
	}
	c := certs[0]
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return identity.Address{}, fmt.Errorf("%w: %v key, want Ed25519", ErrPeerCertificate, c.PublicKeyAlgorithm)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return identity.Address{}, fmt.Errorf("%w: not self-signed: %v", ErrPeerCertificate, err)
	}
	a, err := identity.AddressFromKey(pub)
	if err != nil {
		return a, fmt.Errorf("%w: %v", ErrPeerCertificate, err)
	}
	return a, nil
}

// PeerAddress returns the address of the peer of a connection whose TLS
// handshake is complete.
func PeerAddress(c *tls.Conn) (identity.Address, error) {
	cs := c.ConnectionState()
	if !cs.HandshakeComplete {
		return identity.Address{}, errors.New("transport: TLS handshake not complete")
	}
	return certAddress(cs.PeerCertificates)
}

// Server returns the server side of a TLS connection over the accepted
// connection c, counting its bytes (see CountingConn). The handshake runs
// on first use, or when the caller calls HandshakeContext.
func (e *Endpoint) Server(c net.Conn) *tls.Conn {
	return tls.Server(&CountingConn{Conn: c}, e.ServerConfig())
}

// Client returns the client side of a TLS connection over c, counting its
// bytes, refusing a peer other than expect if it is not nil.
func (e *Endpoint) Client(c net.Conn, expect *identity.Address) *tls.Conn {
	return tls.Client(&CountingConn{Conn: c}, e.ClientConfig(expect))
}

// Dial connects to addr ("host:port") over TCP and completes the TLS
// handshake, within ctx or DefaultDialTimeout if ctx has no deadline. When
// expect is not nil, a peer with another address is refused with an error
// wrapping ErrAddressMismatch.
//
// With TLS 1.3 the client's handshake completes before the server has
// checked the client's certificate: a refusal by the server shows as an
// error on the first read.
func (e *Endpoint) Dial(ctx context.Context, addr string, expect *identity.Address) (*tls.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err) // err names addr
	}
	c := e.Client(raw, expect)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		cc := c.NetConn().(*CountingConn)
		return nil, &HandshakeError{Addr: addr, Err: err, BytesRead: cc.BytesRead(), BytesWritten: cc.BytesWritten()}
	}
	return c, nil
}

// A HandshakeError is Dial's error when the TLS handshake fails, with the
// bytes the failed handshake read and wrote.
type HandshakeError struct {
	Addr                    string
	Err                     error
	BytesRead, BytesWritten uint64
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("transport: TLS handshake with %s: %v", e.Addr, e.Err)
}

// Unwrap returns the cause, such as ErrAddressMismatch.
func (e *HandshakeError) Unwrap() error { return e.Err }

// Listen listens for peers on addr ("host:port", "[::]:25000"). The
// listener's connections are *tls.Conn from Server, handshake not yet
// done.
func (e *Endpoint) Listen(ctx context.Context, addr string) (*Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	return &Listener{Listener: l, e: e}, nil
}

// A Listener accepts peer connections.
type Listener struct {
	net.Listener
	e *Endpoint
}

// Accept waits for the next connection and returns it as a *tls.Conn,
// its handshake not yet done.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptTLS() }

// AcceptTLS is Accept with the connection's concrete type.
func (l *Listener) AcceptTLS() (*tls.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.e.Server(c), nil
}

// ParseTarget parses a peer to dial, "host:port" or "address@host:port",
// and returns the host and port and the expected address, nil if none.
func ParseTarget(s string) (hostport string, expect *identity.Address, err error) {
	if a, hp, ok := strings.Cut(s, "@"); ok {
		addr, err := identity.ParseAddress(a)
		if err != nil {
			return "", nil, fmt.Errorf("transport: peer %q: %w", s, err)
		}
		expect, s = &addr, hp
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return "", nil, fmt.Errorf("transport: peer %q: want host:port or address@host:port", s)
	}
	return s, expect, nil
}

// A CountingConn counts the bytes read and written through a connection.
// Server, Client, Dial and Listen put one under every TLS connection, so
// that the counts are of the raw bytes, TLS records included; reach it
// with tls.Conn.NetConn.
type CountingConn struct {
	net.Conn
	read, written atomic.Uint64
}

// Read implements net.Conn.
func (c *CountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(uint64(n))
	return n, err
}

// Write implements net.Conn.
func (c *CountingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(uint64(n))
	return n, err
}

// BytesRead returns the number of bytes read so far.
func (c *CountingConn) BytesRead() uint64 { return c.read.Load() }

// BytesWritten returns the number of bytes written so far.
func (c *CountingConn) BytesWritten() uint64 { return c.written.Load() }

// CloseWrite shuts down the writing side of the connection, if it can.
func (c *CountingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
