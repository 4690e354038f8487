package messages

import (
	"bytes"
	"context"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/envelope"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// benchContent is a message of about 1 KiB, as a mail client writes one.
var benchContent = append([]byte("From: a\r\nTo: c\r\nSubject: figures\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"),
	bytes.Repeat([]byte("All work and no play makes Jack a dull boy.\r\n"), 21)...)

// BenchmarkAccept measures the envelopes per second one node accepts from a
// peer over a real session and stores durably as a relay: stamps are
// minted beforehand at a low weight (verifying one costs one hash,
// whatever its bits), and the sender keeps many msg requests in flight.
//
//	go test -run - -bench Accept -benchtime 20000x ./subsystems/messages
func BenchmarkAccept(b *testing.B) {
	const inFlight = 192
	r := startNodeB(b)
	x := startNodeB(b)
	if _, err := x.Call(context.Background(), "kernel", connectReq(r)); err != nil {
		b.Fatal(err)
	}
	sender := mustIdentity(b)
	rcpts := make([]identity.Address, 64)
	for i := range rcpts {
		rcpts[i] = mustIdentity(b).Address
	}
	type item struct {
		id  [16]byte
		raw []byte
	}
	items := make([]item, b.N)
	now := time.Now()
	for i := range items {
		env, _, err := envelope.Seal(sender, rcpts[i%len(rcpts)], envelope.KindMessage, benchContent, now, now.Add(24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		mintB(b, env, testBits)
		raw, _ := env.MarshalBinary()
		items[i] = item{env.ID, raw}
	}
	var next atomic.Int64
	var refused atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(items[0].raw)))
	b.ResetTimer()
	for range inFlight {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				resp, err := push(context.Background(), x.Endpoint, r.ID.Address, hex.EncodeToString(items[i].id[:]), items[i].raw)
				if err != nil || resp.Status != StatusAccepted {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
	if n := refused.Load(); n > 0 {
		b.Fatalf("%d of %d envelopes not accepted", n, b.N)
	}
	st, err := r.svc.status()
	if err != nil || st.RelayStored != b.N {
		b.Fatalf("relay holds %d of %d (%v)", st.RelayStored, b.N, err)
	}
}

// TestOverhead measures the bytes a message costs beyond its content: the
// envelope's (docs/protocol.md 9.6), and the msg frame's around it.
func TestOverhead(t *testing.T) {
	from, to := newIdentity(t), newIdentity(t)
	for _, size := range []int{0, len(benchContent), 100 << 10} {
		content := bytes.Repeat([]byte("x"), size)
		env, _ := sealed(t, from, to.Address, content, time.Now(), testBits)
		raw := marshal(t, env)
		id := hex.EncodeToString(env.ID[:])
		frame, err := wire.AppendFrame(nil, NameMsg, 12345, Part{ID: id, Part: 0, Parts: 1, Size: len(raw), Data: raw})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("content %6d B: envelope %6d B (+%d, stamp %d B), msg frame %6d B (+%d over the envelope, +%d over the content)",
			size, len(raw), len(raw)-size, len(env.Stamp), len(frame), len(frame)-len(raw), len(frame)-size)
		if size == 0 && len(raw) != 288+len(env.Stamp) {
			t.Errorf("empty envelope of %d bytes, want 288 + stamp", len(raw))
		}
	}
}

// BenchmarkLatency measures the time from SendRequest to the recipient's
// inbox on a 20-node loopback network: the recipient online, and joining
// later (from its start to its inbox; the message waits on relays), with
// the stamp minted at 20 bits (included) or at 8 (excluded, about free).
//
//	go test -run - -bench Latency -benchtime 3x ./subsystems/messages
func BenchmarkLatency(b *testing.B) {
	seed := startNodeB(b)
	nodes := []*testNode{seed}
	for range 17 {
		n := startNodeB(b, seed.Target())
		n.join(b)
		nodes = append(nodes, n)
	}
	senders := map[int]*testNode{}
	for _, bits := range []int{testBits, DefaultBits} {
		n := startNodeWithB(b, nil, func(c *Config) { c.Bits = bits }, seed.Target())
		n.join(b)
		senders[bits] = n
	}
	c := nodes[len(nodes)-1] // the 20th node
	for _, bits := range []int{testBits, DefaultBits} {
		a := senders[bits]
		name := "minting-excluded"
		if bits == DefaultBits {
			name = "minting-included-20bits"
		}
		b.Run("online/"+name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				inbox := c.Router.Subscribe(msgapi.TopicEvents, 64)
				start := time.Now()
				id := a.call(b, msgapi.SendRequest{To: c.ID.Address, Content: benchContent}).(string)
				waitMail(b, inbox.C(), id)
				total += time.Since(start)
				inbox.Unsubscribe()
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms-send-to-inbox")
		})
		b.Run("joining/"+name, func(b *testing.B) {
			var toSent, toInbox time.Duration
			for range b.N {
				b.StopTimer()
				cid := mustIdentity(b)
				start := time.Now()
				id := a.call(b, msgapi.SendRequest{To: cid.Address, Content: benchContent}).(string)
				waitFor(b, time.Minute, "sent", func() bool {
					return a.call(b, msgapi.ReadRequest{ID: id}).(msgapi.Message).State == msgapi.StateSent
				})
				toSent += time.Since(start)
				b.StartTimer()
				joined := time.Now()
				late := startNodeWithB(b, cid, nil, seed.Target())
				inbox := late.Router.Subscribe(msgapi.TopicEvents, 64)
				late.join(b)
				waitMail(b, inbox.C(), id)
				toInbox += time.Since(joined)
				b.StopTimer()
				late.Stop()
			}
			b.ReportMetric(float64(toSent.Microseconds())/1e3/float64(b.N), "ms-send-to-relays")
			b.ReportMetric(float64(toInbox.Microseconds())/1e3/float64(b.N), "ms-start-to-inbox")
		})
	}
}

// waitMail waits for the mail event of message id.
func waitMail(tb testing.TB, events <-chan any, id string) {
	tb.Helper()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for {
		select {
		case ev := <-events:
			if e := ev.(msgapi.Event); e.Kind == msgapi.KindMail && e.ID == id {
				return
			}
		case <-timeout.C:
			tb.Fatalf("message %s not in the inbox", id)
		}
	}
}

func startNodeB(b *testing.B, boot ...string) *testNode {
	return startNodeWith(b, nil, b.TempDir(), nil, boot...)
}

func startNodeWithB(b *testing.B, id *identity.Identity, change func(*Config), boot ...string) *testNode {
	return startNodeWith(b, id, b.TempDir(), change, boot...)
}

func mustIdentity(b *testing.B) *identity.Identity { return newIdentity(b) }

func mintB(b *testing.B, env *envelope.Envelope, bits int) { stampEnv(b, env, bits) }

func connectReq(n *testNode) kernelapi.ConnectRequest {
	return kernelapi.ConnectRequest{Target: n.Target()}
}
