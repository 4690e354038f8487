package envelope

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/hex"
	"flag"
	"os"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
)

var update = flag.Bool("update", false, "write a new test vector to "+vectorFile)

// vectorFile holds the test vector that docs/protocol.md takes apart: the
// envelope in hex, 32 bytes a line.
const vectorFile = "testdata/envelope-v1.hex"

// vectorKeys returns the test vector's Ed25519 seeds: 00 01 … 1f for the
// sender and 20 21 … 3f for the recipient.
func vectorKeys() (sender, recipient []byte) {
	sender, recipient = make([]byte, 32), make([]byte, 32)
	for i := range 32 {
		sender[i], recipient[i] = byte(i), byte(32+i)
	}
	return sender, recipient
}

// The test vector's values, as docs/protocol.md lists them.
const (
	vectorSenderAddr    = "pc1qwss00lnecgtu8tsm5vwwj7qn9n7f43snwjs6hcamjrxgyj4xxuqu2chqq"
	vectorRecipientAddr = "pc19xkt4c2phn90pv3wr22dxngtcumpu5ndp0lp9jyhjj7fxg5kdhtscyp53y"
	vectorRecipientX    = "5730800ab340fcb18ce5111eda9d705f91388b41e4544cbd103ba5942db2233e"
	vectorRecipientXSK  = "887af58a36202e05c4c1cfec5bf6c61fad66bca851536004074b31f1b56e4ac9"
	vectorID            = "6ae6783f4fbde91b6eb88b73a48ed247"
	vectorCreated       = 1767225600 // 2026-01-01T00:00:00Z
	vectorExpires       = 1768435200 // 2026-01-15T00:00:00Z
	vectorSecret        = "dbe5882e2579683432c1bfc525454add0cd87274d67084caaf0e0d36c8496db7"
	vectorSecretHash    = "45137a4254cb8524fc7abc22c505d99d59039a4a8b65f011737096212fb5eca3"
	vectorEnc           = "a8e12cac57d0e58d08862ba296239158043384694970c2ae430f7465d57ce757"
	vectorCtLen         = 226
	vectorHash          = "bc347d54671bcede937dac02eb1685ffd8f96cf11d6ce1616a4a57454d8acd38"
	vectorStamp         = "1:20:260101000000:" + vectorHash + "::AAAAAAAAAAAAAAAA:000000000000003tYL"
	vectorSignature     = "1cc6ed3e9302824a91cccf6e87f74de20c6a46e8758679f0737f1465a1bde59b" +
		"0271900f38421ff7fe8e902256b2a2f95d844c92dd1be46a4536e58fa4ae650e"
	// vectorPlaintext is the sealed letter: kind, sender, secret,
	// signature, content length and content.
	vectorPlaintext = "01" +
		"03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8" +
		vectorSecret + vectorSignature + "0000004d" + vectorContent
	vectorContent = "46726f6d3a20616c696365406578616d706c652e6f72670d0a546f3a20626f62" +
		"406578616d706c652e6f72670d0a5375626a6563743a2048656c6c6f0d0a0d0a" +
		"48656c6c6f2c20426f622e0d0a"
)

// writeVector seals the test vector, with crypto/rand made deterministic,
// and writes it to vectorFile.
func writeVector(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	s, r := vectorKeys()
	sender, recipient := fromSeed(s), fromSeed(r)
	env, _, err := Seal(sender, recipient.Address, KindMessage, testContent, testCreated, testExpires)
	if err != nil {
		t.Fatal(err)
	}
	bits := StampBits(env.BodySize(), DefaultStampBits)
	st, err := hashcash.Mint(context.Background(), env.Resource(), bits,
		hashcash.WithTime(testCreated), hashcash.WithWorkers(1),
		hashcash.WithRand(bytes.NewReader(make([]byte, 12))))
	if err != nil {
		t.Fatal(err)
	}
	env.Stamp = st.String()
	h := hex.EncodeToString(marshal(t, env))
	var text strings.Builder
	for len(h) > 64 {
		text.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	text.WriteString(h + "\n")
	if err := os.WriteFile(vectorFile, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readVector(t testing.TB) []byte {
	t.Helper()
	text, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	return mustHex(t, strings.Join(strings.Fields(string(text)), ""))
}

// TestVector parses and opens the test vector and checks every field.
func TestVector(t *testing.T) {
	if *update {
		writeVector(t)
	}
	b := readVector(t)
	env, err := Parse(b, len(b))
	if err != nil {
		t.Fatal(err)
	}
	s, r := vectorKeys()
	sender, recipient := fromSeed(s), fromSeed(r)
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("sender", sender.Address.String(), vectorSenderAddr)
	check("recipient", recipient.Address.String(), vectorRecipientAddr)
	check("version", env.Version, uint8(1))
	check("suite", env.Suite, uint8(1))
	check("id", hex.EncodeToString(env.ID[:]), vectorID)
	check("recipient field", env.Recipient, recipient.Address)
	check("created", env.Created, time.Unix(vectorCreated, 0).UTC())
	check("expires", env.Expires, time.Unix(vectorExpires, 0).UTC())
	check("secret hash", hex.EncodeToString(env.SecretHash[:]), vectorSecretHash)
	check("enc", hex.EncodeToString(env.Enc), vectorEnc)
	check("ciphertext length", len(env.Ciphertext), vectorCtLen)
	check("stamp", env.Stamp, vectorStamp)
	sum := env.ContentHash()
	check("content hash", hex.EncodeToString(sum[:]), vectorHash)
	check("resource", env.Resource(), vectorHash)
	check("body size", env.BodySize(), 363)
	check("size", env.Size(), len(b))
	check("size", env.Size(), 484)
	if !bytes.Equal(marshal(t, env), b) {
		t.Error("the parsed vector marshals to other bytes")
	}

	// The recipient's X25519 keys.
	pub, err := PublicKey(recipient.Address)
	if err != nil {
		t.Fatal(err)
	}
	check("recipient X25519 key", hex.EncodeToString(pub.Bytes()), vectorRecipientX)
	priv, err := PrivateKey(recipient)
	if err != nil {
		t.Fatal(err)
	}
	check("recipient X25519 private key", hex.EncodeToString(priv.Bytes()), vectorRecipientXSK)

	// The plaintext, decrypted with crypto/hpke's single-shot Open.
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	infoWant := hex.EncodeToString([]byte("phpchat-node msg v1\x00")) + hex.EncodeToString(b[:HeaderSize])
	check("info", hex.EncodeToString(info(env)), infoWant)
	pt, err := hpke.Open(sk, kdf, aead, info(env), append(bytes.Clone(env.Enc), env.Ciphertext...))
	if err != nil {
		t.Fatal(err)
	}
	check("plaintext", hex.EncodeToString(pt), vectorPlaintext)

	l, err := Open(recipient, env)
	if err != nil {
		t.Fatal(err)
	}
	check("kind", l.Kind, KindMessage)
	check("from", l.From, sender.Address)
	check("secret", hex.EncodeToString(l.Secret[:]), vectorSecret)
	check("content", hex.EncodeToString(l.Content), vectorContent)
	check("content", string(l.Content), string(testContent))
	if !CheckSecret(env, l.Secret) {
		t.Error("CheckSecret refuses the vector's secret")
	}

	// The stamp is valid for the envelope at its creation.
	p := hashcash.Policy{
		MinBits:  StampBits(env.BodySize(), DefaultStampBits),
		Resource: env.Resource(),
		Now:      func() time.Time { return env.Created },
	}
	if _, err := p.Verify(env.Stamp); err != nil {
		t.Errorf("stamp: %v", err)
	}
}
