// Package envelope seals offline messages and their receipts for their
// recipients, and parses the sealed form that relays store and forward.
//
// An envelope is what relays see of a message: its format version and
// cipher suite, a random id, the recipient's address, when it was made and
// when it expires, the SHA-256 of a deletion secret, the ciphertext, and a
// hashcash stamp bound to all of that (its resource is the envelope's
// content hash, see Envelope.Resource). Everything else — the sender, the
// deletion secret, the sender's signature and the content — is sealed for
// the recipient with HPKE (RFC 9180) to an X25519 key derived from the
// recipient's Ed25519 address (see PublicKey).
//
// A receipt is an envelope of its own, sealed to the original sender, whose
// content names the message and carries its deletion secret; relays cannot
// tell a receipt from a message. A relay that is shown a secret whose hash
// an envelope carries (CheckSecret) drops its copy.
//
// The binary format is specified byte by byte in docs/protocol.md.
package envelope

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// Format constants.
const (
	// Version is the format version this package writes and reads.
	Version = 1
	// SuiteX25519 is cipher suite 1: HPKE with DHKEM(X25519, HKDF-SHA256),
	// HKDF-SHA256 and ChaCha20-Poly1305, in base mode.
	SuiteX25519 = 1

	// HeaderSize is the size of the header: magic and version, suite,
	// id, recipient, times and secret hash. It is bound to the ciphertext
	// as part of the HPKE info.
	HeaderSize = 4 + 1 + 16 + 32 + 8 + 8 + 32
	// MaxStampLen is the longest stamp an envelope may carry.
	MaxStampLen = 512

	// DefaultStampBits is the network's minimum stamp weight for an
	// envelope of up to StampBaseSize bytes.
	DefaultStampBits = 20
	// StampBaseSize is the body size up to which the base weight applies;
	// each doubling above it costs one more bit (see StampBits).
	StampBaseSize = 64 << 10
)

const (
	magic     = "PCM"
	encSize   = 32 // X25519 encapsulated key
	tagSize   = 16 // ChaCha20-Poly1305
	fixedSize = HeaderSize + encSize + 4
	// maxUnix is the last second of year 9999: times beyond it do not
	// round-trip through time.Time and have no use.
	maxUnix = 253402300799
)

// Errors that Parse, Seal and Open wrap; test for them with errors.Is.
var (
	// ErrFormat reports bytes that are not a well-formed envelope, or a
	// sealed letter whose plaintext is malformed.
	ErrFormat = errors.New("envelope: bad format")
	// ErrTooLarge reports an envelope or content above the size limit.
	ErrTooLarge = errors.New("envelope: too large")
	// ErrNotForMe reports an envelope addressed to someone else.
	ErrNotForMe = errors.New("envelope: not addressed to this identity")
	// ErrTampered reports a ciphertext that does not decrypt: it was
	// altered, or its header was, or it was not sealed for this key.
	ErrTampered = errors.New("envelope: decryption failed")
	// ErrBadSignature reports a letter whose sender's signature is wrong.
	ErrBadSignature = errors.New("envelope: bad signature")
	// ErrBadSecret reports a letter whose deletion secret does not hash
	// to the envelope's secret hash, or a receipt that does not
	// acknowledge the message it is checked against.
	ErrBadSecret = errors.New("envelope: deletion secret does not match")
)

// An Envelope is a sealed letter as relays see it.
type Envelope struct {
	Version uint8 // Version
	Suite   uint8 // SuiteX25519
	// ID is chosen at random by the sender.
	ID [16]byte
	// Recipient is the address the letter is sealed for.
	Recipient identity.Address
	// Created and Expires are whole seconds; Created <= Expires.
	Created, Expires time.Time
	// SecretHash is the SHA-256 of the deletion secret.
	SecretHash [32]byte
	// Enc is the HPKE encapsulated key (32 bytes in suite 1).
	Enc []byte
	// Ciphertext is the sealed letter, AEAD tag included.
	Ciphertext []byte
	// Stamp is the hashcash stamp minted for Resource, or empty.
	Stamp string
}

// header appends the header (magic to secret hash) to b.
func (e *Envelope) header(b []byte) []byte {
	b = append(b, magic...)
	b = append(b, e.Version, e.Suite)
	b = append(b, e.ID[:]...)
	b = append(b, e.Recipient[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Expires.Unix()))
	return append(b, e.SecretHash[:]...)
}

// check reports whether e can be marshalled into bytes that Parse accepts.
func (e *Envelope) check() error {
	switch {
	case e.Version != Version:
		return fmt.Errorf("%w: version %d, want %d", ErrFormat, e.Version, Version)
	case e.Suite != SuiteX25519:
		return fmt.Errorf("%w: unknown suite %d", ErrFormat, e.Suite)
	case len(e.Enc) != encSize:
		return fmt.Errorf("%w: encapsulated key has %d bytes, want %d", ErrFormat, len(e.Enc), encSize)
	case len(e.Ciphertext) < minCiphertext:
		return fmt.Errorf("%w: ciphertext of %d bytes is too short", ErrFormat, len(e.Ciphertext))
	case uint64(len(e.Ciphertext)) > 1<<32-1:
		return fmt.Errorf("%w: ciphertext of %d bytes", ErrTooLarge, len(e.Ciphertext))
	}
	if err := checkTimes(e.Created.Unix(), e.Expires.Unix()); err != nil {
		return err
	}
	return checkStamp(e.Stamp)
}

