package dht

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

// goFind answers a node_find frame on a goroutine of its own, or tells the
// peer the node is busy when MaxFinds are being answered.
func (s *Service) goFind(ctx context.Context, wg *sync.WaitGroup, m *router.Msg, f kernelapi.Frame) {
	select {
	case s.finds <- struct{}{}:
	default:
		// A one-way message: Run's goroutine never waits on the kernel.
		s.ep.Send(ctx, kernelapi.Endpoint, kernelapi.ErrorRequest{
			To: f.From, RID: f.Envelope.RID, Name: f.Envelope.Name, Code: wire.CodeBusy, Text: "too many node_find requests: try again later",
		})
		m.Reply(nil, nil)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-s.finds }()
		s.handleFind(ctx, f)
		m.Reply(nil, nil)
	}()
}

// handleFind answers node_find: it checks the flood limit and the stamp,
// and answers from the table. A node low on disk space cannot spend the
// stamp (a write) and refuses with 9110.
func (s *Service) handleFind(ctx context.Context, f kernelapi.Frame) {
	e := f.Envelope
	if e.RID == 0 {
		s.refuse(ctx, f, wire.CodeInvalidData, "node_find needs a rid")
		return
	}
	if !s.allow(f.From) {
		s.refuse(ctx, f, wire.CodeBusy, "too many node_find requests: slow down")
		return
	}
	var req FindNode
	if err := e.Decode(&req); err != nil {
		s.refuse(ctx, f, wire.CodeInvalidData, err.Error())
		return
	}
	target, err := ParseTarget(req.Target)
	if err != nil {
		s.refuse(ctx, f, wire.CodeInvalidData, err.Error())
		return
	}
	if _, err := s.Checker.Check(req.Stamp, StampResource(s.Self), s.Bits); err != nil {
		var herr *hashcash.Error
		switch {
		case errors.As(err, &herr):
			s.refuse(ctx, f, wire.CodeHashcash, err.Error())
		case errors.Is(err, store.ErrLowSpace):
			// The disk watcher has logged it; the peer asks another node.
			s.refuse(ctx, f, wire.CodeInsufficientStorage, "this node is low on disk space: ask another node")
		default:
			s.refuse(ctx, f, wire.CodeFailed, "stamp not checked")
			s.Logger.Warn("dht: stamp check failed", "err", err)
		}
		return
	}
	closest := s.Table.Closest(target, K+1)
	var out []Node
	for _, n := range closest {
		if n.Address != f.From && len(out) < K {
			out = append(out, n)
		}
	}
	if err := kernelapi.Reply(ctx, s.ep, f, NameFoundNode, FoundNode{Nodes: records(out)}); err != nil {
		s.Logger.Debug("dht: node_found not sent", "peer", f.From.String(), "err", err)
	}
}

// refuse answers the frame f with an error frame.
func (s *Service) refuse(ctx context.Context, f kernelapi.Frame, code wire.Code, text string) {
	if err := kernelapi.Refuse(ctx, s.ep, f, code, text); err != nil {
		s.Logger.Debug("dht: error frame not sent", "peer", f.From.String(), "err", err)
	}
}

// allow applies the flood limit to a peer's node_find requests.
func (s *Service) allow(from identity.Address) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.limits[from]
	if b == nil {
		b = &bucketLimit{tokens: floodBurst, last: time.Now()}
		s.limits[from] = b
	}
	return b.take(time.Now())
}

// bucketLimit is a token bucket.
type bucketLimit struct {
	tokens float64
	last   time.Time
}

func (b *bucketLimit) take(now time.Time) bool {
	b.tokens = min(floodBurst, b.tokens+now.Sub(b.last).Seconds()*floodRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
