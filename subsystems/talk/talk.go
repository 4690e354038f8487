// Package talk is live chat between two nodes: the talk family of the
// peer protocol (talk_request, talk_response, talk_msg,
// talk_user_nickname_change, talk_close) and the state of the node's
// talks, which the consoles attached to the node drive over the control
// socket.
//
// The Service owns every talk and runs on one goroutine. Frames from peers
// are checked on the kernel's reading goroutine (which must not block)
// and handed to the service through a bounded channel; requests from the
// control socket come through the router; what users must see goes to
// the attached consoles as Events. While no console is attached, events
// are kept in a bounded in-memory backlog and delivered to the next
// console that attaches. Chat text is never written to disk or to the
// log.
package talk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/peer"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/miner"
)

// Endpoint is the service's router id.
const Endpoint = "talk"

// TopicEvents is the router topic of the Events for attached consoles.
const TopicEvents = "talk.events"

// Defaults and limits of the service.
const (
	DefaultTimeout = 60 * time.Second // an incoming request waits this long for the user
	DefaultBits    = 15               // hashcash bits of a talk request, as the original
	MaxRinging     = 32               // incoming requests waiting for the user
	// MaxRingingPerPeer bounds the requests of one peer waiting for the user.
	MaxRingingPerPeer = 4
	MaxTalks          = 256 // talks and requests in all
	BacklogSize       = 512 // events kept while no console is attached
	frameQueue        = 256 // peer frames waiting for the service
	outQueue          = 256 // frames waiting to be sent to peers
	// callerGrace is how much longer than its own timeout a caller waits
	// for the callee's answer before it withdraws the request.
	callerGrace = 10 * time.Second
	// callTimeout bounds minting a stamp and delivering a request.
	callTimeout = 60 * time.Second
)

// Config configures a Service.
type Config struct {
	Router *router.Router
	Logger *slog.Logger
	// Self is the node's address.
	Self identity.Address
	// Contacts is the address book; an accepted talk adds the peer.
	Contacts *store.Contacts
	// Stamps verifies and spends the stamps of incoming requests.
	Stamps *stamps.Checker
	// Nickname is the user's nickname at start.
	Nickname string
	// Timeout is how long an incoming request waits for the user
	// (DefaultTimeout if zero).
	Timeout time.Duration
	// Bits is the hashcash bits this node requires of a talk request; the
	// kernel's policy (its id) must announce the same under Purpose.
	Bits int
}

// Service is the talk subsystem.
type Service struct {
	cfg    Config
	log    *slog.Logger
	frames chan frame
	down   *router.Subscription

	// The rest is owned by Run's goroutine.
	ep       *router.Endpoint
	results  chan func()    // work finished by helper goroutines, run on Run's goroutine
	out      chan outFrame  // to the sender goroutine
	detached chan struct{}  // a console went away
	wg       sync.WaitGroup // helper goroutines
	nickname string         // the user's
	consoles int            // attached
	next     int            // last local talk number
	talks    map[int]*talk  // by local number
	backlog  []Event
	dropped  int // events dropped from the backlog
}

// talk states
const (
	calling = iota // outgoing request, not answered yet
	ringing        // incoming request, waiting for the user
	open           // talking
)

type talk struct {
	n        int
	id       string // the talk id on the wire
	peer     identity.Address
	nick     string // the peer's nickname
	outgoing bool
	state    int
	acked    bool      // outgoing: the callee confirmed the request reached its user
	deadline time.Time // when a request gives up; zero when open
	remote   string    // the peer's network address, for listings
	started  time.Time
}

type frame struct {
	s *peer.Session
	e wire.Envelope
	v any // the parsed payload
}

type outFrame struct {
	to   identity.Address
	name string
	data any
	n    int // the talk it belongs to
}

