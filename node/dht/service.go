package dht

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/store"
)

// Service is the node's DHT: the routing table, fed by the kernel's
// handshakes, the node_find handler, lookups and the periodic jobs. It
// reaches the kernel only through the router (package kernelapi).
//
// Run's goroutine only dispatches: node_find requests, lookups, reaches
// and jobs each run on a goroutine of their own, within limits, so that a
// slow peer or a long job never holds up another request.
type Service struct {
	Router *router.Router
	Logger *slog.Logger
	// Self is the node's address; Table is its routing table.
	Self  identity.Address
	Table *Table
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
	// Connect lists the peers the kernel keeps connected (--connect):
	// the table fills from them, so with some the node is not alone.
	Connect []string
	// RequestTimeout bounds one node_find (default 10 s).
	RequestTimeout time.Duration
	// MaxLookups bounds the lookups that run at once (DefaultMaxLookups if
	// zero); more wait for a turn within their caller's deadline.
	MaxLookups int

	ep       *router.Endpoint
	lookups  chan struct{} // a token per running lookup
	finds    chan struct{} // a token per node_find being answered
	verifies chan struct{} // a token per inbound peer's address being checked

	mu       sync.Mutex
	limits   map[identity.Address]*bucketLimit
	checking map[identity.Address]bool
	running  map[string]*jobRun
	haveSeen bool // a peer has connected at least once
	warned   bool // the empty-table warning was logged

	saveMu   sync.Mutex // one save at a time
	savedSum uint64     // the tableSum saved last; under saveMu

	// suspects are table nodes whose request failed, for Run to check.
	suspects chan identity.Address
}

// Limits of the service.
const (
	// DefaultMaxLookups is the default of Service.MaxLookups.
	DefaultMaxLookups = 8
	// MaxFinds bounds the node_find requests answered at once; beyond it
	// a peer is told the node is busy (9050).
	MaxFinds = 32
	// MaxRefreshes is the most bucket lookups of one refresh (a job's, or
	// a joining node's).
	MaxRefreshes = 16
	// DefaultDeadline bounds a lookup or job whose caller set none.
	DefaultDeadline = 2 * time.Minute
	// MaxPeerBits is the most work this node does for one node_find to a
	// peer that asks for more than its own Bits: a peer must not be able to
	// take the miners away from everything else.
	MaxPeerBits = 20
)

const (
	tableKey      = "dht/table"
	refreshAge    = time.Hour        // a bucket unrefreshed this long is looked up
	replaceAge    = time.Hour        // a replacement unseen this long is forgotten
	pingAge       = 15 * time.Minute // a node quiet this long is checked
	maxPings      = 32               // liveness checks per ping job
	floodRate     = 10.0             // node_find per second a peer may send
	floodBurst    = 40.0
	maxLiveChecks = 8 // concurrent liveness checks of full buckets
	maxVerifies   = 8 // concurrent checks of inbound peers' addresses
	// dialTimeout bounds one dial of a lookup, a check or a liveness
	// ping: a node that does not answer in it is taken as gone for this
	// request, so one slow node never holds up a lookup for long.
	dialTimeout = 5 * time.Second
)

// Run serves the DHT until ctx ends: it loads the saved table and dials a
// few of its nodes (rejoin), adds the peers the kernel proves, joins
// through the bootstrap nodes and answers node_find, lookups and jobs. It
// saves the table within saveEvery of a change, and when it returns. It
// may be run again after it returns.
func (s *Service) Run(ctx context.Context, ready func()) error {
	ep, err := s.Router.Register(dhtapi.Endpoint, 256)
	if err != nil {
		return err
	}
	defer ep.Close()
	up := s.Router.Subscribe(kernelapi.TopicPeerUp, 256)
	defer up.Unsubscribe()
	down := s.Router.Subscribe(kernelapi.TopicPeerDown, 256)
	defer down.Unsubscribe()

	s.ep = ep
	s.lookups = make(chan struct{}, cmp.Or(s.MaxLookups, DefaultMaxLookups))
	s.finds = make(chan struct{}, MaxFinds)
	s.verifies = make(chan struct{}, maxVerifies)
	s.suspects = make(chan identity.Address, 64)
	s.mu.Lock()
	s.limits = make(map[identity.Address]*bucketLimit)
	s.checking = make(map[identity.Address]bool)
	s.running = make(map[string]*jobRun)
	s.mu.Unlock()

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
		if err := s.save(); err != nil {
			s.Logger.Warn("dht: table not saved", "err", err)
		}
	}()
	if err := kernelapi.Handle(ctx, s.Router, ep, NameFindNode); err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	loaded := s.load()
	// The sessions opened before the subscription.
	peers, err := router.CallAs[[]kernelapi.PeerInfo](ctx, ep, kernelapi.Endpoint, kernelapi.SessionsRequest{})
	if err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	for _, p := range peers {
		s.peerUp(ctx, &wg, p)
	}
	if loaded > 0 {
		s.goJob(ctx, &wg, nil, "rejoin")
	}
	s.goJob(ctx, &wg, nil, "bootstrap")
	wg.Go(func() { s.keepSaved(ctx) })
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-up.C():
			s.peerUp(ctx, &wg, ev.(kernelapi.PeerEvent).PeerInfo)
		case ev := <-down.C():
			s.forget(ev.(kernelapi.PeerEvent).Address)
		case a := <-s.suspects:
			if n, ok := s.Table.Get(a); ok {
				s.startCheck(ctx, &wg, n)
			}
		case m := <-ep.Inbox():
			s.serve(ctx, &wg, m)
		}
	}
}

