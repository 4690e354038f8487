package envelope

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"

	"filippo.io/edwards25519"

	"github.com/phpchat/phpchat-node/node/identity"
)

// PublicKey returns the X25519 public key that letters to a are sealed
// to: the Montgomery form of a's Ed25519 point (RFC 7748, section 4.1),
// as filippo.io/age and libsodium derive it. It refuses an address that
// is not the canonical encoding of a curve point, or whose point is of
// small order, for no letter to it could be kept secret.
func PublicKey(a identity.Address) (*ecdh.PublicKey, error) {
	p, err := point(a)
	if err != nil {
		return nil, err
	}
	k, err := ecdh.X25519().NewPublicKey(p.BytesMontgomery())
	if err != nil {
		return nil, fmt.Errorf("address as an X25519 key: %w", err)
	}
	return k, nil
}

// PrivateKey returns the X25519 private key matching PublicKey(id.Address):
// the first 32 bytes of SHA-512 of the Ed25519 seed, which X25519 clamps
// as Ed25519 does, so that its public key is the Montgomery form of the
// Ed25519 public key.
func PrivateKey(id *identity.Identity) (*ecdh.PrivateKey, error) {
	if len(id.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity key has %d bytes, want %d", len(id.Key), ed25519.PrivateKeySize)
	}
	h := sha512.Sum512(id.Key.Seed())
	k, err := ecdh.X25519().NewPrivateKey(h[:32])
	if err != nil {
		return nil, fmt.Errorf("identity key as an X25519 key: %w", err)
	}
	return k, nil
}

// point decodes an address into a curve point, refusing what PublicKey
// refuses.
func point(a identity.Address) (*edwards25519.Point, error) {
	if !canonical(a) {
		return nil, errors.New("address is not canonically encoded")
	}
	p, err := new(edwards25519.Point).SetBytes(a[:])
	if err != nil {
		return nil, errors.New("address is not a curve point")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, errors.New("address is a point of small order")
	}
	return p, nil
}

// canonical reports whether the y coordinate encoded in a (its low 255
// bits, little-endian) is below p = 2^255 - 19. The only other
// non-canonical encodings, x = 0 with the sign bit set, are of the points
// (0, ±1), which are of small order.
func canonical(a identity.Address) bool {
	if a[31]&0x7f != 0x7f || a[0] < 0xed {
		return true
	}
	for _, c := range a[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}
