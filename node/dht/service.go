package dht

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

// Endpoint is the DHT service's router id.
const Endpoint = "dht"

// Requests the service serves on the router.
type (
	// LookupRequest looks up the K nodes closest to Target; the reply is
	// a LookupResult. A zero Deadline means DefaultDeadline.
	LookupRequest struct {
		Target   identity.ID
		Deadline time.Time
	}
	// JobRequest runs one of the periodic jobs now (the cron's jobs):
	// "refresh", "ping", "bootstrap" (when the table is empty) or "save".
	// The reply is nil. A zero Deadline means DefaultDeadline.
	JobRequest struct {
		Job      string
		Deadline time.Time
	}
	// StatsRequest asks for the table's figures; the reply is a Stats.
	StatsRequest struct{}
)

// LookupResult is the reply to a LookupRequest.
type LookupResult struct {
	Nodes []Node
	Stats LookupStats
}

// Stats describe the table.
type Stats struct {
	Nodes, Buckets int
	Note           string // why the table is empty, when it is
}

// Service is the node's DHT: the routing table, fed by the kernel's
// handshakes, the node_find handler, lookups and the periodic jobs.
type Service struct {
	Router *router.Router
	Logger *slog.Logger
	Table  *Table
	// Meta keeps the table across restarts.
	Meta *store.Meta
	// Checker verifies and spends the stamps that pay for node_find.
	Checker *stamps.Checker
	// Bits is the work this node asks of a node_find.
	Bits int
	// Mint mints a stamp (by the miner pool).
	Mint func(ctx context.Context, resource string, bits int) (string, error)
	// Bootstrap lists the seed nodes: host:port or address@host:port.
	Bootstrap []string
	// RequestTimeout bounds one node_find (default 10 s).
	RequestTimeout time.Duration

	ep       *router.Endpoint
	subOnce  sync.Once
	up, down *router.Subscription

	// suspects are table nodes whose request failed, for Run to check.
	suspects chan identity.Address

	mu       sync.Mutex
	limits   map[*peer.Session]*bucketLimit
	checking map[identity.Address]bool
	haveSeen bool // a peer has connected at least once
}

// MaxRefreshes is the most bucket lookups of one refresh (a job's, or a
// joining node's).
const MaxRefreshes = 16

// DefaultDeadline bounds a lookup or job whose request names no deadline.
const DefaultDeadline = 2 * time.Minute

// MaxPeerBits is the most work this node does for one node_find to a peer
// that asks for more than its own Bits: a peer must not be able to take
// the miners away from everything else.
const MaxPeerBits = 20

const (
	tableKey      = "dht/table"
	refreshAge    = time.Hour        // a bucket unrefreshed this long is looked up
	replaceAge    = time.Hour        // a replacement unseen this long is forgotten
	pingAge       = 15 * time.Minute // a node quiet this long is checked
	maxPings      = 32               // liveness checks per ping job
	floodRate     = 10.0             // node_find per second a session may send
	floodBurst    = 40.0
	maxLiveChecks = 8 // concurrent liveness checks of full buckets
)

// Handlers returns the kernel frame handlers of the DHT. Call it before
// the kernel starts: it also subscribes the service to the kernel's peer
// events, so that Run misses none of the sessions the kernel opens first.
func (s *Service) Handlers() map[string]kernel.FrameHandler {
	s.subscribe()
	return map[string]kernel.FrameHandler{NameFindNode: s.handleFind}
}

func (s *Service) subscribe() {
	s.subOnce.Do(func() {
		s.up = s.Router.Subscribe(kernel.TopicPeerUp, 256)
		s.down = s.Router.Subscribe(kernel.TopicPeerDown, 256)
		s.suspects = make(chan identity.Address, 64)
	})
}

