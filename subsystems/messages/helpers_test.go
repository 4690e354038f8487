package messages

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// testCtx returns a context for one step of a test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a session from n to the node target ("address@host:port").
func dial(t testing.TB, n *testNode, target string) {
	t.Helper()
	if _, err := n.Call(testCtx(t), kernelapi.Endpoint, kernelapi.ConnectRequest{Target: target}); err != nil {
		t.Fatalf("connect: %v", err)
	}
}

// ping sends a ping from n to the peer to over their session and returns
// the round trip.
func ping(t testing.TB, n *testNode, to identity.Address) time.Duration {
	t.Helper()
	start := time.Now()
	e, err := router.CallAs[wire.Envelope](testCtx(t), n.Endpoint, kernelapi.Endpoint, kernelapi.CallRequest{To: to, Name: wire.NamePing})
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if e.Name != wire.NamePong {
		t.Fatalf("ping answered with %q", e.Name)
	}
	return time.Since(start)
}

// sendRaw sends the envelope raw from n to the peer to in msg parts and
// returns the answer to the last.
func sendRaw(t testing.TB, n *testNode, to identity.Address, id [16]byte, raw []byte) Response {
	t.Helper()
	r, err := push(testCtx(t), n.Endpoint, to, hex.EncodeToString(id[:]), raw)
	if err != nil {
		t.Fatalf("msg: %v", err)
	}
	return r
}

// callFrame sends a request frame from n to the peer to.
func callFrame(t testing.TB, n *testNode, to identity.Address, name string, data any) wire.Envelope {
	t.Helper()
	e, err := router.CallAs[wire.Envelope](testCtx(t), n.Endpoint, kernelapi.Endpoint, kernelapi.CallRequest{To: to, Name: name, Data: data})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return e
}

// sealed returns a message from one identity to an address, valid for a
// day from created, stamped with bits (no stamp if bits is 0), and its
// deletion secret.
func sealed(t testing.TB, from *identity.Identity, to identity.Address, content []byte, created time.Time, bits int) (*envelope.Envelope, [32]byte) {
	t.Helper()
	env, secret, err := envelope.Seal(from, to, envelope.KindMessage, content, created, created.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if bits > 0 {
		stampEnv(t, env, bits)
	}
	return env, secret
}

// stampEnv mints env's stamp with bits.
func stampEnv(t testing.TB, env *envelope.Envelope, bits int) {
	t.Helper()
	st, err := hashcash.Mint(context.Background(), env.Resource(), bits)
	if err != nil {
		t.Fatal(err)
	}
	env.Stamp = st.String()
}

// marshal returns env's wire form.
func marshal(t testing.TB, env *envelope.Envelope) []byte {
	t.Helper()
	raw, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// resealSignedBy seals env's letter again with the claimed sender from but
// the signature of another key, as docs/protocol.md 9.3 lays it out.
func resealSignedBy(t testing.TB, env *envelope.Envelope, secret [32]byte, from identity.Address, signer ed25519.PrivateKey, content []byte) {
	t.Helper()
	sum := sha256.Sum256(content)
	signed := []byte("phpchat-node msg sig v1\x00")
	signed = append(signed, byte(envelope.KindMessage))
	signed = append(signed, env.Recipient[:]...)
	signed = append(signed, env.ID[:]...)
	signed = binary.BigEndian.AppendUint64(signed, uint64(env.Created.Unix()))
	signed = binary.BigEndian.AppendUint64(signed, uint64(env.Expires.Unix()))
	signed = append(signed, sum[:]...)
	pt := []byte{byte(envelope.KindMessage)}
	pt = append(pt, from[:]...)
	pt = append(pt, secret[:]...)
	pt = append(pt, ed25519.Sign(signer, signed)...)
	pt = binary.BigEndian.AppendUint32(pt, uint32(len(content)))
	pt = append(pt, content...)

	pub, err := envelope.PublicKey(env.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	info := append([]byte("phpchat-node msg v1\x00"), marshal(t, env)[:envelope.HeaderSize]...)
	out, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, pt)
	if err != nil {
		t.Fatal(err)
	}
	env.Enc, env.Ciphertext = out[:32], out[32:]
}

// status returns the service's figures of n.
func (n *testNode) status(t testing.TB) msgapi.Status {
	t.Helper()
	return n.call(t, msgapi.StatusRequest{}).(msgapi.Status)
}

// hold stores env in n's relay store directly, as if a peer had pushed it.
func (n *testNode) hold(t testing.TB, env *envelope.Envelope) {
	t.Helper()
	err := n.svc.relay.Put(testCtx(t), store.RelayEnvelope{
		ID: env.ID, Recipient: env.Recipient, SecretHash: env.SecretHash, Expires: env.Expires, Envelope: marshal(t, env),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// receipts returns how many receipts n has queued or sent.
func (n *testNode) receipts(t testing.TB) int {
	t.Helper()
	out, err := n.DB.Outbox().List()
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, m := range out {
		if m.Receipt {
			k++
		}
	}
	return k
}

// atomicTime is a clock a test sets.
type atomicTime struct {
	mu sync.Mutex
	t  time.Time
}

func (c *atomicTime) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *atomicTime) get() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
