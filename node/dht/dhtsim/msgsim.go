package dhtsim

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/identity"
)

// Timing of the offline-message service (subsystems/messages and the DHT's
// ping job), in simulated time.
const (
	FirstRetry   = time.Minute         // a message is published again after this, doubling
	MaxRetry     = time.Hour           // up to this
	FetchEvery   = 5 * time.Minute     // a node asks the nodes closest to its id for its mail
	HandoffEvery = 10 * time.Minute    // a relay hands its copies to closer nodes
	PingEvery    = 15 * time.Minute    // tables drop the nodes that left
	Expiry       = 14 * 24 * time.Hour // a message's lifetime
)

// MsgConfig describes a run of SimulateMessages. Zero fields take the
// values of DefaultMsgConfig.
type MsgConfig struct {
	Nodes      int // nodes online when the messages are sent
	Messages   int
	Senders    int // nodes that send the messages, all online at first
	Recipients int // nodes that receive them, all offline at first (not counted in Nodes)
	Replicas   int // r: relays a message is stored on

	Leave     float64       // fraction of Nodes that leave for good, without notice
	Join      float64       // fraction of Nodes that join as new nodes
	ChurnOver time.Duration // leaves and joins at uniform times in [0, ChurnOver)
	SendOver  time.Duration // messages sent at uniform times in [0, SendOver)
	// Recipients come online at uniform times in [SendOver, OnlineBy),
	// and stay online.
	OnlineBy time.Duration
	// A fraction of the senders goes offline once, at a uniform time in
	// [SendOver, ChurnOver), for a uniform time in [AwayMin, AwayMax).
	SendersAway      float64
	AwayMin, AwayMax time.Duration

	NoRepublish bool // the sender publishes a message once, not until its receipt
	NoHandoff   bool // relays keep their copies to themselves
	// Repair makes the hand-off job offer a copy to all the r closest
	// nodes its relay knows (itself counted), not only to those closer
	// than itself, which restores the copies of relays that left (not a
	// rule of the service: a variant to measure).
	Repair bool

	Horizon     time.Duration // the run ends then, or when every receipt is back
	SampleEvery time.Duration // copies per message are counted this often
	Seed        uint64
}

// DefaultMsgConfig is the configuration of issue 12's figure.
var DefaultMsgConfig = MsgConfig{
	Nodes: 1000, Messages: 1000, Senders: 200, Recipients: 100, Replicas: 8,
	Leave: 0.2, Join: 0.2, ChurnOver: 48 * time.Hour, SendOver: time.Hour, OnlineBy: 49 * time.Hour,
	SendersAway: 0.25, AwayMin: time.Hour, AwayMax: 24 * time.Hour,
	Horizon: 96 * time.Hour, SampleEvery: time.Hour, Seed: 1,
}

func (c MsgConfig) withDefaults() MsgConfig {
	d := DefaultMsgConfig
	c.Nodes = cmp.Or(c.Nodes, d.Nodes)
	c.Messages = cmp.Or(c.Messages, d.Messages)
	c.Senders = cmp.Or(c.Senders, d.Senders)
	c.Recipients = cmp.Or(c.Recipients, d.Recipients)
	c.Replicas = cmp.Or(c.Replicas, d.Replicas)
	c.ChurnOver = cmp.Or(c.ChurnOver, d.ChurnOver)
	c.SendOver = cmp.Or(c.SendOver, d.SendOver)
	c.OnlineBy = cmp.Or(c.OnlineBy, d.OnlineBy)
	c.AwayMin = cmp.Or(c.AwayMin, d.AwayMin)
	c.AwayMax = cmp.Or(c.AwayMax, d.AwayMax)
	c.Horizon = cmp.Or(c.Horizon, d.Horizon)
	c.SampleEvery = cmp.Or(c.SampleEvery, d.SampleEvery)
	return c
}