// New returns a service. It subscribes to the kernel's peer events at
// once, so that no session's end is missed.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		frames:   make(chan frame, frameQueue),
		down:     cfg.Router.Subscribe(kernel.TopicPeerDown, 256),
		results:  make(chan func(), 64),
		out:      make(chan outFrame, outQueue),
		detached: make(chan struct{}, 16),
		nickname: cfg.Nickname,
		talks:    make(map[int]*talk),
	}
}

// FrameHandlers returns the kernel's handlers of the talk messages. They
// check a frame on the session's reading goroutine and hand it to the
// service without blocking: a frame that does not fit its message is
// answered with 9000, and one that finds the service's queue full with
// 9050.
func (s *Service) FrameHandlers() map[string]kernel.FrameHandler {
	h := func(_ *kernel.Kernel, ss *peer.Session, e wire.Envelope) {
		v, err := parse(e)
		if err != nil {
			ss.SendError(context.Background(), e, wire.CodeInvalidData, err.Error())
			return
		}
		select {
		case s.frames <- frame{s: ss, e: e, v: v}:
		default:
			ss.SendError(context.Background(), e, wire.CodeBusy, "talk service busy")
		}
	}
	return map[string]kernel.FrameHandler{
		NameRequest: h, NameResponse: h, NameMsg: h, NameNick: h, NameClose: h,
	}
}

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context, ready func()) error {
	defer s.down.Unsubscribe()
	ep, err := s.cfg.Router.Register(Endpoint, 64)
	if err != nil {
		return fmt.Errorf("talk: %w", err)
	}
	defer ep.Close()
	s.ep = ep
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sender(ctx)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ready()
	for {
		if d := s.nextDeadline(); d.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(d))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ep.Done():
			return router.ErrClosed
		case m := <-ep.Inbox():
			v, err := s.serve(ctx, m)
			m.Reply(v, err)
		case f := <-s.frames:
			s.handleFrame(f)
		case fn := <-s.results:
			fn()
		case ev := <-s.down.C():
			if pe, ok := ev.(kernel.PeerEvent); ok {
				s.sessionEnded(ctx, pe.Address)
			}
		case <-s.detached:
			s.consoles--
		case <-timer.C:
			s.expire(time.Now())
		}
	}
}

// finish hands fn to Run's goroutine; helper goroutines report so.
func (s *Service) finish(ctx context.Context, fn func()) {
	select {
	case s.results <- fn:
	case <-ctx.Done():
	}
}

// sender delivers frames to peers through the kernel, in order.
func (s *Service) sender(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.out:
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.ep.Call(cctx, kernel.Endpoint, kernel.SendRequest{To: f.to, Name: f.name, Data: f.data})
			cancel()
			if err != nil {
				s.finish(ctx, func() { s.sendFailed(f, err) })
			}
		}
	}
}

// send queues a frame for a peer without blocking.
func (s *Service) send(t *talk, name string, data any) error {
	select {
	case s.out <- outFrame{to: t.peer, name: name, data: data, n: t.n}:
		return nil
	default:
		return fmt.Errorf("talk: %s to %s: send queue full", name, t.peer)
	}
}

func (s *Service) sendFailed(f outFrame, err error) {
	s.log.Debug("talk: frame not sent", "peer", f.to.String(), "name", f.name, "err", err)
	t := s.talks[f.n]
	if t == nil || t.peer != f.to {
		return
	}
	s.emit(Event{Kind: KindClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Text: "cannot reach the peer: " + err.Error()})
	delete(s.talks, t.n)
}

// emit delivers ev to the attached consoles, or keeps it for the next.
func (s *Service) emit(ev Event) {
	ev.Time = time.Now().UTC()
	if s.consoles > 0 {
		s.cfg.Router.Publish(TopicEvents, ev)
		return
	}
	if len(s.backlog) >= BacklogSize {
		copy(s.backlog, s.backlog[1:])
		s.backlog = s.backlog[:len(s.backlog)-1]
		s.dropped++
	}
	s.backlog = append(s.backlog, ev)
}

