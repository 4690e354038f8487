package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/phpchat/phpchat-node/node/identity"
)

// ProtocolVersion is the version of the protocol this package speaks. It is
// the number in the TLS ALPN name ("phpchat/1") and in hello.
const ProtocolVersion = 1

// Names of the messages of the handshake and of every session.
const (
	NameHello = "hello" // data: Hello
	NameID    = "id"    // data: ID
	NameIDOK  = "id_ok" // no data
	NamePing  = "ping"  // no data; answered by pong with the same rid
	NamePong  = "pong"  // no data; carries the ping's rid
	NameError = "error" // data: Error
	NameQuit  = "quit"  // data: Quit, optional
)

// Limits on the payloads of this package.
const (
	MaxSoftwareLen      = 64  // Hello.Software
	MaxAddrLen          = 64  // Hello.ObservedAddr
	MaxCapabilities     = 32  // entries in ID.Capabilities
	MaxCapabilityLen    = 32  // bytes in one capability
	MaxHashcashPurposes = 16  // entries in ID.Hashcash
	MaxHashcashBits     = 64  // a purpose's bits
	MaxTextLen          = 512 // Error.Text and Quit.Reason
)

// ErrInvalidPayload is wrapped by the Validate methods' errors.
var ErrInvalidPayload = errors.New("wire: invalid payload")

// Hello is the data of hello, the first frame each side sends.
type Hello struct {
	// Protocol is the protocol version the sender speaks, ProtocolVersion.
	Protocol int `json:"protocol"`
	// Software names the sender's implementation and version, as
	// "phpchat-node/0.1.0": printable ASCII, at most MaxSoftwareLen bytes.
	Software string `json:"software,omitempty"`
	// ObservedAddr is the IP address and port the sender sees the receiver
	// at, as "203.0.113.7:41234" or "[2001:db8::7]:25000". It is a hint
	// (for learning one's public address), not to be trusted.
	ObservedAddr string `json:"observed_addr,omitempty"`
}

// Validate checks the fields' syntax and limits. It does not check the
// protocol version against ProtocolVersion.
func (h *Hello) Validate() error {
	if h.Protocol < 1 {
		return fmt.Errorf("%w: hello: protocol %d", ErrInvalidPayload, h.Protocol)
	}
	if !printable(h.Software, MaxSoftwareLen) {
		return fmt.Errorf("%w: hello: software is not printable ASCII of at most %d bytes", ErrInvalidPayload, MaxSoftwareLen)
	}
	if h.ObservedAddr != "" {
		if len(h.ObservedAddr) > MaxAddrLen {
			return fmt.Errorf("%w: hello: observed_addr over %d bytes", ErrInvalidPayload, MaxAddrLen)
		}
		if _, err := netip.ParseAddrPort(h.ObservedAddr); err != nil {
			return fmt.Errorf("%w: hello: observed_addr: %v", ErrInvalidPayload, err)
		}
	}
	return nil
}

// ID is the data of id, the frame in which each side states who it is and
// what it serves.
type ID struct {
	// Address is the sender's address. It must be the key of the sender's
	// TLS certificate.
	Address identity.Address `json:"address"`
	// Port is the TCP port the sender listens on for peers, 0 if none.
	Port int `json:"port"`
	// Capabilities name optional features the sender serves, each 1 to
	// MaxCapabilityLen bytes of a-z, 0-9, '_' and '-'.
	Capabilities []string `json:"capabilities,omitempty"`
	// Hashcash is the sender's hashcash policy: the bits it requires of a
	// stamp, per purpose.
	Hashcash HashcashPolicy `json:"hashcash,omitempty"`
}

// HashcashPolicy maps a purpose (a message name such as "node_find",
// "talk_request" or "msg") to the least number of bits a stamp for it must
// have.
type HashcashPolicy map[string]int

// Validate checks the fields' syntax and limits.
func (id *ID) Validate() error {
	if id.Address.IsZero() {
		return fmt.Errorf("%w: id: no address", ErrInvalidPayload)
	}
	if id.Port < 0 || id.Port > 65535 {
		return fmt.Errorf("%w: id: port %d", ErrInvalidPayload, id.Port)
	}
	if len(id.Capabilities) > MaxCapabilities {
		return fmt.Errorf("%w: id: %d capabilities, at most %d", ErrInvalidPayload, len(id.Capabilities), MaxCapabilities)
	}
	for _, c := range id.Capabilities {
		if !validCapability(c) {
			return fmt.Errorf("%w: id: capability %q", ErrInvalidPayload, c)
		}
	}
	if len(id.Hashcash) > MaxHashcashPurposes {
		return fmt.Errorf("%w: id: %d hashcash purposes, at most %d", ErrInvalidPayload, len(id.Hashcash), MaxHashcashPurposes)
	}
	for p, bits := range id.Hashcash {
		if !ValidName(p) {
			return fmt.Errorf("%w: id: hashcash purpose %q", ErrInvalidPayload, p)
		}
		if bits < 0 || bits > MaxHashcashBits {
			return fmt.Errorf("%w: id: hashcash %s: %d bits", ErrInvalidPayload, p, bits)
		}
	}
	return nil
}

// Has reports whether the capability c is in id.Capabilities.
func (id *ID) Has(c string) bool {
	return slices.Contains(id.Capabilities, c)
}

// Error is the data of error. An error that answers a request carries the
// request's rid in its envelope.
type Error struct {
	Code Code   `json:"code"`
	Text string `json:"text"`
	// Name is the name of the frame that caused the error, "" if unknown.
	Name string `json:"name"`
}

// NewError returns an Error with code's standard text, or text if given,
// cut to MaxTextLen bytes.
func NewError(code Code, name, text string) Error {
	if text == "" {
		text = code.Text()
	}
	return Error{Code: code, Text: truncate(text, MaxTextLen), Name: name}
}

// NewQuit returns a Quit with reason cut to MaxTextLen bytes.
func NewQuit(reason string) Quit { return Quit{Reason: truncate(reason, MaxTextLen)} }

// Quit is the data of quit, the last frame a side sends before it closes
// the connection.
type Quit struct {
	// Reason says why, for logs; at most MaxTextLen bytes.
	Reason string `json:"reason,omitempty"`
}

// DecodeError decodes the data of an error frame from a peer, its text
// cut to MaxTextLen bytes and its name to MaxNameLen, so that no peer's
// text grows a log line or an error beyond the spec's limits. Data that
// does not decode leaves the zero Error and an error.
func DecodeError(e Envelope) (Error, error) {
	var we Error
	if err := e.Decode(&we); err != nil {
		return Error{}, err
	}
	we.Text, we.Name = truncate(we.Text, MaxTextLen), truncate(we.Name, MaxNameLen)
	return we, nil
}

// DecodeQuit decodes the data of a quit frame from a peer, its reason cut
// to MaxTextLen bytes; data that does not decode gives no reason.
func DecodeQuit(e Envelope) Quit {
	var q Quit
	if e.Decode(&q) != nil {
		return Quit{}
	}
	return Quit{Reason: truncate(q.Reason, MaxTextLen)}
}

func printable(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validCapability(c string) bool {
	if len(c) == 0 || len(c) > MaxCapabilityLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes, not inside a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
