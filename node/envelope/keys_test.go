package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha512"
	"testing"

	"github.com/phpchat/phpchat-node/node/identity"
)

// TestKeysKnownAnswer checks the key conversion against libsodium's
// crypto_sign_ed25519_pk_to_curve25519 and _sk_to_curve25519 (its test
// test/default/ed25519_convert, whose expected output is in
// ed25519_convert.exp).
func TestKeysKnownAnswer(t *testing.T) {
	id := fromSeed(mustHex(t, "421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee"))
	wantPub := mustHex(t, "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50")
	wantPriv := mustHex(t, "8052030376d47112be7f73ed7a019293dd12ad910b654455798b4667d73de166") // clamped

	pub, err := PublicKey(id.Address)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub.Bytes(), wantPub) {
		t.Errorf("PublicKey = %x, want %x", pub.Bytes(), wantPub)
	}
	priv, err := PrivateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	clamped := bytes.Clone(priv.Bytes())
	clamped[0] &= 248
	clamped[31] &= 127
	clamped[31] |= 64
	if !bytes.Equal(clamped, wantPriv) {
		t.Errorf("PrivateKey (clamped) = %x, want %x", clamped, wantPriv)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), wantPub) {
		t.Errorf("PrivateKey's public key = %x, want %x", priv.PublicKey().Bytes(), wantPub)
	}
}

// TestKeysMatch checks on random identities that the X25519 public key
// derived from the address is the one of the private key derived from the
// seed, computed independently with crypto/ecdh, and that HPKE to the one
// opens with the other.
func TestKeysMatch(t *testing.T) {
	for range 20 {
		id := newID(t)
		pub, err := PublicKey(id.Address)
		if err != nil {
			t.Fatal(err)
		}
		h := sha512.Sum512(id.Key.Seed())
		ind, err := ecdh.X25519().NewPrivateKey(h[:32])
		if err != nil {
			t.Fatal(err)
		}
		if !ind.PublicKey().Equal(pub) {
			t.Fatalf("PublicKey(%v) = %x, want %x", id.Address, pub.Bytes(), ind.PublicKey().Bytes())
		}
		priv, err := PrivateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := hpke.NewDHKEMPublicKey(pub)
		sk, _ := hpke.NewDHKEMPrivateKey(priv)
		ct, err := hpke.Seal(pk, kdf, aead, []byte("info"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := hpke.Open(sk, kdf, aead, []byte("info"), ct)
		if err != nil || string(pt) != "hello" {
			t.Fatalf("HPKE to PublicKey does not open with PrivateKey: %q, %v", pt, err)
		}
	}
}

// TestPublicKeyRefuses checks that points of small order and
// non-canonical encodings are refused: y = p + k for k in 0..18 encodes
// the same point as y = k.
func TestPublicKeyRefuses(t *testing.T) {
	var a identity.Address
	if _, err := PublicKey(a); err == nil { // y = 0, order 4
		t.Error("accepted a point of order 4")
	}
	a[0] = 1 // the identity point
	if _, err := PublicKey(a); err == nil {
		t.Error("accepted the identity point")
	}
	// p = 2^255 - 19, little-endian.
	p := bytes.Repeat([]byte{0xff}, 32)
	p[0], p[31] = 0xed, 0x7f
	for k := range byte(19) {
		copy(a[:], p)
		a[0] += k
		if _, err := PublicKey(a); err == nil {
			t.Errorf("accepted the non-canonical encoding %x", a)
		}
		a[31] |= 0x80 // the sign of x
		if _, err := PublicKey(a); err == nil {
			t.Errorf("accepted the non-canonical encoding %x", a)
		}
	}
	if _, err := PrivateKey(&identity.Identity{}); err == nil {
		t.Error("PrivateKey of an identity without a key succeeded")
	}
}
