package kernel

import (
	"context"
	"fmt"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

// serveRequest answers the requests of kernelapi. ctx ends when the
// caller gives up.
func (k *Kernel) serveRequest(ctx context.Context, m *router.Msg) (any, error) {
	switch req := m.Body.(type) {
	case kernelapi.HandleRequest:
		return nil, k.registerNames(m.From, req.Names)
	case kernelapi.PeersRequest:
		return k.Peers(), nil
	case kernelapi.SessionsRequest:
		return k.sessionInfos(), nil
	case kernelapi.SessionRequest:
		return k.sessionInfo(req.Address)
	case kernelapi.PinRequest:
		k.pin(m.From, req.Address, req.Pinned)
		return nil, nil
	case kernelapi.CloseRequest:
		if s := k.Session(req.Address); s != nil {
			s.Close(req.Reason)
		}
		return nil, nil
	case kernelapi.SendRequest:
		return nil, k.answer(req.To, "send "+req.Name, func(s *peer.Session) error {
			return s.Send(ctx, req.Name, req.Data)
		})
	case kernelapi.ReplyRequest:
		return nil, k.answer(req.To, "reply "+req.Name, func(s *peer.Session) error {
			return s.Reply(ctx, wire.Envelope{RID: req.RID}, req.Name, req.Data)
		})
	case kernelapi.ErrorRequest:
		return nil, k.answerUsing(req.To, false, "error on "+req.Name, func(s *peer.Session) error {
			return s.SendError(ctx, wire.Envelope{Name: req.Name, RID: req.RID}, req.Code, req.Text)
		})
	case kernelapi.ConnectRequest:
		k.later(m, func() (any, error) {
			s, err := k.connect(ctx, req.Target, false, req.Verify)
			if err != nil {
				return nil, err
			}
			return k.sessionInfo(s.Peer())
		})
		return nil, router.ErrDeferred
	case kernelapi.CallRequest:
		s := k.Session(req.To)
		if s == nil {
			return nil, fmt.Errorf("call %s on %s: %w", req.Name, req.To, kernelapi.ErrNoSession)
		}
		k.later(m, func() (any, error) {
			e, err := s.Call(ctx, req.Name, req.Data)
			return e, localBusy(err)
		})
		return nil, router.ErrDeferred
	default:
		return nil, fmt.Errorf("kernel: unexpected %T", m.Body)
	}
}

// later answers m with fn's results, from a goroutine of the kernel's.
func (k *Kernel) later(m *router.Msg, fn func() (any, error)) {
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		m.Reply(fn())
	}()
}

// sessionInfo describes the session with a peer.
func (k *Kernel) sessionInfo(addr identity.Address) (kernelapi.PeerInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.sessions[addr]
	if !ok || c.evicted {
		return kernelapi.PeerInfo{}, fmt.Errorf("session with %s: %w", addr, kernelapi.ErrNoSession)
	}
	c.touch()
	return peerInfo(c.s, c.inbound), nil
}

// sessionInfos describes the peers of the registered sessions.
func (k *Kernel) sessionInfos() []kernelapi.PeerInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]kernelapi.PeerInfo, 0, len(k.sessions))
	for _, c := range k.sessions {
		if !c.evicted {
			out = append(out, peerInfo(c.s, c.inbound))
		}
	}
	return out
}

// peerInfo describes the peer of s.
func peerInfo(s *peer.Session, inbound bool) kernelapi.PeerInfo {
	in := s.Info()
	return kernelapi.PeerInfo{Address: in.Address, Hello: in.Hello, ID: in.ID, RemoteAddr: in.RemoteAddr, Inbound: inbound}
}

// Contribute adds the kernel's figures to a node's Info: a
// node.Contributor.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	p, err := router.CallAs[kernelapi.Peers](ctx, ep, kernelapi.Endpoint, kernelapi.PeersRequest{})
	if err != nil {
		return err
	}
	n := p.Inbound + p.Outbound
	if p.Listen != "" {
		in.Listen = p.Listen // the bound address, as with port 0
	}
	in.Peers, in.PeersIn, in.PeersOut = &n, p.Inbound, p.Outbound
	in.TrafficIn, in.TrafficOut = &p.TrafficIn, &p.TrafficOut
	in.Connections = p.Connections
	in.Targets = p.Targets
	return nil
}