func (s *Service) nextDeadline() time.Time {
	var d time.Time
	for _, t := range s.talks {
		if !t.deadline.IsZero() && (d.IsZero() || t.deadline.Before(d)) {
			d = t.deadline
		}
	}
	return d
}

// expire ends the requests whose time is up.
func (s *Service) expire(now time.Time) {
	for _, t := range s.talks {
		if t.deadline.IsZero() || t.deadline.After(now) {
			continue
		}
		delete(s.talks, t.n)
		if t.outgoing {
			// The callee should have said so; withdraw the request.
			s.send(t, NameClose, Close{Talk: t.id, Reason: "timed out"})
			s.emit(Event{Kind: KindResponse, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: StatusTimedOut})
		} else {
			s.send(t, NameResponse, Response{Talk: t.id, Status: StatusTimedOut})
			s.emit(Event{Kind: KindRequestClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: StatusTimedOut})
		}
	}
}

// sessionEnded ends the talks with addr, unless the node still has a
// session with it: the one that ended may have been a duplicate the
// kernel closed in favour of another.
func (s *Service) sessionEnded(ctx context.Context, addr identity.Address) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.ep.Call(cctx, kernel.Endpoint, kernel.SessionRequest{Address: addr})
		if err == nil {
			return
		}
		s.finish(ctx, func() { s.peerDown(addr) })
	}()
}

