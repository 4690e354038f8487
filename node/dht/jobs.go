package dht

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
)

// goJob runs the job named name on a goroutine of its own and answers m
// (if not nil) with its outcome. A request for a job that is running
// already waits for that run and gets its outcome.
func (s *Service) goJob(ctx context.Context, wg *sync.WaitGroup, m *router.Msg, name string) {
	reply := func(err error) {
		if m != nil {
			m.Reply(nil, err)
		} else if err != nil {
			s.Logger.Warn("dht: "+name, "err", err)
		}
	}
	job, err := s.job(name)
	if err != nil {
		reply(err)
		return
	}
	s.mu.Lock()
	run, busy := s.running[name]
	if !busy {
		run = &jobRun{done: make(chan struct{})}
		s.running[name] = run
	}
	s.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if busy {
			select {
			case <-run.done:
				reply(run.err)
			case <-ctx.Done():
				reply(ctx.Err())
			}
			return
		}
		jctx, cancel := withDeadline(ctx)
		defer cancel()
		run.err = job(jctx)
		s.mu.Lock()
		delete(s.running, name)
		s.mu.Unlock()
		close(run.done)
		reply(run.err)
	}()
}

// jobRun is a run of a job; err is set when done closes.
type jobRun struct {
	done chan struct{}
	err  error
}

func (s *Service) job(name string) (func(context.Context) error, error) {
	switch name {
	case "refresh":
		return s.refresh, nil
	case "ping":
		return s.ping, nil
	case "bootstrap":
		return s.bootstrap, nil
	case "rejoin":
		return s.rejoin, nil
	case "save":
		return func(context.Context) error { return s.save() }, nil
	case "expire":
		return func(context.Context) error { s.expire(); return nil }, nil
	}
	return nil, fmt.Errorf("dht: no job %q", name)
}

// bootstrap joins the network when the table is empty: it dials the seed
// nodes, looks up its own id and refreshes.
func (s *Service) bootstrap(ctx context.Context) error {
	if s.Table.Len() > 0 {
		return nil
	}
	for _, seed := range s.Bootstrap {
		p, err := router.CallAs[kernelapi.PeerInfo](ctx, s.ep, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: seed})
		if err != nil {
			s.Logger.Warn("dht: bootstrap node unreachable (setting bootstrap)", "node", seed, "err", err)
			continue
		}
		// The handshake proved the seed's key: it may enter the table, at
		// the IP address the session reached.
		if p.RemoteAddr != nil {
			s.Table.Add(Node{Address: p.Address, Addrs: []string{p.RemoteAddr.String()}})
		}
	}
	if s.Table.Len() == 0 {
		if len(s.Bootstrap) == 0 {
			s.warnEmpty()
			return nil
		}
		return errors.New("dht: no bootstrap node could be reached")
	}
	if _, _, err := s.Lookup(ctx, s.Table.Self()); err != nil {
		return fmt.Errorf("dht: self lookup: %w", err)
	}
	// A joining node refreshes every bucket up to its closest neighbours',
	// however recently: a new table knows the network only near its own id.
	return s.refreshOlder(ctx, 0)
}

// warnEmpty says, once, that the node cannot join a network by itself:
// unless a peer has connected (as one given with --connect does), which
// fills the table.
func (s *Service) warnEmpty() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.warned || s.haveSeen || len(s.Connect) > 0 {
		return
	}
	s.warned = true
	s.Logger.Warn("dht: the routing table is empty and no bootstrap nodes are set: give --bootstrap or --connect to join a network")
}

// refresh looks up a random id in each bucket not refreshed for an hour.
func (s *Service) refresh(ctx context.Context) error { return s.refreshOlder(ctx, refreshAge) }

// refreshOlder looks up a random id in each bucket not refreshed within
// age, at most MaxRefreshes of them.
func (s *Service) refreshOlder(ctx context.Context, age time.Duration) error {
	ids := s.Table.Stale(age, func(b int) identity.ID {
		var r [32]byte
		rand.Read(r[:])
		return RandomIDInBucket(s.Table.Self(), b, r[:])
	})
	if len(ids) > MaxRefreshes {
		ids = ids[:MaxRefreshes]
	}
	for _, id := range ids {
		if _, _, err := s.Lookup(ctx, id); err != nil && !errors.Is(err, ErrNoNodes) {
			return err
		}
	}
	return nil
}

// expire forgets replacement nodes not seen for an hour. (Nodes in the
// table are not expired by age: the ping job checks them, and only a
// failed check removes one.)
func (s *Service) expire() {
	n := s.Table.ExpireReplacements(replaceAge)
	s.Logger.Debug("dht: expired", "replacements", n)
}

// ping checks the nodes that have been quiet for a while, a few at a time.
func (s *Service) ping(ctx context.Context) error {
	cutoff := time.Now().Add(-pingAge)
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxLiveChecks)
	n := 0
	for _, nd := range s.Table.Nodes() {
		if nd.LastSeen.After(cutoff) {
			continue
		}
		if n++; n > maxPings {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.checkLive(ctx, nd)
		}()
	}
	wg.Wait()
	return nil
}