// MsgResult is the outcome of SimulateMessages.
type MsgResult struct {
	Sent      int
	Received  int // messages in their recipient's inbox
	Receipted int // messages whose receipt reached their sender
	// ByRelay counts the messages a relay handed to their recipient
	// (fetch or push on connect); the others came direct from a sender's
	// re-publication.
	ByRelay int
	// Send to inbox, recipient online to inbox, send to receipt.
	ToInbox, AfterOnline, ToReceipt []time.Duration
	Samples                         []MsgSample
	Lookups                         int
	// CopiesLeft counts the copies of delivered messages and of receipts
	// still held on online nodes at the end: relays the deletion secret
	// did not reach keep them until they expire.
	CopiesLeft int
	End        time.Duration // simulated time at the end of the run
}

// MsgSample counts the copies of the messages not yet in their recipient's
// inbox, on online nodes, at one time.
type MsgSample struct {
	At       time.Duration
	InFlight int
	Mean     float64
	Min      int
	Zero     int // in-flight messages with no copy online
	Held     int // copies on online nodes of every envelope, delivered or not
}

// SimulateMessages runs the offline-message service's delivery rules on a
// simulated network, in simulated time: which node holds which copy of
// which envelope, as messages go from online senders to recipients that
// join later while nodes leave and join.
//
// Every lookup is a real dht.Lookup on the nodes' real tables. Requests
// take no time; a request reaching a node opens a session, on which a
// relay pushes what it holds for the other end (push on connect).
func SimulateMessages(ctx context.Context, cfg MsgConfig) (*MsgResult, error) {
	cfg = cfg.withDefaults()
	s, err := newMsgSim(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.run()
	return &s.res, nil
}

// A peer is a node's state in the message simulation.
type peer struct {
	nd       *Node
	held     map[int]bool // envelopes held as a relay
	heldFor  map[*peer]int
	spent    map[int]bool // envelopes whose stamp it has seen
	inbox    map[int]bool // messages received
	deferred []int        // attempts due while it was offline
	online   time.Duration
	fetching bool // its fetch job runs
	handing  bool // its hand-off job runs
}

func (p *peer) up() bool { return p.nd.online.Load() }

// A simEnv is an envelope: a message, or a receipt of one.
type simEnv struct {
	from, to  *peer
	of        int // for a receipt, the message's index; -1 for a message
	created   time.Duration
	attempts  int
	final     bool
	received  time.Duration // messages: in the inbox; -1 before
	receipted time.Duration // messages: receipt at the sender; -1 before
}

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type events []event

func (q events) Len() int { return len(q) }
func (q events) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}
func (q events) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)   { *q = append(*q, x.(event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type msgSim struct {
	cfg    MsgConfig
	ctx    context.Context
	net    *Net
	rng    *rand.Rand
	now    time.Duration
	q      events
	seq    uint64
	peers  []*peer
	byNode map[*Node]*peer
	byAddr map[identity.Address]*peer
	envs   []*simEnv
	msgs   []int // the messages' envelopes
	stable []*peer
	waits  map[[2]*peer]bool // pushes on connect planned
	// bySender is true while a sender hands a message to its recipient
	// (else a relay does, which may be the sender's node too).
	bySender bool
	res      MsgResult
	err      error
}

// newMsgSim builds the network: Nodes+Recipients nodes join, the
// recipients leave, and the joiners wait.
func newMsgSim(ctx context.Context, cfg MsgConfig) (*msgSim, error) {
	joiners := int(cfg.Join * float64(cfg.Nodes))
	total := cfg.Nodes + cfg.Recipients + joiners
	nt := New(total, cfg.Seed)
	s := &msgSim{
		cfg: cfg, ctx: ctx, net: nt,
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d)),
		byNode: make(map[*Node]*peer, total),
		byAddr: make(map[identity.Address]*peer, total),
		waits:  make(map[[2]*peer]bool),
	}
	for _, nd := range nt.Nodes {
		p := &peer{nd: nd, held: map[int]bool{}, heldFor: map[*peer]int{}, spent: map[int]bool{}, inbox: map[int]bool{}}
		s.peers = append(s.peers, p)
		s.byNode[nd] = p
		s.byAddr[nd.Info.Address] = p
	}
	// The first Nodes+Recipients nodes join; the others join later.
	first := nt.Nodes[:cfg.Nodes+cfg.Recipients]
	for _, p := range s.peers[len(first):] {
		p.nd.online.Store(false)
	}
	nt.Nodes = first
	err := nt.Join(ctx)
	nt.Nodes = nt.Nodes[:total]
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	order := s.rng.Perm(len(first))
	recipients := pick(s.peers, order[:cfg.Recipients])
	senders := pick(s.peers, order[cfg.Recipients:cfg.Recipients+cfg.Senders])
	relays := pick(s.peers, order[cfg.Recipients+cfg.Senders:])
	for _, p := range recipients {
		p.nd.online.Store(false)
		s.at(s.uniform(cfg.SendOver, cfg.OnlineBy), func() { s.comeBack(p) })
	}
	nt.Maintain() // the recipients left a while ago
	s.stable = append(slices.Clone(senders), relays...)

	leavers := int(cfg.Leave * float64(cfg.Nodes))
	if leavers > len(relays) {
		return nil, fmt.Errorf("%d nodes to leave, but only %d relays", leavers, len(relays))
	}
	for _, i := range s.rng.Perm(len(relays))[:leavers] {
		p := relays[i]
		s.at(s.uniform(0, cfg.ChurnOver), func() { p.nd.online.Store(false) })
	}
	for _, p := range s.peers[len(first):] {
		s.at(s.uniform(0, cfg.ChurnOver), func() { s.join(p) })
	}
	for _, i := range s.rng.Perm(len(senders))[:int(cfg.SendersAway*float64(len(senders)))] {
		p := senders[i]
		away := s.uniform(cfg.SendOver, cfg.ChurnOver)
		s.at(away, func() { p.nd.online.Store(false) })
		s.at(away+s.uniform(cfg.AwayMin, cfg.AwayMax), func() { s.comeBack(p) })
	}
	for range cfg.Messages {
		from := senders[s.rng.IntN(len(senders))]
		to := recipients[s.rng.IntN(len(recipients))]
		i := len(s.envs)
		s.envs = append(s.envs, &simEnv{from: from, to: to, of: -1, received: -1, receipted: -1})
		s.msgs = append(s.msgs, i)
		s.at(s.uniform(0, cfg.SendOver), func() { s.send(i) })
	}
	for _, p := range senders {
		s.startFetching(p)
	}
	for t := PingEvery; t < cfg.Horizon; t += PingEvery {
		s.at(t, nt.Maintain)
	}
	for t := cfg.SampleEvery; t <= cfg.Horizon; t += cfg.SampleEvery {
		s.at(t, s.sample)
	}
	nt.onContact = s.contact
	return s, nil
}

func pick(ps []*peer, idx []int) []*peer {
	out := make([]*peer, len(idx))
	for i, j := range idx {
		out[i] = ps[j]
	}
	return out
}

// uniform returns a uniform time in [lo, hi).
func (s *msgSim) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// at plans fn at simulated time t.
func (s *msgSim) at(t time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.q, event{at: t, seq: s.seq, fn: fn})
}

