package kernel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/wire"
)

func refused9100(err error) bool {
	var pe *wire.ProtocolError
	return errors.As(err, &pe) && pe.Remote && pe.Code == wire.CodeTooManyConnections
}

// Frames that no subsystem uses (unknown names, refused requests) are no
// use of a session: an inbound peer that sends garbage to look busy is
// still idle, and makes room for a newcomer at max-inbound.
func TestGarbageFramesDoNotKeepSession(t *testing.T) {
	b := newKernel(t, func(c *Config) { c.MaxInbound = 1; c.EvictIdle = 300 * time.Millisecond })
	a := newKernel(t, nil)
	s, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	b.waitUp(t, a.Address())
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				s.Send(context.Background(), "no_such_frame", nil)
			}
		}
	}()
	time.Sleep(time.Second)
	_, err = newKernel(t, nil).Connect(context.Background(), b.target())
	if refused9100(err) {
		t.Fatalf("newcomer refused (%v): a session carrying only unknown frames counts as in use", err)
	}
}

// The pins of an endpoint's earlier run are dropped when it registers
// its frames again after a restart: they no longer keep sessions.
func TestPinsOfEarlierRunDropped(t *testing.T) {
	b := newKernel(t, func(c *Config) { c.MaxInbound = 1; c.EvictIdle = time.Nanosecond })
	a := newKernel(t, nil)
	if _, err := a.Connect(context.Background(), b.target()); err != nil {
		t.Fatal(err)
	}
	b.waitUp(t, a.Address())
	ep, _ := b.r.Register("dht", 4)
	ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.PinRequest{Address: a.Address(), Pinned: true})
	ep.Close()                       // the DHT fails; its new run no longer has a in its table
	ep2, _ := b.r.Register("dht", 4) // its new run registers its frames
	defer ep2.Close()
	if err := kernelapi.Handle(context.Background(), b.r, ep2, "node_find"); err != nil {
		t.Fatal(err)
	}
	if _, err := newKernel(t, nil).Connect(context.Background(), b.target()); refused9100(err) {
		t.Fatalf("newcomer refused (%v): the pin of the DHT's previous run still holds", err)
	}
}

// Making room for an outbound dial spares a session that a
// subsystem pins (talk pins the peers it talks with).
func TestOutboundEvictionSparesPinned(t *testing.T) {
	b, c := newKernel(t, nil), newKernel(t, nil)
	a := newKernel(t, func(cfg *Config) { cfg.MaxOutbound = 1 })
	sb, err := a.Connect(context.Background(), b.target())
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := a.r.Register("talk", 4)
	defer ep.Close()
	ep.Call(context.Background(), kernelapi.Endpoint, kernelapi.PinRequest{Address: b.Address(), Pinned: true})
	a.Connect(context.Background(), c.target()) // a DHT lookup's dial
	select {
	case <-sb.Done():
		t.Fatal("the pinned (talk) session was evicted for a lookup's dial")
	case <-time.After(time.Second):
	}
}
