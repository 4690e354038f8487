package envelope

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
)

// fromSeed returns the identity whose Ed25519 seed is seed.
func fromSeed(seed []byte) *identity.Identity {
	key := ed25519.NewKeyFromSeed(seed)
	a, _ := identity.AddressFromKey(key.Public().(ed25519.PublicKey))
	return &identity.Identity{Key: key, Address: a}
}

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var (
	testCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testExpires = testCreated.Add(14 * 24 * time.Hour)
	testContent = []byte("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: Hello\r\n\r\nHello, Bob.\r\n")
)

func seal(t testing.TB, from *identity.Identity, to identity.Address) (*Envelope, [32]byte) {
	t.Helper()
	env, secret, err := Seal(from, to, KindMessage, testContent, testCreated, testExpires)
	if err != nil {
		t.Fatal(err)
	}
	return env, secret
}

func TestRoundTrip(t *testing.T) {
	alice, bob := newID(t), newID(t)
	env, secret := seal(t, alice, bob.Address)
	env.Stamp = "1:20:260101000000:" + env.Resource() + "::abc:1"

	b, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != env.Size() {
		t.Errorf("marshalled %d bytes, Size %d", len(b), env.Size())
	}
	if got, want := env.ContentHash(), sha256.Sum256(b[:env.BodySize()]); got != want {
		t.Errorf("ContentHash %x, want SHA-256 of the body %x", got, want)
	}
	got, err := Parse(b, len(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != env.ID || got.Recipient != bob.Address || !got.Created.Equal(testCreated) ||
		!got.Expires.Equal(testExpires) || got.SecretHash != sha256.Sum256(secret[:]) ||
		got.Stamp != env.Stamp || got.Resource() != env.Resource() {
		t.Errorf("parsed %+v, sealed %+v", got, env)
	}
	if !CheckSecret(got, secret) {
		t.Error("CheckSecret refuses the secret Seal returned")
	}
	l, err := Open(bob, got)
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != KindMessage || l.From != alice.Address || l.Secret != secret || l.ID != env.ID ||
		!l.Created.Equal(testCreated) || !l.Expires.Equal(testExpires) || !bytes.Equal(l.Content, testContent) {
		t.Errorf("opened %+v", l)
	}
}

func TestSealTruncatesTimes(t *testing.T) {
	alice, bob := newID(t), newID(t)
	env, _, err := Seal(alice, bob.Address, KindMessage, nil, testCreated.Add(700*time.Millisecond), testExpires)
	if err != nil {
		t.Fatal(err)
	}
	if !env.Created.Equal(testCreated) {
		t.Errorf("created %v, want %v", env.Created, testCreated)
	}
	if _, err := Open(bob, env); err != nil {
		t.Fatal(err)
	}
}

func TestSealRefuses(t *testing.T) {
	alice := newID(t)
	var lowOrder identity.Address // y = 0: a point of order 4
	for _, tc := range []struct {
		name             string
		to               identity.Address
		kind             Kind
		created, expires time.Time
	}{
		{"expires before created", alice.Address, KindMessage, testExpires, testCreated},
		{"before 1970", alice.Address, KindMessage, time.Unix(-1, 0), testExpires},
		{"unknown kind", alice.Address, 3, testCreated, testExpires},
		{"low-order recipient", lowOrder, KindMessage, testCreated, testExpires},
	} {
		if _, _, err := Seal(alice, tc.to, tc.kind, testContent, tc.created, tc.expires); err == nil {
			t.Errorf("%s: sealed", tc.name)
		}
	}
}

// craft seals a letter with a chosen signer and secret, to test what Open
// refuses.
func craft(t *testing.T, from identity.Address, signer *identity.Identity, to identity.Address, secret, secretForHash [32]byte, mangle func([]byte) []byte) *Envelope {
	t.Helper()
	env := &Envelope{Version: Version, Suite: SuiteX25519, Recipient: to,
		Created: testCreated, Expires: testExpires, ID: [16]byte{1, 2, 3}}
	env.SecretHash = sha256.Sum256(secretForHash[:])
	sig := ed25519.Sign(signer.Key, signed(KindMessage, env, testContent))
	pt := inner(KindMessage, from, secret, sig, testContent)
	if mangle != nil {
		pt = mangle(pt)
	}
	if err := encrypt(env, pt); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestOpenRefuses(t *testing.T) {
	alice, bob, mallory := newID(t), newID(t), newID(t)
	secret := [32]byte{42}
	for _, tc := range []struct {
		name string
		env  func() *Envelope
		by   *identity.Identity
		want error
	}{
		{"crafted but sound", func() *Envelope {
			return craft(t, alice.Address, alice, bob.Address, secret, secret, nil)
		}, bob, nil},
		{"tampered ciphertext", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Ciphertext[len(env.Ciphertext)/2] ^= 1
			return env
		}, bob, ErrTampered},
		{"tampered tag", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Ciphertext[len(env.Ciphertext)-1] ^= 0x80
			return env
		}, bob, ErrTampered},
		{"tampered encapsulated key", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Enc[0] ^= 1
			return env
		}, bob, ErrTampered},
		{"tampered id", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.ID[0] ^= 1
			return env
		}, bob, ErrTampered},
		{"tampered created", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Created = env.Created.Add(-time.Second)
			return env
		}, bob, ErrTampered},
		{"tampered expires", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Expires = env.Expires.Add(time.Hour)
			return env
		}, bob, ErrTampered},
		{"tampered secret hash", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.SecretHash[31] ^= 1
			return env
		}, bob, ErrTampered},
		{"readdressed", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Recipient = mallory.Address
			return env
		}, mallory, ErrTampered},
		{"wrong recipient", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			return env
		}, mallory, ErrNotForMe},
		{"unknown suite", func() *Envelope {
			env, _ := seal(t, alice, bob.Address)
			env.Suite = 2
			return env
		}, bob, ErrFormat},
		{"signed by another key", func() *Envelope {
			return craft(t, alice.Address, mallory, bob.Address, secret, secret, nil)
		}, bob, ErrBadSignature},
		{"wrong secret", func() *Envelope {
			return craft(t, alice.Address, alice, bob.Address, secret, [32]byte{43}, nil)
		}, bob, ErrBadSecret},
		{"content length too long", func() *Envelope {
			return craft(t, alice.Address, alice, bob.Address, secret, secret, func(pt []byte) []byte {
				binary.BigEndian.PutUint32(pt[innerSize-4:], uint32(len(testContent)+1))
				return pt
			})
		}, bob, ErrFormat},
		{"trailing plaintext", func() *Envelope {
			return craft(t, alice.Address, alice, bob.Address, secret, secret, func(pt []byte) []byte {
				return append(pt, 0)
			})
		}, bob, ErrFormat},
		{"unknown kind", func() *Envelope {
			return craft(t, alice.Address, alice, bob.Address, secret, secret, func(pt []byte) []byte {
				pt[0] = 9
				return pt
			})
		}, bob, ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env()
			l, err := Open(tc.by, env)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v (letter %v), want %v", err, l, tc.want)
			}
		})
	}
}