// run runs the events until the horizon, or until every message has its
// receipt.
func (s *msgSim) run() {
	for s.q.Len() > 0 && s.err == nil {
		e := heap.Pop(&s.q).(event)
		if e.at > s.cfg.Horizon {
			break
		}
		s.now = e.at
		e.fn()
		if s.res.Receipted == len(s.msgs) {
			s.sample()
			break
		}
	}
	s.res.End = s.now
	s.res.Sent = len(s.msgs)
	for ei, e := range s.envs {
		if e.of >= 0 || e.received >= 0 {
			s.res.CopiesLeft += s.copiesOnline(ei)
		}
	}
}

// copiesOnline counts the online holders of envelope ei.
func (s *msgSim) copiesOnline(ei int) int {
	n := 0
	for _, p := range s.peers {
		if p.held[ei] && p.up() {
			n++
		}
	}
	return n
}

// sample counts the copies of the messages on their way.
func (s *msgSim) sample() {
	count := make(map[int]int)
	held := 0
	for _, p := range s.peers {
		if !p.up() {
			continue
		}
		for ei := range p.held {
			count[ei]++
			held++
		}
	}
	sm := MsgSample{At: s.now, Held: held, Min: -1}
	total := 0
	for _, ei := range s.msgs {
		e := s.envs[ei]
		if e.attempts == 0 || e.received >= 0 {
			continue
		}
		c := count[ei]
		sm.InFlight++
		total += c
		if sm.Min < 0 || c < sm.Min {
			sm.Min = c
		}
		if c == 0 {
			sm.Zero++
		}
	}
	if sm.InFlight > 0 {
		sm.Mean = float64(total) / float64(sm.InFlight)
	} else {
		sm.Min = 0
	}
	if n := len(s.res.Samples); n > 0 && s.res.Samples[n-1].At == s.now {
		s.res.Samples[n-1] = sm
		return
	}
	s.res.Samples = append(s.res.Samples, sm)
}

