package dht

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/wire"
)

// reach makes sure the kernel has a session with addr: the one it has, or
// one dialled to the addresses the table knows, or else those a lookup of
// addr finds.
func (s *Service) reach(ctx context.Context, addr identity.Address) (kernelapi.PeerInfo, error) {
	if addr == s.Self {
		return kernelapi.PeerInfo{}, errors.New("that is this node's own address")
	}
	if info, err := s.session(ctx, addr); err == nil || !errors.Is(err, kernelapi.ErrNoSession) {
		return info, err
	}
	if n, ok := s.Table.Get(addr); ok {
		if err := s.connect(ctx, n); err == nil {
			return s.session(ctx, addr)
		}
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	nodes, _, err := s.Lookup(ctx, addr.ID())
	if err != nil {
		return kernelapi.PeerInfo{}, fmt.Errorf("not connected to %s, and the DHT lookup failed: %w", addr, err)
	}
	for _, n := range nodes {
		if n.Address != addr {
			continue
		}
		if err := s.connect(ctx, n); err != nil {
			return kernelapi.PeerInfo{}, fmt.Errorf("cannot reach %s: %w", addr, err)
		}
		return s.session(ctx, addr)
	}
	return kernelapi.PeerInfo{}, fmt.Errorf("not connected to %s, and the DHT does not know where it is: connect to ADDRESS@HOST:PORT", addr)
}

// session asks the kernel about its session with addr.
func (s *Service) session(ctx context.Context, addr identity.Address) (kernelapi.PeerInfo, error) {
	return router.CallAs[kernelapi.PeerInfo](ctx, s.ep, kernelapi.Endpoint, kernelapi.SessionRequest{Address: addr})
}

// connect makes sure the kernel has a session with n, dialling its
// addresses in turn with n's address expected. Sessions opened for a
// request stay: the peer may be using them too, and the kernel closes the
// least recently used outbound session when it needs the room.
func (s *Service) connect(ctx context.Context, n Node) error {
	if _, err := s.session(ctx, n.Address); err == nil {
		return nil
	}
	err := errors.New("no network address")
	for _, a := range n.Addrs {
		cctx, cancel := context.WithTimeout(ctx, dialTimeout)
		_, err = s.ep.Call(cctx, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: n.Address.String() + "@" + a})
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("dial %s: %w", n.Address, err)
}

func (s *Service) timeout() time.Duration {
	if s.RequestTimeout > 0 {
		return s.RequestTimeout
	}
	return 10 * time.Second
}

// Lookup finds the K nodes closest to target, starting from the table. At
// most MaxLookups run at once; a lookup waits for its turn within ctx.
func (s *Service) Lookup(ctx context.Context, target identity.ID) ([]Node, LookupStats, error) {
	select {
	case s.lookups <- struct{}{}:
		defer func() { <-s.lookups }()
	case <-ctx.Done():
		return nil, LookupStats{}, fmt.Errorf("dht: waiting for a lookup slot (max %d): %w", cap(s.lookups), ctx.Err())
	}
	nodes, st, err := Lookup(ctx, s, s.Table.Self(), target, s.Table.Closest(target, K))
	if err == nil {
		s.Table.Refreshed(target)
	}
	return nodes, st, err
}

// FindNode asks n for the nodes closest to target: it implements Finder
// over the kernel's sessions, paying each request with a stamp of the
// bits n asks for.
func (s *Service) FindNode(ctx context.Context, n Node, target identity.ID) ([]Node, error) {
	// The addresses dialled may come from another node's reply: a failure
	// says nothing sure about the node, and must not evict it from the
	// table at once. A table node that fails is checked (checkLive, with
	// the table's own addresses), and evicted if that fails too.
	nodes, err := s.findNode(ctx, n, target)
	if err != nil && ctx.Err() == nil && peerFailed(err) {
		s.suspect(n.Address)
	}
	return nodes, err
}

// localError marks a failure of this node's own (no stamp minted, a price
// it will not pay): it says nothing about the peer.
type localError struct{ error }

func (e localError) Unwrap() error { return e.error }

// peerFailed reports whether err, from a request to a peer, may mean the
// peer is gone: not when this node failed (its limits, a full inbox or
// queue, minting), nor when the peer answered with an error frame.
func peerFailed(err error) bool {
	var local localError
	var pe *wire.ProtocolError
	switch {
	case errors.As(err, &local),
		errors.As(err, &pe) && pe.Remote,
		errors.Is(err, kernelapi.ErrBusy),
		errors.Is(err, router.ErrInboxFull),
		errors.Is(err, router.ErrNoEndpoint),
		errors.Is(err, router.ErrClosed):
		return false
	}
	return true
}

func (s *Service) findNode(ctx context.Context, n Node, target identity.ID) ([]Node, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	if err := s.connect(ctx, n); err != nil {
		return nil, err
	}
	info, err := s.session(ctx, n.Address)
	if err != nil {
		return nil, err
	}
	bits := info.ID.Hashcash[Purpose]
	if bits > max(s.Bits, MaxPeerBits) {
		return nil, localError{fmt.Errorf("node_find to %s: it asks %d bits of work, more than this node pays (%d)", n.Address, bits, max(s.Bits, MaxPeerBits))}
	}
	stamp, err := s.Mint(ctx, StampResource(n.Address), bits)
	if err != nil {
		return nil, localError{fmt.Errorf("node_find to %s: mint: %w", n.Address, err)}
	}
	env, err := router.CallAs[wire.Envelope](ctx, s.ep, kernelapi.Endpoint, kernelapi.CallRequest{
		To: n.Address, Name: NameFindNode,
		Data: FindNode{Target: hex.EncodeToString(target[:]), Stamp: stamp},
	})
	if err != nil {
		return nil, fmt.Errorf("node_find to %s: %w", n.Address, err)
	}
	var found FoundNode
	if err := env.Decode(&found); err != nil {
		return nil, fmt.Errorf("node_found from %s: %w", n.Address, err)
	}
	if err := found.Validate(n.Address); err != nil {
		return nil, fmt.Errorf("node_found from %s: %w", n.Address, err)
	}
	nodes := found.nodes(s.Table.Self())
	if ta, ok := info.RemoteAddr.(*net.TCPAddr); ok {
		if from, ok := netip.AddrFromSlice(ta.IP); ok {
			nodes = Reachable(nodes, from)
		}
	}
	return nodes, nil
}

// suspect asks Run to check a node whose request failed, if it is in the
// table. It never blocks: a suspect that finds no room waits for the ping
// job.
func (s *Service) suspect(a identity.Address) {
	if _, ok := s.Table.Get(a); !ok || s.suspects == nil {
		return
	}
	select {
	case s.suspects <- a:
	default:
	}
}

// startCheck checks in the background whether n is alive (checkLive),
// unless it is being checked already or too many checks run.
func (s *Service) startCheck(ctx context.Context, wg *sync.WaitGroup, check Node) {
	s.mu.Lock()
	busy := s.checking[check.Address] || len(s.checking) >= maxLiveChecks
	if !busy {
		s.checking[check.Address] = true
	}
	s.mu.Unlock()
	if busy {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { s.mu.Lock(); delete(s.checking, check.Address); s.mu.Unlock() }()
		s.checkLive(ctx, check)
	}()
}

// checkLive pings n: it stays in the table (as most recently seen) if it
// answers, and is replaced if it does not.
func (s *Service) checkLive(ctx context.Context, n Node) {
	if err := s.pingNode(ctx, n); err != nil {
		if ctx.Err() != nil || !peerFailed(err) {
			s.Logger.Debug("dht: liveness check not done", "node", n.Address.String(), "err", err)
			return
		}
		s.Logger.Debug("dht: node failed its liveness check", "node", n.Address.String(), "err", err)
		s.Table.Failed(n.Address)
		return
	}
	n.LastSeen = time.Now()
	s.Table.Add(n)
}

// pingNode dials n if need be and pings it.
func (s *Service) pingNode(ctx context.Context, n Node) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	if err := s.connect(ctx, n); err != nil {
		return err
	}
	_, err := s.ep.Call(ctx, kernelapi.Endpoint, kernelapi.CallRequest{To: n.Address, Name: wire.NamePing})
	return err
}