// MarshalBinary returns the envelope's wire form.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, e.Size()))
}

// AppendBinary appends the envelope's wire form to b.
func (e *Envelope) AppendBinary(b []byte) ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	b = e.header(b)
	b = append(b, e.Enc...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Ciphertext)))
	b = append(b, e.Ciphertext...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Stamp)))
	return append(b, e.Stamp...), nil
}

// Parse parses the wire form of an envelope, refusing anything that is not
// exactly one well-formed envelope of at most maxSize bytes (no limit if
// maxSize <= 0) with an error wrapping ErrFormat or ErrTooLarge. It checks
// the form only: a stamp may be empty and is not verified, and the
// ciphertext is not opened. The envelope does not retain b.
func Parse(b []byte, maxSize int) (*Envelope, error) {
	if maxSize > 0 && len(b) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), maxSize)
	}
	if len(b) < fixedSize+minCiphertext+2 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrFormat, len(b))
	}
	if string(b[:3]) != magic {
		return nil, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	e := &Envelope{Version: b[3], Suite: b[4]}
	if e.Version != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, e.Version, Version)
	}
	if e.Suite != SuiteX25519 {
		return nil, fmt.Errorf("%w: unknown suite %d", ErrFormat, e.Suite)
	}
	copy(e.ID[:], b[5:21])
	copy(e.Recipient[:], b[21:53])
	created := int64(binary.BigEndian.Uint64(b[53:61]))
	expires := int64(binary.BigEndian.Uint64(b[61:69]))
	if err := checkTimes(created, expires); err != nil {
		return nil, err
	}
	e.Created, e.Expires = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC()
	copy(e.SecretHash[:], b[69:101])
	e.Enc = append([]byte(nil), b[HeaderSize:HeaderSize+encSize]...)

	ctLen := uint64(binary.BigEndian.Uint32(b[fixedSize-4 : fixedSize]))
	if maxSize > 0 && ctLen > uint64(maxSize) {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, ctLen, maxSize)
	}
	if ctLen < minCiphertext {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes is too short", ErrFormat, ctLen)
	}
	rest := b[fixedSize:]
	if ctLen+2 > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: truncated ciphertext", ErrFormat)
	}
	e.Ciphertext = append([]byte(nil), rest[:ctLen]...)
	rest = rest[ctLen:]
	stampLen := int(binary.BigEndian.Uint16(rest))
	if rest = rest[2:]; len(rest) != stampLen {
		return nil, fmt.Errorf("%w: stamp length %d, %d bytes left", ErrFormat, stampLen, len(rest))
	}
	e.Stamp = string(rest)
	if err := checkStamp(e.Stamp); err != nil {
		return nil, err
	}
	if _, err := point(e.Recipient); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return e, nil
}

func checkTimes(created, expires int64) error {
	switch {
	case created < 0 || expires > maxUnix:
		return fmt.Errorf("%w: time out of range", ErrFormat)
	case created > expires:
		return fmt.Errorf("%w: expires before it was created", ErrFormat)
	}
	return nil
}

// checkStamp accepts an empty stamp or up to MaxStampLen printable ASCII
// characters. Whether it is a valid hashcash stamp is for the caller.
func checkStamp(s string) error {
	if len(s) > MaxStampLen {
		return fmt.Errorf("%w: stamp of %d bytes, limit %d", ErrFormat, len(s), MaxStampLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("%w: stamp has a byte 0x%02x", ErrFormat, s[i])
		}
	}
	return nil
}

// ContentHash returns the SHA-256 of the envelope's body: its wire form
// up to and including the ciphertext, all but the stamp.
func (e *Envelope) ContentHash() [32]byte {
	h := sha256.New()
	var buf [fixedSize]byte
	b := e.header(buf[:0])
	b = append(b, e.Enc...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Ciphertext)))
	h.Write(b)
	h.Write(e.Ciphertext)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Resource returns the resource the envelope's stamp must be minted for:
// its content hash in lower-case hex.
func (e *Envelope) Resource() string {
	sum := e.ContentHash()
	return hex.EncodeToString(sum[:])
}

// BodySize returns the size of the envelope's body, the bytes its content
// hash covers. The network's minimum stamp weight depends on it (see
// StampBits).
func (e *Envelope) BodySize() int {
	return HeaderSize + len(e.Enc) + 4 + len(e.Ciphertext)
}

// Size returns the size of the envelope's wire form.
func (e *Envelope) Size() int {
	return e.BodySize() + 2 + len(e.Stamp)
}

// StampBits returns the least weight a stamp must have for an envelope
// whose body has size bytes: base bits up to StampBaseSize (64 KiB), and
// one more bit for each doubling above.
func StampBits(size, base int) int {
	bits := base
	for n := (size - 1) / StampBaseSize; n > 0; n >>= 1 {
		bits++
	}
	return bits
}

// CheckSecret reports whether secret is the deletion secret of e: whether
// its SHA-256 is e.SecretHash. A relay that is shown it drops e.
func CheckSecret(e *Envelope, secret [32]byte) bool {
	sum := sha256.Sum256(secret[:])
	return subtle.ConstantTimeCompare(sum[:], e.SecretHash[:]) == 1
}