func TestReceipt(t *testing.T) {
	alice, bob, carol := newID(t), newID(t), newID(t)
	msgEnv, secret := seal(t, alice, bob.Address)
	msg, err := Open(bob, msgEnv)
	if err != nil {
		t.Fatal(err)
	}

	rcptEnv, err := NewReceipt(bob, msg, testCreated.Add(time.Minute), testExpires)
	if err != nil {
		t.Fatal(err)
	}
	if rcptEnv.Recipient != alice.Address {
		t.Fatalf("receipt addressed to %v, want the sender %v", rcptEnv.Recipient, alice.Address)
	}
	if rcptEnv.BodySize() != msgEnv.BodySize()-len(testContent)+receiptSize {
		t.Errorf("receipt body %d bytes", rcptEnv.BodySize())
	}
	rcpt, err := Open(alice, rcptEnv)
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Kind != KindReceipt || rcpt.From != bob.Address {
		t.Fatalf("opened %+v", rcpt)
	}
	got, err := CheckReceipt(rcpt, msgEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got != secret || !CheckSecret(msgEnv, got) {
		t.Errorf("receipt's secret %x, want %x", got, secret)
	}
	if _, err := NewReceipt(alice, rcpt, testCreated, testExpires); err == nil {
		t.Error("made a receipt of a receipt")
	}

	// A receipt by someone else than the recipient, even with the right
	// id and secret, is refused; so is one for another message.
	forged, _, err := Seal(carol, alice.Address, KindReceipt, rcpt.Content, testCreated, testExpires)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := Open(alice, forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckReceipt(fl, msgEnv); !errors.Is(err, ErrBadSecret) {
		t.Errorf("receipt from a third party: %v, want ErrBadSecret", err)
	}
	other, _ := seal(t, alice, bob.Address)
	if _, err := CheckReceipt(rcpt, other); !errors.Is(err, ErrBadSecret) {
		t.Errorf("receipt for another message: %v, want ErrBadSecret", err)
	}
	if _, err := CheckReceipt(msg, msgEnv); !errors.Is(err, ErrFormat) {
		t.Errorf("a message as a receipt: %v, want ErrFormat", err)
	}
	short := *rcpt
	short.Content = short.Content[:receiptSize-1]
	if _, _, err := ParseReceipt(&short); !errors.Is(err, ErrFormat) {
		t.Errorf("short receipt: %v, want ErrFormat", err)
	}
}

func TestCheckSecret(t *testing.T) {
	alice, bob := newID(t), newID(t)
	env, secret := seal(t, alice, bob.Address)
	if !CheckSecret(env, secret) {
		t.Error("secret refused")
	}
	secret[0] ^= 1
	if CheckSecret(env, secret) {
		t.Error("wrong secret accepted")
	}
}

func marshal(t testing.TB, env *Envelope) []byte {
	t.Helper()
	b, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRefuses(t *testing.T) {
	alice, bob := newID(t), newID(t)
	env, _ := seal(t, alice, bob.Address)
	env.Stamp = "1:20:260101000000:" + env.Resource() + "::abc:1"
	good := marshal(t, env)
	n := len(good)
	ctEnd := n - 2 - len(env.Stamp)
	edit := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	put64 := func(off int, v uint64) []byte {
		return edit(func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b })
	}
	var lowOrder, identityPoint [32]byte
	identityPoint[0] = 1
	for _, tc := range []struct {
		name    string
		b       []byte
		maxSize int
		want    error
	}{
		{"empty", nil, 0, ErrFormat},
		{"truncated", good[:n-1], 0, ErrFormat},
		{"trailing byte", append(bytes.Clone(good), 0), 0, ErrFormat},
		{"only the body", good[:ctEnd], 0, ErrFormat},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), 0, ErrFormat},
		{"version 2", edit(func(b []byte) []byte { b[3] = 2; return b }), 0, ErrFormat},
		{"suite 0", edit(func(b []byte) []byte { b[4] = 0; return b }), 0, ErrFormat},
		{"suite 2", edit(func(b []byte) []byte { b[4] = 2; return b }), 0, ErrFormat},
		{"low-order recipient", edit(func(b []byte) []byte { copy(b[21:], lowOrder[:]); return b }), 0, ErrFormat},
		{"identity recipient", edit(func(b []byte) []byte { copy(b[21:], identityPoint[:]); return b }), 0, ErrFormat},
		{"expires before created", put64(61, uint64(testCreated.Unix()-1)), 0, ErrFormat},
		{"negative created", put64(53, 1<<63), 0, ErrFormat},
		{"expires after 9999", put64(61, maxUnix+1), 0, ErrFormat},
		{"ciphertext length beyond the end", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[133:], uint32(ctEnd-fixedSize+1+2+len(env.Stamp)))
			return b
		}), 0, ErrFormat},
		{"ciphertext length too short", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[133:], minCiphertext-1)
			return b
		}), 0, ErrFormat},
		{"stamp length too long", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[ctEnd:], uint16(len(env.Stamp)+1))
			return b
		}), 0, ErrFormat},
		{"stamp with a space", edit(func(b []byte) []byte { b[n-1] = ' '; return b }), 0, ErrFormat},
		{"stamp with a high byte", edit(func(b []byte) []byte { b[n-1] = 0x80; return b }), 0, ErrFormat},
		{"over the size limit", good, n - 1, ErrTooLarge},
		{"huge ciphertext length", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[133:], 1<<32-1)
			return b
		}), n, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b, tc.maxSize); !errors.Is(err, tc.want) {
				t.Fatalf("Parse: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Parse(good, n); err != nil {
		t.Fatalf("Parse of the good envelope at its size limit: %v", err)
	}
	// An envelope without a stamp parses: the relay answers "stamp missing".
	env.Stamp = ""
	if _, err := Parse(marshal(t, env), 0); err != nil {
		t.Fatalf("Parse of an unstamped envelope: %v", err)
	}
}