// saveEvery is how often Run saves the table if it has changed: a node
// killed without its final save loses at most this much of its table's
// changes. A variable for tests.
var saveEvery = 5 * time.Second

// keepSaved saves the table every saveEvery while it differs from the one
// saved last, and keeps the kernel's pins in step with the table, until
// ctx ends.
func (s *Service) keepSaved(ctx context.Context) {
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	warned := false
	pinned := make(map[identity.Address]bool)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.syncPins(ctx, pinned)
		switch err := s.saveChanged(); {
		case err == nil:
			warned = false
		case errors.Is(err, store.ErrLowSpace):
			// The disk watcher has said so; the table is saved once
			// there is room again.
			s.Logger.Debug("dht: table not saved", "err", err)
		case !warned:
			warned = true
			s.Logger.Warn("dht: table not saved", "err", err)
		}
	}
}

// syncPins asks the kernel to keep the sessions with the table's nodes
// (they are not closed to make room for new peers), and to stop keeping
// those of nodes that have left the table. pinned holds what the kernel
// was told.
func (s *Service) syncPins(ctx context.Context, pinned map[identity.Address]bool) {
	want := make(map[identity.Address]bool)
	for _, n := range s.Table.Nodes() {
		want[n.Address] = true
	}
	pin := func(a identity.Address, on bool) {
		if _, err := s.ep.Call(ctx, kernelapi.Endpoint, kernelapi.PinRequest{Address: a, Pinned: on}); err != nil {
			return // told again at the next tick
		}
		if on {
			pinned[a] = true
		} else {
			delete(pinned, a)
		}
	}
	for a := range want {
		if !pinned[a] {
			pin(a, true)
		}
	}
	for a := range pinned {
		if !want[a] {
			pin(a, false)
		}
	}
}

// saveChanged saves the table if its nodes or their addresses differ
// from the ones saved last. (When only the times nodes were last seen
// changed, the table waits for the save job.)
func (s *Service) saveChanged() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	nodes := s.Table.Nodes()
	sum := tableSum(nodes)
	if sum == s.savedSum {
		return nil
	}
	return s.saveLocked(nodes, sum)
}

// save saves the table.
func (s *Service) save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	nodes := s.Table.Nodes()
	return s.saveLocked(nodes, tableSum(nodes))
}

// saveLocked stores nodes, whose tableSum is sum; saveMu is held.
func (s *Service) saveLocked(nodes []Node, sum uint64) error {
	if s.Meta == nil {
		return nil
	}
	if err := s.Meta.Put(tableKey, nodes); err != nil {
		return fmt.Errorf("dht: save table: %w", err)
	}
	s.savedSum = sum
	return nil
}

// tableSum digests the addresses of nodes and where they are dialled, in
// any order, to tell cheaply whether the table has changed since a save.
func tableSum(nodes []Node) uint64 {
	var sum uint64
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write(n.Address[:])
		for _, a := range n.Addrs {
			h.Write([]byte{0})
			h.Write([]byte(a))
		}
		sum += h.Sum64()
	}
	return sum
}

// load adds the saved table's nodes to the table and returns how many
// there were.
func (s *Service) load() int {
	if s.Meta == nil {
		return 0
	}
	var nodes []Node
	if err := s.Meta.Get(tableKey, &nodes); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Logger.Warn("dht: saved table not loaded", "err", err)
		}
		return 0
	}
	for _, n := range nodes {
		s.Table.Add(n)
	}
	s.saveMu.Lock()
	s.savedSum = tableSum(s.Table.Nodes())
	s.saveMu.Unlock()
	s.Logger.Info("dht: table loaded", "nodes", s.Table.Len())
	return len(nodes)
}

// rejoinDials is how many saved nodes a restarted node dials at once.
const rejoinDials = 8

// rejoin brings a node whose table was loaded back into the network at
// once, rather than at the bootstrap job (which does nothing when the
// table is not empty): it dials the most recently seen saved nodes, and
// once one answers, looks up its own id, as a joining node does. A node
// that answers is seen anew (peer up); one that does not is left to the
// ping job, since this node may be the one that is offline.
func (s *Service) rejoin(ctx context.Context) error {
	nodes := s.Table.Nodes()
	if len(nodes) == 0 {
		return nil
	}
	slices.SortFunc(nodes, func(a, b Node) int { return b.LastSeen.Compare(a.LastSeen) })
	nodes = nodes[:min(len(nodes), rejoinDials)]
	var wg sync.WaitGroup
	var reached atomic.Int32
	for _, n := range nodes {
		wg.Go(func() {
			if s.connect(ctx, n) == nil {
				reached.Add(1)
			}
		})
	}
	wg.Wait()
	if reached.Load() == 0 {
		return fmt.Errorf("dht: rejoin: none of the %d saved nodes dialled answered", len(nodes))
	}
	s.Logger.Info("dht: rejoined through saved nodes", "dialled", len(nodes), "answered", reached.Load())
	if _, _, err := s.Lookup(ctx, s.Table.Self()); err != nil && !errors.Is(err, ErrNoNodes) {
		return fmt.Errorf("dht: rejoin: self lookup: %w", err)
	}
	return nil
}