// send puts message i in its sender's outbox.
func (s *msgSim) send(i int) {
	s.envs[i].created = s.now
	s.attempt(i)
}

// attempt is one delivery attempt of an envelope by its sender: direct to
// its recipient when a lookup finds it, else to the r closest nodes to the
// recipient's id; then, for a message, again with backoff until its
// receipt comes.
func (s *msgSim) attempt(ei int) {
	e := s.envs[ei]
	if e.final {
		return
	}
	p := e.from
	if !p.up() {
		p.deferred = append(p.deferred, ei)
		return
	}
	if s.now >= e.created+Expiry {
		e.final = true
		return
	}
	found := s.lookup(p, e.to.nd.Info.ID())
	s.bySender = true
	direct := len(found) > 0 && found[0] == e.to && s.receive(e.to, ei, p)
	s.bySender = false
	relays := 0
	if !direct {
		nodes := slices.DeleteFunc(s.closest(found, p), func(n *peer) bool { return n == e.to })
		for _, n := range nodes[:min(len(nodes), s.cfg.Replicas)] {
			if s.hold(n, ei) {
				relays++
			}
		}
	}
	e.attempts++
	switch {
	case !direct && relays == 0:
		s.at(s.now+backoff(e.attempts), func() { s.attempt(ei) })
	case e.of >= 0:
		e.final = true // a receipt is placed once
	case !s.cfg.NoRepublish:
		s.at(s.now+backoff(e.attempts), func() { s.attempt(ei) })
	}
}

// backoff is the wait before the attempt after n, as in the service.
func backoff(n int) time.Duration {
	d := FirstRetry
	for range n {
		if d >= MaxRetry {
			return MaxRetry
		}
		d *= 2
	}
	return min(d, MaxRetry)
}

// lookup runs a lookup from p.
func (s *msgSim) lookup(p *peer, target identity.ID) []*peer {
	s.res.Lookups++
	found, _, err := p.nd.Lookup(s.ctx, target)
	if err != nil && !errors.Is(err, dht.ErrNoNodes) {
		s.err = err
	}
	out := make([]*peer, 0, len(found))
	for _, n := range found {
		out = append(out, s.byAddr[n.Address])
	}
	return out
}

// closest is the service's closest: the first Replicas+1 nodes a lookup
// found, p excluded.
func (s *msgSim) closest(found []*peer, p *peer) []*peer {
	var out []*peer
	for _, n := range found {
		if n != p && len(out) <= s.cfg.Replicas {
			out = append(out, n)
		}
	}
	return out
}

