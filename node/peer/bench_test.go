package peer

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/phpchat/phpchat-node/node/wire"
)

// BenchmarkHandshake measures complete handshakes between two endpoints on
// loopback: TCP connect, TLS 1.3 with both certificates, hello, id, id_ok;
// then quit.
func BenchmarkHandshake(b *testing.B) {
	a, c := newNode(b), newNode(b)
	srv := serve(b, a, "127.0.0.1:0", a.config())
	cfg := c.config()
	b.ReportAllocs()
	for b.Loop() {
		s, err := dial(b, c, srv.addr, nil, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if r := srv.next(b); r.err != nil {
			b.Fatal(r.err)
		}
		s.Close("done")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// BenchmarkFrames measures one-way frames over one session: the client
// sends, the server's handler counts. The sender keeps at most window
// frames in flight, so the queue never overflows.
func BenchmarkFrames(b *testing.B) {
	for _, bc := range []struct {
		name string
		data any
	}{
		{"ping-sized", nil}, // {"name":"test"}: as long as a ping
		{"64KiB", json.RawMessage(`"` + strings.Repeat("x", 64<<10) + `"`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const window = 128
			var received atomic.Int64
			progress := make(chan struct{}, 1)
			a, c := newNode(b), newNode(b)
			srv := serve(b, a, "127.0.0.1:0", a.config(func(cfg *Config) {
				cfg.Handler = func(s *Session, e wire.Envelope) {
					received.Add(1)
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}))
			cli, _ := connect(b, c, srv, c.config())
			frame, _ := wire.AppendFrame(nil, "test", 0, bc.data)
			b.SetBytes(int64(len(frame)))
			ctx := context.Background()
			var sent int64
			for b.Loop() {
				for sent-received.Load() >= window {
					<-progress
				}
				for {
					err := cli.Send(ctx, "test", bc.data)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						b.Fatal(err)
					}
					<-progress
				}
				sent++
			}
			for received.Load() < sent {
				<-progress
			}
			b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkCallPing measures request/reply round trips (ping, pong) over
// one session, one at a time.
func BenchmarkCallPing(b *testing.B) {
	a, c := newNode(b), newNode(b)
	srv := serve(b, a, "127.0.0.1:0", a.config())
	cli, _ := connect(b, c, srv, c.config())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cli.Call(ctx, wire.NamePing, nil); err != nil {
			b.Fatal(err)
		}
	}
}
