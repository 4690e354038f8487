// Package identity holds a node's long-term key and the address derived
// from it.
//
// A node's identity is an Ed25519 key pair. Its address is the public key
// written with Bech32m under the prefix "pc": 61 lower-case characters, which
// fit an e-mail local part, read the same in any case, and carry a checksum
// that refuses any mistyped character. Its DHT id is the SHA-256 of the
// public key.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/phpchat/phpchat-node/config/atomicfile"
)

// Prefix is the human-readable part of every address.
const Prefix = "pc"

// AddressLen is the length of an address in characters.
const AddressLen = len(Prefix) + 1 + 52 + 6

// Address is a node's public key. Its zero value is not a valid address.
type Address [ed25519.PublicKeySize]byte

// ID is a node's position in the DHT: the SHA-256 of its public key.
type ID [sha256.Size]byte

// AddressFromKey returns the address of an Ed25519 public key.
func AddressFromKey(pub ed25519.PublicKey) (Address, error) {
	var a Address
	if len(pub) != ed25519.PublicKeySize {
		return a, fmt.Errorf("public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	copy(a[:], pub)
	return a, nil
}

// ParseAddress parses the text form of an address, in either case.
// A mistyped address is refused with an error that says so.
func ParseAddress(s string) (Address, error) {
	var a Address
	if len(s) != AddressLen {
		return a, fmt.Errorf("invalid address %q: %d characters, want %d", s, len(s), AddressLen)
	}
	hrp, data, err := decodeBech32m(s)
	if err != nil {
		return a, fmt.Errorf("invalid address %q: %w", s, err)
	}
	if hrp != Prefix {
		return a, fmt.Errorf("invalid address %q: prefix %q, want %q", s, hrp, Prefix)
	}
	key, err := convertBits(data, 5, 8, false)
	if err != nil || len(key) != len(a) {
		return a, fmt.Errorf("invalid address %q: bad key encoding", s)
	}
	copy(a[:], key)
	return a, nil
}

// String returns the address in its canonical lower-case text form.
func (a Address) String() string {
	data, _ := convertBits(a[:], 8, 5, true) // cannot fail with padding
	return encodeBech32m(Prefix, data)
}

// PublicKey returns the address as an Ed25519 public key.
func (a Address) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(a[:]) }

// ID returns the DHT id of the address.
func (a Address) ID() ID { return sha256.Sum256(a[:]) }

// IsZero reports whether a is the zero Address.
func (a Address) IsZero() bool { return a == Address{} }

// Fingerprint returns a short form of the key for people to compare by eye:
// the first 16 bytes of SHA-256 of the key, in hex groups of four.
func (a Address) Fingerprint() string {
	sum := sha256.Sum256(a[:])
	h := hex.EncodeToString(sum[:16])
	var b strings.Builder
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler.
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Address) UnmarshalText(b []byte) error {
	v, err := ParseAddress(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// String returns the id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Identity is a node's key pair.
type Identity struct {
	Key     ed25519.PrivateKey
	Address Address
}

// Generate makes a new random identity.
func Generate() (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return fromKey(key), nil
}

func fromKey(key ed25519.PrivateKey) *Identity {
	var a Address
	copy(a[:], key.Public().(ed25519.PublicKey))
	return &Identity{Key: key, Address: a}
}

// Load reads an identity from a PEM (PKCS #8) key file. A missing or empty
// file gives an error wrapping fs.ErrNotExist: an empty file holds no key,
// and is what an interrupted creation left before keys were written
// atomically. A damaged file gives an error naming it.
func Load(path string) (*Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node key: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("read node key %s: the file is empty: %w", path, fs.ErrNotExist)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("read node key %s: %w; the file is damaged: restore it from a backup, "+
			"or remove it to make a new identity with a new address", path, err)
	}
	return fromKey(key), nil
}

func parseKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an Ed25519 key", k)
	}
	return key, nil
}

// Save writes the identity's private key to path (mode 0600). It refuses
// to overwrite an existing file. The file appears whole or not at all, even
// if the process is killed or the disk is full.
func (id *Identity) Save(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return fmt.Errorf("encode node key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := atomicfile.CreateFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	return nil
}

// LoadOrCreate loads the identity at path, making and saving a new one if
// the file does not exist or is empty. created reports whether it was made.
// It never replaces a key file that holds anything: a damaged key is an
// error, for an identity cannot be made again.
func LoadOrCreate(path string) (id *Identity, created bool, err error) {
	id, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, false, err
	}
	if id, err = Generate(); err != nil {
		return nil, false, err
	}
	if err := removeEmpty(path); err != nil {
		return nil, false, err
	}
	if err := id.Save(path); err != nil {
		return nil, false, err
	}
	return id, true, nil
}

// removeEmpty removes the file at path if it exists and is empty.
func removeEmpty(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != 0 {
		return fmt.Errorf("write node key %s: the file changed while it was read", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	return nil
}
