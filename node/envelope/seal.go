package envelope

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// A Kind says what a letter is.
type Kind uint8

// Kinds of letters.
const (
	KindMessage Kind = 1 // an RFC 5322 message
	KindReceipt Kind = 2 // the acknowledgement of a message (see NewReceipt)
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindReceipt:
		return "receipt"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// A Letter is the opened content of an envelope.
type Letter struct {
	Kind Kind
	// From is the sender, whose signature Open checked.
	From identity.Address
	// ID, Created and Expires are the envelope's, which the sender signed.
	ID               [16]byte
	Created, Expires time.Time
	// Secret is the deletion secret; its SHA-256 is the envelope's
	// SecretHash.
	Secret [32]byte
	// Content is the RFC 5322 message, or the receipt (see ParseReceipt).
	Content []byte
}

const (
	infoPrefix = "phpchat-node msg v1\x00"
	sigPrefix  = "phpchat-node msg sig v1\x00"
	// innerSize is the plaintext's size without the content: kind,
	// sender, secret, signature and content length.
	innerSize = 1 + 32 + 32 + ed25519.SignatureSize + 4
	// minCiphertext is the size of a sealed letter with no content.
	minCiphertext = innerSize + tagSize
	// maxContent is the largest content a letter can carry.
	maxContent = 1<<32 - 1 - minCiphertext
	// receiptSize is the size of a receipt's content: message id and
	// deletion secret.
	receiptSize = 16 + 32
)

// Suite 1's HPKE components.
var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// Seal seals content from one identity to an address. It chooses the
// envelope's id and deletion secret at random and returns the secret, which
// the sender keeps to check the receipt. The envelope has no stamp yet: the
// caller mints one for env.Resource() and sets env.Stamp. Times are
// truncated to whole seconds. An address refused by PublicKey is refused.
func Seal(from *identity.Identity, to identity.Address, kind Kind, content []byte, created, expires time.Time) (env *Envelope, secret [32]byte, err error) {
	if kind != KindMessage && kind != KindReceipt {
		return nil, secret, fmt.Errorf("seal: unknown kind %d", kind)
	}
	if len(from.Key) != ed25519.PrivateKeySize {
		return nil, secret, fmt.Errorf("seal: identity key has %d bytes", len(from.Key))
	}
	if uint64(len(content)) > maxContent {
		return nil, secret, fmt.Errorf("seal: %w: content of %d bytes", ErrTooLarge, len(content))
	}
	if err := checkTimes(created.Unix(), expires.Unix()); err != nil {
		return nil, secret, fmt.Errorf("seal: %w", err)
	}
	env = &Envelope{
		Version:   Version,
		Suite:     SuiteX25519,
		Recipient: to,
		Created:   time.Unix(created.Unix(), 0).UTC(),
		Expires:   time.Unix(expires.Unix(), 0).UTC(),
	}
	rand.Read(env.ID[:])
	rand.Read(secret[:])
	env.SecretHash = sha256.Sum256(secret[:])

	sig := ed25519.Sign(from.Key, signed(kind, env, content))
	if err := encrypt(env, inner(kind, from.Address, secret, sig, content)); err != nil {
		return nil, [32]byte{}, fmt.Errorf("seal: %w", err)
	}
	return env, secret, nil
}

// inner returns the plaintext of a letter.
func inner(kind Kind, from identity.Address, secret [32]byte, sig, content []byte) []byte {
	pt := make([]byte, 0, innerSize+len(content))
	pt = append(pt, byte(kind))
	pt = append(pt, from[:]...)
	pt = append(pt, secret[:]...)
	pt = append(pt, sig...)
	pt = binary.BigEndian.AppendUint32(pt, uint32(len(content)))
	return append(pt, content...)
}

// encrypt seals the plaintext pt to env's recipient, setting env.Enc and
// env.Ciphertext.
func encrypt(env *Envelope, pt []byte) error {
	pub, err := PublicKey(env.Recipient)
	if err != nil {
		return fmt.Errorf("recipient %s: %w", env.Recipient, err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return err
	}
	out, err := hpke.Seal(pk, kdf, aead, info(env), pt)
	if err != nil {
		return err
	}
	env.Enc, env.Ciphertext = out[:encSize:encSize], out[encSize:]
	return nil
}

// info returns the HPKE info of env: a label and the header, so that a
// relay that alters the header makes the letter undecryptable.
func info(env *Envelope) []byte {
	return env.header(append(make([]byte, 0, len(infoPrefix)+HeaderSize), infoPrefix...))
}

// signed returns what the sender signs: a label, the kind, the recipient,
// the id, the times and the SHA-256 of the content.
func signed(kind Kind, env *Envelope, content []byte) []byte {
	sum := sha256.Sum256(content)
	b := make([]byte, 0, len(sigPrefix)+1+32+16+8+8+32)
	b = append(b, sigPrefix...)
	b = append(b, byte(kind))
	b = append(b, env.Recipient[:]...)
	b = append(b, env.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(env.Created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(env.Expires.Unix()))
	return append(b, sum[:]...)
}

// Open opens an envelope sealed for id. It refuses an envelope for
// another address (ErrNotForMe), one that does not decrypt (ErrTampered),
// whose sender's signature is wrong (ErrBadSignature) or whose secret does
// not match its SecretHash (ErrBadSecret). It does not look at the stamp
// or the times.
func Open(id *identity.Identity, env *Envelope) (*Letter, error) {
	if env.Recipient != id.Address {
		return nil, fmt.Errorf("open: %w", ErrNotForMe)
	}
	if err := env.check(); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	priv, err := PrivateKey(id)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	r, err := hpke.NewRecipient(env.Enc, sk, kdf, aead, info(env))
	if err != nil {
		return nil, fmt.Errorf("open: %w: %v", ErrTampered, err)
	}
	pt, err := r.Open(nil, env.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrTampered)
	}
	l, sig, err := parseInner(pt)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	l.ID, l.Created, l.Expires = env.ID, env.Created, env.Expires
	if !ed25519.Verify(l.From.PublicKey(), signed(l.Kind, env, l.Content), sig) {
		return nil, fmt.Errorf("open: %w", ErrBadSignature)
	}
	if !CheckSecret(env, l.Secret) {
		return nil, fmt.Errorf("open: %w", ErrBadSecret)
	}
	return l, nil
}

// parseInner parses a decrypted letter and returns it with its signature.
func parseInner(pt []byte) (*Letter, []byte, error) {
	if len(pt) < innerSize {
		return nil, nil, fmt.Errorf("%w: letter of %d bytes is too short", ErrFormat, len(pt))
	}
	l := &Letter{Kind: Kind(pt[0])}
	if l.Kind != KindMessage && l.Kind != KindReceipt {
		return nil, nil, fmt.Errorf("%w: unknown kind %d", ErrFormat, pt[0])
	}
	copy(l.From[:], pt[1:33])
	copy(l.Secret[:], pt[33:65])
	sig := pt[65 : 65+ed25519.SignatureSize]
	n := binary.BigEndian.Uint32(pt[innerSize-4 : innerSize])
	if uint64(n) != uint64(len(pt)-innerSize) {
		return nil, nil, fmt.Errorf("%w: content length %d, %d bytes left", ErrFormat, n, len(pt)-innerSize)
	}
	l.Content = pt[innerSize:]
	return l, sig, nil
}

// NewReceipt seals the receipt of a letter that id received, addressed
// to the letter's sender: its content is the letter's id and deletion
// secret.
func NewReceipt(id *identity.Identity, msg *Letter, created, expires time.Time) (*Envelope, error) {
	if msg.Kind != KindMessage {
		return nil, fmt.Errorf("receipt: a %v is not acknowledged", msg.Kind)
	}
	content := make([]byte, 0, receiptSize)
	content = append(content, msg.ID[:]...)
	content = append(content, msg.Secret[:]...)
	env, _, err := Seal(id, msg.From, KindReceipt, content, created, expires)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return env, nil
}

// ParseReceipt returns the id and deletion secret of the message that a
// receipt acknowledges.
func ParseReceipt(l *Letter) (msgID [16]byte, secret [32]byte, err error) {
	if l.Kind != KindReceipt {
		return msgID, secret, fmt.Errorf("%w: a %v is not a receipt", ErrFormat, l.Kind)
	}
	if len(l.Content) != receiptSize {
		return msgID, secret, fmt.Errorf("%w: receipt of %d bytes, want %d", ErrFormat, len(l.Content), receiptSize)
	}
	copy(msgID[:], l.Content[:16])
	copy(secret[:], l.Content[16:])
	return msgID, secret, nil
}

// CheckReceipt reports whether the opened receipt l acknowledges the
// message sent as env: that it comes from env's recipient and names env's
// id with the secret whose hash env carries. It returns the secret, which
// relays holding a copy of env are shown so that they drop it.
func CheckReceipt(l *Letter, env *Envelope) (secret [32]byte, err error) {
	msgID, secret, err := ParseReceipt(l)
	if err != nil {
		return secret, err
	}
	if l.From != env.Recipient || msgID != env.ID || !CheckSecret(env, secret) {
		return secret, fmt.Errorf("%w: receipt does not acknowledge message %x", ErrBadSecret, env.ID)
	}
	return secret, nil
}