// serve starts the work of a message from the inbox; it never blocks.
func (s *Service) serve(ctx context.Context, wg *sync.WaitGroup, m *router.Msg) {
	if err := m.Context().Err(); err != nil {
		m.Reply(nil, err) // the caller gave up while it waited
		return
	}
	mctx := m.Bind(ctx)
	switch req := m.Body.(type) {
	case kernelapi.Frame:
		s.goFind(mctx, wg, m, req)
	case dhtapi.StatsRequest:
		m.Reply(s.stats(), nil)
	case dhtapi.NearRequest:
		m.Reply(s.Near(req.Target, req.Rank), nil)
	case dhtapi.LookupRequest:
		goReply(wg, m, func() (any, error) {
			ctx, cancel := withDeadline(mctx)
			defer cancel()
			nodes, st, err := s.Lookup(ctx, req.Target)
			return dhtapi.LookupResult{Nodes: apiNodes(nodes), Rounds: st.Rounds, Messages: st.Messages}, err
		})
	case dhtapi.ReachRequest:
		goReply(wg, m, func() (any, error) { return s.reach(mctx, req.Address) })
	case dhtapi.JobRequest:
		s.goJob(mctx, wg, m, req.Job)
	default:
		m.Reply(nil, fmt.Errorf("dht: unexpected %T", m.Body))
	}
}

// goReply answers m with fn's results, from a goroutine of its own.
func goReply(wg *sync.WaitGroup, m *router.Msg, fn func() (any, error)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.Reply(fn())
	}()
}

// withDeadline gives ctx DefaultDeadline if it has no deadline.
func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultDeadline)
}

func apiNodes(nodes []Node) []dhtapi.Node {
	out := make([]dhtapi.Node, len(nodes))
	for i, n := range nodes {
		out[i] = dhtapi.Node{Address: n.Address, Addrs: n.Addrs}
	}
	return out
}

// peerUp adds a peer whose key a handshake proved, with the address it
// can be dialled at: the one we dialled, or, for a peer that dialled in,
// the listen port it claims once a dial back there has proved the claim
// (docs/protocol.md §5.2).
func (s *Service) peerUp(ctx context.Context, wg *sync.WaitGroup, p kernelapi.PeerInfo) {
	s.mu.Lock()
	s.haveSeen = true
	s.mu.Unlock()
	addr := dialAddr(p)
	if addr == "" {
		return // it does not listen: of no use to others
	}
	n := Node{Address: p.Address, Addrs: []string{addr}}
	if !p.Inbound {
		s.add(ctx, wg, n)
		return
	}
	s.startVerify(ctx, wg, n)
}

// add puts n in the table; if its bucket is full, the oldest node stays
// if it still answers.
func (s *Service) add(ctx context.Context, wg *sync.WaitGroup, n Node) {
	if check, full := s.Table.Add(n); full {
		s.startCheck(ctx, wg, check)
	}
}

// startVerify dials n back at its claimed address in the background, and
// adds it to the table if it answers there with its key. At most
// maxVerifies run at once; a peer that finds no room is not added (it
// may still enter the table through a lookup or when it is dialled).
func (s *Service) startVerify(ctx context.Context, wg *sync.WaitGroup, n Node) {
	select {
	case s.verifies <- struct{}{}:
	default:
		return
	}
	wg.Go(func() {
		defer func() { <-s.verifies }()
		vctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		_, err := s.ep.Call(vctx, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: n.Address.String() + "@" + n.Addrs[0], Verify: true})
		if err != nil {
			s.Logger.Debug("dht: a peer's claimed address not confirmed", "peer", n.Address.String(), "addr", n.Addrs[0], "err", err)
			return
		}
		s.add(ctx, wg, n)
	})
}

// forget drops what the service keeps about a peer whose session ended.
func (s *Service) forget(a identity.Address) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.limits, a)
}

// dialAddr returns where a peer can be dialled.
func dialAddr(p kernelapi.PeerInfo) string {
	if p.RemoteAddr == nil {
		return ""
	}
	if !p.Inbound {
		return p.RemoteAddr.String()
	}
	host, _, err := net.SplitHostPort(p.RemoteAddr.String())
	if err != nil || p.ID.Port <= 0 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p.ID.Port))
}

// Near reports whether fewer than rank nodes of the table are closer to
// target than this node.
func (s *Service) Near(target identity.ID, rank int) bool {
	closest := s.Table.Closest(target, rank)
	return len(closest) < rank || Closer(target, s.Table.Self(), closest[rank-1].ID())
}

func (s *Service) stats() dhtapi.Stats {
	st := dhtapi.Stats{Nodes: s.Table.Len(), Buckets: s.Table.Buckets()}
	if st.Nodes == 0 {
		s.mu.Lock()
		seen := s.haveSeen
		s.mu.Unlock()
		switch {
		case len(s.Bootstrap) == 0 && len(s.Connect) == 0 && !seen:
			st.Note = "empty: no peers and no bootstrap nodes"
		default:
			st.Note = "empty: no peer reached yet"
		}
	}
	return st
}

// Contribute adds the table's figures to a node's Info.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	st, err := router.CallAs[dhtapi.Stats](ctx, ep, dhtapi.Endpoint, dhtapi.StatsRequest{})
	if err != nil {
		return err
	}
	in.DHTNodes, in.Buckets, in.DHTNote = &st.Nodes, &st.Buckets, st.Note
	return nil
}