func TestMarshalRefuses(t *testing.T) {
	alice, bob := newID(t), newID(t)
	for _, tc := range []struct {
		name   string
		mangle func(e *Envelope)
	}{
		{"version", func(e *Envelope) { e.Version = 0 }},
		{"suite", func(e *Envelope) { e.Suite = 7 }},
		{"short enc", func(e *Envelope) { e.Enc = e.Enc[:31] }},
		{"short ciphertext", func(e *Envelope) { e.Ciphertext = e.Ciphertext[:minCiphertext-1] }},
		{"times", func(e *Envelope) { e.Created, e.Expires = e.Expires, e.Created }},
		{"long stamp", func(e *Envelope) { e.Stamp = strings.Repeat("1", MaxStampLen+1) }},
		{"stamp with a newline", func(e *Envelope) { e.Stamp = "1:20\n" }},
	} {
		env, _ := seal(t, alice, bob.Address)
		tc.mangle(env)
		if _, err := env.MarshalBinary(); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: MarshalBinary: %v, want ErrFormat", tc.name, err)
		}
	}
}

func TestStampBits(t *testing.T) {
	for _, tc := range []struct{ size, want int }{
		{0, 20},
		{1, 20},
		{64 << 10, 20},
		{64<<10 + 1, 21},
		{128 << 10, 21},
		{128<<10 + 1, 22},
		{256 << 10, 22},
		{1 << 20, 24},
		{8 << 20, 27},
		{8<<20 + 1, 28},
	} {
		if got := StampBits(tc.size, DefaultStampBits); got != tc.want {
			t.Errorf("StampBits(%d, 20) = %d, want %d", tc.size, got, tc.want)
		}
	}
	if got := StampBits(1<<20, 16); got != 20 {
		t.Errorf("StampBits(1 MiB, 16) = %d, want 20", got)
	}
}

func TestOverhead(t *testing.T) {
	alice, bob := newID(t), newID(t)
	env, _ := seal(t, alice, bob.Address)
	if got, want := env.BodySize()-len(testContent), fixedSize+minCiphertext; got != want {
		t.Errorf("overhead without the stamp %d bytes, want %d", got, want)
	}
	t.Logf("overhead: %d bytes + 2 + stamp", fixedSize+minCiphertext)
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindMessage: "message", KindReceipt: "receipt", 7: "kind(7)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), k.String(), want)
		}
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