// Run serves the DHT until ctx ends: it loads the saved table, adds the
// peers the kernel proves, joins through the bootstrap nodes and answers
// lookups and jobs.
func (s *Service) Run(ctx context.Context, ready func()) error {
	ep, err := s.Router.Register(Endpoint, 64)
	if err != nil {
		return err
	}
	defer ep.Close()
	s.ep = ep
	s.mu.Lock()
	s.limits = make(map[*peer.Session]*bucketLimit)
	s.checking = make(map[identity.Address]bool)
	s.mu.Unlock()
	s.subscribe()
	up, down := s.up, s.down
	s.load()
	defer func() {
		if err := s.save(); err != nil {
			s.Logger.Warn("dht: table not saved", "err", err)
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	jobs := make(chan func(), 16) // lookups and jobs run here, one at a time
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case f := <-jobs:
				f()
			}
		}
	}()
	queue := func(f func()) bool {
		select {
		case jobs <- f:
			return true
		default:
			return false
		}
	}
	queue(func() {
		ctx, cancel := withDeadline(ctx, time.Time{})
		defer cancel()
		if err := s.bootstrap(ctx); err != nil {
			s.Logger.Warn("dht: bootstrap", "err", err)
		}
	})
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-up.C():
			if ok {
				s.peerUp(ctx, &wg, ev.(kernel.PeerEvent))
			}
		case ev, ok := <-down.C():
			if ok {
				s.peerDown(ev.(kernel.PeerEvent))
			}
		case a := <-s.suspects:
			if n, ok := s.Table.Get(a); ok {
				s.startCheck(ctx, &wg, n)
			}
		case m := <-ep.Inbox():
			switch req := m.Body.(type) {
			case StatsRequest:
				m.Reply(s.stats(), nil)
			case LookupRequest:
				if !queue(func() {
					ctx, cancel := withDeadline(ctx, req.Deadline)
					defer cancel()
					nodes, st, err := s.Lookup(ctx, req.Target)
					m.Reply(LookupResult{Nodes: nodes, Stats: st}, err)
				}) {
					m.Reply(nil, fmt.Errorf("dht: busy: %w", router.ErrInboxFull))
				}
			case JobRequest:
				job, err := s.job(req.Job)
				if err != nil {
					m.Reply(nil, err)
					continue
				}
				if !queue(func() {
					ctx, cancel := withDeadline(ctx, req.Deadline)
					defer cancel()
					m.Reply(nil, job(ctx))
				}) {
					m.Reply(nil, fmt.Errorf("dht: busy: %w", router.ErrInboxFull))
				}
			default:
				m.Reply(nil, fmt.Errorf("dht: unexpected %T", m.Body))
			}
		}
	}
}

func withDeadline(ctx context.Context, d time.Time) (context.Context, context.CancelFunc) {
	if d.IsZero() {
		d = time.Now().Add(DefaultDeadline)
	}
	return context.WithDeadline(ctx, d)
}

func (s *Service) job(name string) (func(context.Context) error, error) {
	switch name {
	case "refresh":
		return s.refresh, nil
	case "ping":
		return s.ping, nil
	case "bootstrap":
		return func(ctx context.Context) error { return s.bootstrap(ctx) }, nil
	case "save":
		return func(context.Context) error { return s.save() }, nil
	case "expire":
		return func(context.Context) error { s.expire(); return nil }, nil
	}
	return nil, fmt.Errorf("dht: no job %q", name)
}