// hold offers envelope ei to relay n, and reports whether n holds it now.
func (s *msgSim) hold(n *peer, ei int) bool {
	switch {
	case !n.up():
		return false
	case n.held[ei]:
		return true // duplicate
	case n.spent[ei]:
		return false // its stamp is spent here: the copy was deleted
	}
	n.held[ei] = true
	n.spent[ei] = true
	n.heldFor[s.envs[ei].to]++
	if !n.handing && !s.cfg.NoHandoff {
		n.handing = true
		s.at(s.now+s.uniform(0, HandoffEvery), func() { s.handoff(n) })
	}
	return true
}

// drop deletes n's copy of envelope ei.
func (s *msgSim) drop(n *peer, ei int) {
	if !n.held[ei] {
		return
	}
	delete(n.held, ei)
	to := s.envs[ei].to
	if n.heldFor[to]--; n.heldFor[to] == 0 {
		delete(n.heldFor, to)
	}
}

// receive gives envelope ei to its recipient r, from the node from. It
// reports whether r took it (accepted or duplicate).
func (s *msgSim) receive(r *peer, ei int, from *peer) bool {
	e := s.envs[ei]
	if e.of >= 0 {
		// A receipt: the message is delivered, and the receipt's copies
		// dropped. Again, its stamp is spent: refused.
		m := s.envs[e.of]
		if r.inbox[ei] {
			return false
		}
		r.inbox[ei] = true
		if m.receipted < 0 {
			m.receipted = s.now
			m.final = true
			s.res.Receipted++
			s.res.ToReceipt = append(s.res.ToReceipt, s.now-m.created)
		}
		s.at(s.now, func() { s.dropCopies(r, ei, from) })
		return true
	}
	fresh := !r.inbox[ei]
	if fresh {
		r.inbox[ei] = true
		e.received = s.now
		s.res.Received++
		s.res.ToInbox = append(s.res.ToInbox, s.now-e.created)
		s.res.AfterOnline = append(s.res.AfterOnline, s.now-max(r.online, e.created))
		if !s.bySender {
			s.res.ByRelay++
		}
	}
	s.at(s.now, func() {
		if !r.up() {
			return
		}
		if fresh || from == e.from {
			s.queueReceipt(r, ei)
		}
		s.dropCopies(r, ei, from)
	})
	return true
}

// queueReceipt puts the receipt of message mi in r's outbox.
func (s *msgSim) queueReceipt(r *peer, mi int) {
	i := len(s.envs)
	s.envs = append(s.envs, &simEnv{from: r, to: s.envs[mi].from, of: mi, created: s.now, received: -1, receipted: -1})
	s.attempt(i)
}

// dropCopies shows the deletion secret of ei to the nodes closest to r's
// id and to the node it came from.
func (s *msgSim) dropCopies(r *peer, ei int, from *peer) {
	nodes := s.closest(s.lookup(r, r.nd.Info.ID()), r)
	if from != s.envs[ei].from && !slices.Contains(nodes, from) {
		nodes = append(nodes, from)
	}
	for _, n := range nodes {
		if n.up() {
			s.drop(n, ei)
		}
	}
}

// pushWaiting is relay n pushing what it holds for r to r.
func (s *msgSim) pushWaiting(n, r *peer) {
	if !n.up() || !r.up() || n.heldFor[r] == 0 {
		return
	}
	for _, ei := range slices.Sorted(maps.Keys(n.held)) {
		if s.envs[ei].to == r {
			s.receive(r, ei, n)
		}
	}
}

// contact is told of a request from one node to another: on the session
// it opens, each pushes to the other what it holds for it.
func (s *msgSim) contact(a, b *Node) {
	pa, pb := s.byNode[a], s.byNode[b]
	for _, pair := range [][2]*peer{{pa, pb}, {pb, pa}} {
		if pair[0].heldFor[pair[1]] == 0 || s.waits[pair] {
			continue
		}
		s.waits[pair] = true
		s.at(s.now, func() {
			delete(s.waits, pair)
			s.pushWaiting(pair[0], pair[1])
		})
	}
}

