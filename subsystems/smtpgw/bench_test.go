package smtpgw_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/subsystems/messages"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
	"github.com/phpchat/phpchat-node/subsystems/smtpgw"
)

const benchClients = 8

// benchMessage is a small mail with a 4 KiB text body.
var benchMessage = "To: x@phpchat.lan\r\nSubject: bench\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
	strings.Repeat(strings.Repeat("z", 78)+"\r\n", 50)

// BenchmarkSMTPFake measures messages accepted per second by the gateway
// from 8 parallel clients (one session each, one recipient a message),
// against a message service that only records the message.
func BenchmarkSMTPFake(b *testing.B) {
	r := router.New()
	ep, err := r.Register(msgapi.Endpoint, 256)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	go ep.Serve(ctx, func(ctx context.Context, m *router.Msg) (any, error) {
		return fmt.Sprintf("%032x", n.Add(1)), nil
	})
	self, _ := identity.Generate()
	benchGateway(b, r, self.Address)
}

// BenchmarkSMTPStore is BenchmarkSMTPFake against the real message
// service of a node: every message is durable (fsync) in its outbox
// before the 250.
func BenchmarkSMTPStore(b *testing.B) {
	n, err := nodetest.Start(nodetest.Config{
		Dir: b.TempDir(), Hashcash: wire.HashcashPolicy{messages.Purpose: 8}, Names: messages.Names,
		Extra: func(n *nodetest.Node) []nodetest.Run {
			svc := messages.New(messages.Config{
				Router: n.Router, Identity: n.ID, DB: n.DB, Bits: 8,
				Stamps: &stamps.Checker{Spent: n.DB.Stamps(), Policy: hashcash.Policy{Expiry: messages.StampExpiry}},
			})
			return []nodetest.Run{svc.Run}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	benchGateway(b, n.Router, n.ID.Address)
}

func benchGateway(b *testing.B, r *router.Router, self identity.Address) {
	user := self.String() + "@phpchat.lan"
	srv := smtpgw.New(smtpgw.Config{
		Router: r, Logger: slog.New(slog.DiscardHandler), Listen: "127.0.0.1:0", Self: self,
		Auth: &mailauth.Checker{Credentials: mailauth.Credentials{User: user, Password: "pw"}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		b.Fatal(err)
	}
	defer func() { cancel(); <-done }()

	to, _ := identity.Generate()
	rcpt := []string{to.Address.String() + "@phpchat.lan"}
	clients := make([]*smtp.Client, benchClients)
	for i := range clients {
		c, err := smtp.Dial(srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Auth(sasl.NewPlainClient("", user, "pw")); err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(benchMessage)))
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := c.SendMail("me@example.org", rcpt, strings.NewReader(benchMessage)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