// peerUp adds a peer whose key a handshake proved, with the address it
// can be dialled at: the one we dialled, or its IP and listen port.
func (s *Service) peerUp(ctx context.Context, wg *sync.WaitGroup, ev kernel.PeerEvent) {
	s.mu.Lock()
	s.haveSeen = true
	s.mu.Unlock()
	addr := dialAddr(ev)
	if addr == "" {
		return // it does not listen: of no use to others
	}
	check, full := s.Table.Add(Node{Address: ev.Address, Addrs: []string{addr}})
	if full {
		// The bucket is full: the oldest node stays if it still answers.
		s.startCheck(ctx, wg, check)
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

func (s *Service) peerDown(ev kernel.PeerEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.limits {
		if sess.Peer() == ev.Address {
			delete(s.limits, sess)
		}
	}
}

// dialAddr returns where a peer of a session can be dialled.
func dialAddr(ev kernel.PeerEvent) string {
	if ev.Info.RemoteAddr == nil {
		return ""
	}
	if !ev.Inbound {
		return ev.Info.RemoteAddr.String()
	}
	host, _, err := net.SplitHostPort(ev.Info.RemoteAddr.String())
	if err != nil || ev.Info.ID.Port <= 0 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(ev.Info.ID.Port))
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
	if err := s.connect(ctx, n); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	_, err := s.ep.Call(ctx, kernel.Endpoint, kernel.CallRequest{To: n.Address, Name: wire.NamePing})
	return err
}

// connect makes sure the kernel has a session with n, dialling its
// addresses in turn with n's address expected. Sessions opened for a
// request stay: the peer may be using them too, and the kernel closes the
// least recently used outbound session when it needs the room.
func (s *Service) connect(ctx context.Context, n Node) error {
	if _, err := s.ep.Call(ctx, kernel.Endpoint, kernel.SessionRequest{Address: n.Address}); err == nil {
		return nil
	}
	err := errors.New("no network address")
	for _, a := range n.Addrs {
		cctx, cancel := context.WithTimeout(ctx, s.timeout())
		_, err = s.ep.Call(cctx, kernel.Endpoint, kernel.ConnectRequest{Target: n.Address.String() + "@" + a})
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
// peer is gone: not when this node failed (limits, a full inbox or queue,
// minting), nor when the peer answered with an error frame.
func peerFailed(err error) bool {
	var local localError
	var pe *peer.ProtocolError
	switch {
	case errors.As(err, &local),
		errors.As(err, &pe) && pe.Remote,
		errors.Is(err, kernel.ErrTooManyPeers),
		errors.Is(err, router.ErrInboxFull),
		errors.Is(err, router.ErrNoEndpoint),
		errors.Is(err, router.ErrClosed),
		errors.Is(err, peer.ErrQueueFull),
		errors.Is(err, peer.ErrTooManyCalls):
		return false
	}
	return true
}

func (s *Service) findNode(ctx context.Context, n Node, target identity.ID) ([]Node, error) {
	if err := s.connect(ctx, n); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	info, err := router.CallAs[peer.Info](ctx, s.ep, kernel.Endpoint, kernel.SessionRequest{Address: n.Address})
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
	env, err := router.CallAs[wire.Envelope](ctx, s.ep, kernel.Endpoint, kernel.CallRequest{
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

// Lookup finds the K nodes closest to target, starting from the table.
func (s *Service) Lookup(ctx context.Context, target identity.ID) ([]Node, LookupStats, error) {
	nodes, st, err := Lookup(ctx, s, s.Table.Self(), target, s.Table.Closest(target, K))
	if err == nil {
		s.Table.Refreshed(target)
	}
	return nodes, st, err
}

// handleFind answers node_find on the kernel's read goroutine: it checks
// the flood limit and the stamp, and answers from the table.
func (s *Service) handleFind(k *kernel.Kernel, sess *peer.Session, e wire.Envelope) {
	ctx := context.Background()
	if e.RID == 0 {
		sess.SendError(ctx, e, wire.CodeInvalidData, "node_find needs a rid")
		return
	}
	if !s.allow(sess) {
		sess.SendError(ctx, e, wire.CodeBusy, "too many node_find requests: slow down")
		return
	}
	var req FindNode
	if err := e.Decode(&req); err != nil {
		sess.SendError(ctx, e, wire.CodeInvalidData, err.Error())
		return
	}
	target, err := ParseTarget(req.Target)
	if err != nil {
		sess.SendError(ctx, e, wire.CodeInvalidData, err.Error())
		return
	}
	if _, err := s.Checker.Check(req.Stamp, StampResource(k.Address()), s.Bits); err != nil {
		var herr *hashcash.Error
		if errors.As(err, &herr) {
			sess.SendError(ctx, e, wire.CodeHashcash, err.Error())
		} else {
			sess.SendError(ctx, e, wire.CodeFailed, "stamp not checked")
			s.Logger.Warn("dht: stamp check failed", "err", err)
		}
		return
	}
	closest := s.Table.Closest(target, K+1)
	var out []Node
	for _, n := range closest {
		if n.Address != sess.Peer() && len(out) < K {
			out = append(out, n)
		}
	}
	sess.Reply(ctx, e, NameFoundNode, FoundNode{Nodes: records(out)})
}

// allow applies the flood limit to a session's node_find requests.
func (s *Service) allow(sess *peer.Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.limits[sess]
	if b == nil {
		if s.limits == nil {
			s.limits = make(map[*peer.Session]*bucketLimit)
		}
		// Forget sessions that ended, should their peer.down event have
		// been dropped.
		s.forgetEndedLocked()
		b = &bucketLimit{tokens: floodBurst, last: time.Now()}
		s.limits[sess] = b
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

// bootstrap joins the network when the table is empty: it dials the seed
// nodes, looks up its own id and refreshes.
func (s *Service) bootstrap(ctx context.Context) error {
	if s.Table.Len() > 0 {
		return nil
	}
	for _, seed := range s.Bootstrap {
		v, err := s.connectSeed(ctx, seed)
		if err != nil {
			s.Logger.Warn("dht: bootstrap node unreachable", "node", seed, "err", err)
			continue
		}
		// The handshake proved the seed's key: it may enter the table, at
		// the IP address the session reached.
		a, _ := v.(identity.Address)
		if iv, err := s.ep.Call(ctx, kernel.Endpoint, kernel.SessionRequest{Address: a}); err == nil {
			if info, ok := iv.(peer.Info); ok && info.RemoteAddr != nil {
				s.Table.Add(Node{Address: a, Addrs: []string{info.RemoteAddr.String()}})
			}
		}
	}
	if s.Table.Len() == 0 {
		if len(s.Bootstrap) == 0 {
			s.Logger.Warn("dht: the routing table is empty and no bootstrap nodes are set: give --bootstrap or --connect to join a network")
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

// connectSeed dials a seed node. At start the kernel may not have
// registered on the router yet: it is waited for, a little.
func (s *Service) connectSeed(ctx context.Context, seed string) (any, error) {
	for try := 0; ; try++ {
		cctx, cancel := context.WithTimeout(ctx, s.timeout())
		v, err := s.ep.Call(cctx, kernel.Endpoint, kernel.ConnectRequest{Target: seed})
		cancel()
		if !errors.Is(err, router.ErrNoEndpoint) || try == 50 {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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

// expire forgets what has grown too old to trust: replacement nodes not
// seen for an hour, and the flood limits of sessions that have ended. (Nodes
// in the table are not expired by age: the ping job checks them, and only a
// failed check removes one.)
func (s *Service) expire() {
	n := s.Table.ExpireReplacements(replaceAge)
	s.mu.Lock()
	s.forgetEndedLocked()
	s.mu.Unlock()
	s.Logger.Debug("dht: expired", "replacements", n)
}

// forgetEndedLocked drops the flood limits of sessions that have ended.
// s.mu is held.
func (s *Service) forgetEndedLocked() {
	for sess := range s.limits {
		select {
		case <-sess.Done():
			delete(s.limits, sess)
		default:
		}
	}
}

// ping checks the nodes that have been quiet for a while.
func (s *Service) ping(ctx context.Context) error {
	cutoff := time.Now().Add(-pingAge)
	n := 0
	for _, nd := range s.Table.Nodes() {
		if nd.LastSeen.After(cutoff) {
			continue
		}
		if n++; n > maxPings {
			break
		}
		s.checkLive(ctx, nd)
	}
	return nil
}

func (s *Service) stats() Stats {
	st := Stats{Nodes: s.Table.Len(), Buckets: s.Table.Buckets()}
	if st.Nodes == 0 {
		s.mu.Lock()
		seen := s.haveSeen
		s.mu.Unlock()
		switch {
		case len(s.Bootstrap) == 0 && !seen:
			st.Note = "empty: no peers and no bootstrap nodes"
		default:
			st.Note = "empty: no peer reached yet"
		}
	}
	return st
}

func (s *Service) save() error {
	if s.Meta == nil {
		return nil
	}
	if err := s.Meta.Put(tableKey, s.Table.Nodes()); err != nil {
		return fmt.Errorf("dht: save table: %w", err)
	}
	return nil
}

func (s *Service) load() {
	if s.Meta == nil {
		return
	}
	var nodes []Node
	if err := s.Meta.Get(tableKey, &nodes); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Logger.Warn("dht: saved table not loaded", "err", err)
		}
		return
	}
	for _, n := range nodes {
		s.Table.Add(n)
	}
	s.Logger.Info("dht: table loaded", "nodes", s.Table.Len())
}

// Contribute adds the table's figures to a node's Info.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	st, err := router.CallAs[Stats](ctx, ep, Endpoint, StatsRequest{})
	if err != nil {
		return err
	}
	in.DHTNodes, in.Buckets, in.DHTNote = &st.Nodes, &st.Buckets, st.Note
	return nil
}