// startFetching starts p's fetch job.
func (s *msgSim) startFetching(p *peer) {
	if !p.fetching {
		p.fetching = true
		s.at(s.now, func() { s.fetch(p) })
	}
}

// fetch asks the nodes closest to p's id for what they hold for p, every
// FetchEvery while p is online.
func (s *msgSim) fetch(p *peer) {
	if !p.up() {
		p.fetching = false
		return
	}
	// A fetch when no node holds anything for p changes nothing but the
	// tables; it is skipped to save time.
	if s.waitingFor(p) {
		for _, n := range s.closest(s.lookup(p, p.nd.Info.ID()), p) {
			s.pushWaiting(n, p)
		}
	}
	s.at(s.now+FetchEvery, func() { s.fetch(p) })
}

// waitingFor reports whether an online node holds a copy for p.
func (s *msgSim) waitingFor(p *peer) bool {
	for _, n := range s.peers {
		if n.heldFor[p] > 0 && n.up() {
			return true
		}
	}
	return false
}

// handoff is relay n's hand-off job: it offers each copy it holds to the
// nodes of its table closer than itself to the copy's recipient, among
// the r closest it knows, every HandoffEvery while n is online.
func (s *msgSim) handoff(n *peer) {
	if !n.up() || len(n.held) == 0 {
		n.handing = false
		return
	}
	for _, ei := range slices.Sorted(maps.Keys(n.held)) {
		e := s.envs[ei]
		if s.now >= e.created+Expiry {
			s.drop(n, ei)
			continue
		}
		target := e.to.nd.Info.ID()
		for _, c := range s.handoffTargets(n, target) {
			cp := s.byAddr[c.Address]
			if cp == e.to {
				continue
			}
			if !cp.up() {
				n.nd.Table.Failed(c.Address) // the push found it gone
				continue
			}
			s.hold(cp, ei)
		}
	}
	s.at(s.now+HandoffEvery, func() { s.handoff(n) })
}

// handoffTargets returns the nodes relay n offers a copy for target to:
// those of the r closest it knows that are closer than itself or, with
// Repair, all the others of the r closest it knows, itself included.
func (s *msgSim) handoffTargets(n *peer, target identity.ID) []dht.Node {
	r := s.cfg.Replicas
	cands := n.nd.Table.Closest(target, r)
	closer := 0
	for closer < len(cands) && dht.Closer(target, cands[closer].ID(), n.nd.Info.ID()) {
		closer++
	}
	if !s.cfg.Repair || closer == len(cands) {
		return cands[:closer]
	}
	return cands[:min(r-1, len(cands))] // n is among the r closest
}

// join brings a new node into the network through a random stable node.
func (s *msgSim) join(p *peer) {
	p.nd.online.Store(true)
	var seed *peer
	for seed == nil || !seed.up() {
		seed = s.stable[s.rng.IntN(len(s.stable))]
	}
	if err := s.net.joinNode(s.ctx, p.nd, seed.nd); err != nil {
		s.err = err
	}
}

// comeBack brings p online again: it looks up its own id from its old
// table (through a stable node if none of it answers), fetches its mail,
// and resumes its outbox and its jobs.
func (s *msgSim) comeBack(p *peer) {
	p.nd.online.Store(true)
	p.online = s.now
	if len(s.lookup(p, p.nd.Info.ID())) == 0 {
		s.join(p)
	}
	s.startFetching(p)
	if len(p.held) > 0 && !p.handing && !s.cfg.NoHandoff {
		p.handing = true
		s.at(s.now, func() { s.handoff(p) })
	}
	for _, ei := range p.deferred {
		s.at(s.now, func() { s.attempt(ei) })
	}
	p.deferred = nil
}

// DurationPercentile returns the p-th percentile (0-100) of ds.
func DurationPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p/100*float64(len(s)-1))]
}