// peerDown ends the talks and requests with addr.
func (s *Service) peerDown(addr identity.Address) {
	for _, t := range s.sorted() {
		if t.peer != addr {
			continue
		}
		delete(s.talks, t.n)
		switch {
		case t.state == open:
			s.emit(Event{Kind: KindClosed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
		case t.outgoing:
			s.emit(Event{Kind: KindFailed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
		default:
			s.emit(Event{Kind: KindRequestClosed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
		}
	}
}

// find returns the talk with the peer's id, or nil.
func (s *Service) find(from identity.Address, id string) *talk {
	for _, t := range s.talks {
		if t.peer == from && t.id == id {
			return t
		}
	}
	return nil
}

func (s *Service) sorted() []*talk {
	out := make([]*talk, 0, len(s.talks))
	for _, t := range s.talks {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out
}

// handleFrame serves a checked frame from a peer.
func (s *Service) handleFrame(f frame) {
	from := f.s.Peer()
	refuse := func(code wire.Code, format string, args ...any) {
		f.s.SendError(context.Background(), f.e, code, fmt.Sprintf(format, args...))
	}
	switch v := f.v.(type) {
	case Request:
		s.incoming(f, v)
	case Response:
		t := s.find(from, v.Talk)
		if t == nil || !t.outgoing || t.state != calling {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		switch v.Status {
		case StatusAccepted:
			t.state, t.deadline, t.nick = open, time.Time{}, v.Nickname
			s.remember(t)
			s.emit(Event{Kind: KindOpen, Talk: t.n, Peer: from.String(), Nickname: t.nick, Outgoing: true})
		case StatusDeclined, StatusTimedOut:
			delete(s.talks, t.n)
			s.emit(Event{Kind: KindResponse, Talk: t.n, Peer: from.String(), Nickname: t.nick, Status: v.Status})
		default:
			refuse(wire.CodeInvalidData, "status %d is not a later answer", v.Status)
		}
	case Msg:
		t := s.find(from, v.Talk)
		if t == nil || t.state != open {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		if !v.Ignore {
			s.emit(Event{Kind: KindMsg, Talk: t.n, Peer: from.String(), Nickname: t.nick, Text: v.Text})
		}
	case NickChange:
		t := s.find(from, v.Talk)
		if t == nil || t.state != open {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		old := t.nick
		t.nick = v.Nickname
		s.emit(Event{Kind: KindNick, Talk: t.n, Peer: from.String(), Nickname: t.nick, OldNickname: old})
	case Close:
		t := s.find(from, v.Talk)
		if t == nil {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		delete(s.talks, t.n)
		ev := Event{Talk: t.n, Peer: from.String(), Nickname: t.nick, Text: v.Reason}
		switch {
		case t.state == open:
			ev.Kind, ev.ByPeer = KindClosed, true
		case t.outgoing: // the callee should answer with talk_response
			ev.Kind, ev.Status = KindResponse, StatusDeclined
		default:
			ev.Kind, ev.ByPeer = KindRequestClosed, true
		}
		s.emit(ev)
	}
}

// incoming serves a talk_request.
func (s *Service) incoming(f frame, req Request) {
	from := f.s.Peer()
	ctx := context.Background()
	if s.cfg.Stamps == nil {
		f.s.SendError(ctx, f.e, wire.CodeNotImplemented, "talk requests are not served")
		return
	}
	if _, err := s.cfg.Stamps.Check(req.Stamp, Resource(s.cfg.Self, from, req.Talk), s.cfg.Bits); err != nil {
		var herr *hashcash.Error
		if !errors.As(err, &herr) {
			s.log.Warn("talk: stamp not checked", "err", err)
			f.s.SendError(ctx, f.e, wire.CodeFailed, "stamp not checked")
			return
		}
		f.s.SendError(ctx, f.e, wire.CodeHashcash, err.Error())
		return
	}
	if s.consoles == 0 {
		f.s.Reply(ctx, f.e, NameResponse, Response{Talk: req.Talk, Status: StatusNoUI})
		return
	}
	if s.find(from, req.Talk) != nil {
		f.s.SendError(ctx, f.e, wire.CodeInvalidData, fmt.Sprintf("talk %q exists", req.Talk))
		return
	}
	waiting, fromPeer := 0, 0
	for _, t := range s.talks {
		if t.state == ringing {
			waiting++
			if t.peer == from {
				fromPeer++
			}
		}
	}
	if waiting >= MaxRinging || fromPeer >= MaxRingingPerPeer || len(s.talks) >= MaxTalks {
		f.s.SendError(ctx, f.e, wire.CodeBusy, "too many talk requests")
		return
	}
	s.next++
	t := &talk{n: s.next, id: req.Talk, peer: from, nick: req.Nickname, state: ringing,
		deadline: time.Now().Add(s.cfg.Timeout), started: time.Now()}
	if a := f.s.Info().RemoteAddr; a != nil {
		t.remote = a.String()
	}
	s.talks[t.n] = t
	f.s.Reply(ctx, f.e, NameResponse, Response{Talk: req.Talk, Status: StatusWaiting})
	ev := Event{Kind: KindRequest, Talk: t.n, Peer: from.String(), Nickname: t.nick, Remote: t.remote, Expires: t.deadline.UTC()}
	s.introduce(&ev, from)
	s.emit(ev)
}

// introduce says in ev whether the user knows the peer, and gives both
// fingerprints to compare when it does not.
func (s *Service) introduce(ev *Event, peer identity.Address) {
	if s.cfg.Contacts != nil {
		if ct, err := s.cfg.Contacts.ByAddress(peer.String()); err == nil {
			ev.Contact = ct.Nickname
			return
		}
	}
	ev.FirstTime = true
	ev.Fingerprint = s.cfg.Self.Fingerprint()
	ev.PeerFingerprint = peer.Fingerprint()
}

// remember adds the peer of an accepted talk to the address book, under
// its nickname or, if that is taken, the nickname with a part of the
// address.
func (s *Service) remember(t *talk) {
	book := s.cfg.Contacts
	if book == nil {
		return
	}
	addr := t.peer.String()
	if _, err := book.ByAddress(addr); err == nil || !errors.Is(err, store.ErrNotFound) {
		return
	}
	nick := t.nick
	_, err := book.Add(store.Contact{Address: addr, Nickname: nick})
	if errors.Is(err, store.ErrNicknameTaken) {
		alt := nick + "-" + addr[3:9]
		if config.CheckNickname(alt) == nil {
			_, err = book.Add(store.Contact{Address: addr, Nickname: alt})
		}
	}
	if err != nil {
		s.log.Warn("talk: peer not added to the address book", "peer", addr, "err", err)
	}
}

// newTalkID returns a random talk id.
func newTalkID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// call asks the peer of the outgoing talk t to talk: it mints the stamp
// and sends the request on a goroutine of its own, and reports on Run's.
func (s *Service) call(ctx context.Context, t *talk) {
	n, peerAddr, id, nick := t.n, t.peer, t.id, s.nickname
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		resp, err := s.request(cctx, peerAddr, id, nick)
		s.finish(ctx, func() { s.called(n, resp, err) })
	}()
}

// request pays for and sends a talk request, and returns the callee's
// immediate answer.
func (s *Service) request(ctx context.Context, to identity.Address, id, nick string) (Response, error) {
	var resp Response
	// The stamp carries the bits of the callee's policy, from its id.
	v, err := s.ep.Call(ctx, kernel.Endpoint, kernel.SessionRequest{Address: to})
	if err != nil {
		return resp, err
	}
	info, ok := v.(peer.Info)
	if !ok {
		return resp, fmt.Errorf("kernel answered %T", v)
	}
	bits, ok := info.ID.Hashcash[Purpose]
	if !ok {
		bits = DefaultBits
	}
	dl, _ := ctx.Deadline()
	v, err = s.ep.Call(ctx, miner.Endpoint, miner.MintRequest{
		Resource: Resource(to, s.cfg.Self, id), Bits: bits, Priority: miner.Interactive, Deadline: dl,
	})
	if err != nil {
		return resp, fmt.Errorf("mint the stamp: %w", err)
	}
	mr, ok := v.(miner.MintResult)
	if !ok {
		return resp, fmt.Errorf("miner answered %T", v)
	}
	v, err = s.ep.Call(ctx, kernel.Endpoint, kernel.CallRequest{To: to, Name: NameRequest,
		Data: Request{Talk: id, Nickname: nick, Stamp: mr.Stamp}})
	if err != nil {
		return resp, err
	}
	e, ok := v.(wire.Envelope)
	if !ok {
		return resp, fmt.Errorf("kernel answered %T", v)
	}
	if e.Name != NameResponse {
		return resp, fmt.Errorf("peer answered %s", e.Name)
	}
	pv, err := parse(e)
	if err != nil {
		return resp, fmt.Errorf("peer's answer: %w", err)
	}
	resp = pv.(Response)
	if resp.Talk != id || resp.Status != StatusWaiting && resp.Status != StatusNoUI {
		return resp, fmt.Errorf("peer answered talk %q with status %d", resp.Talk, resp.Status)
	}
	return resp, nil
}

// called records the immediate answer to a talk request.
func (s *Service) called(n int, resp Response, err error) {
	t := s.talks[n]
	if t == nil || t.state != calling {
		return // withdrawn, or answered already
	}
	ev := Event{Talk: n, Peer: t.peer.String(), Nickname: t.nick}
	switch {
	case err != nil:
		delete(s.talks, n)
		ev.Kind, ev.Text = KindFailed, describe(err)
	case resp.Status == StatusNoUI:
		delete(s.talks, n)
		ev.Kind, ev.Status = KindResponse, StatusNoUI
	default:
		t.acked = true
		t.deadline = time.Now().Add(s.cfg.Timeout + callerGrace)
		ev.Kind = KindRinging
	}
	s.emit(ev)
}

// describe turns a failed request into words for the user.
func describe(err error) string {
	switch peer.CodeOf(err) {
	case wire.CodeHashcash:
		return "the peer refused the hashcash stamp: " + err.Error()
	case wire.CodeBusy:
		return "the peer is busy; try again later"
	case wire.CodeUnknownCommand:
		return "the peer does not speak talk"
	}
	if errors.Is(err, kernel.ErrNoSession) {
		return "not connected to the peer"
	}
	return err.Error()
}
