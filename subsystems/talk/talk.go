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
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// Defaults and limits of the service.
const (
	DefaultTimeout = 60 * time.Second // an incoming request waits this long for the user
	DefaultBits    = 15               // hashcash bits of a talk request, as the original
	MaxRinging     = 32               // incoming requests waiting for the user
	// MaxRingingPerPeer bounds the requests of one peer waiting for the user.
	MaxRingingPerPeer = 4
	MaxTalks          = 256 // talks and requests in all
	BacklogSize       = 512 // events kept while no console is attached
	inboxSize         = 256 // requests and peer frames waiting for the service
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
	cfg Config
	log *slog.Logger

	// The rest is owned by Run's goroutine, and made anew by each Run.
	ep       *router.Endpoint
	results  chan func()               // work finished by helper goroutines, run on Run's goroutine
	out      chan outFrame             // to the sender goroutine
	wg       sync.WaitGroup            // helper goroutines
	nickname string                    // the user's
	next     int                       // last local talk number
	talks    map[int]*talk             // by local number
	pinned   map[identity.Address]bool // peers whose sessions the kernel keeps for us
	backlog  []talkapi.Event
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

// frame is a checked frame from a peer.
type frame struct {
	kernelapi.Frame
	v any // the parsed payload
}

// outFrame is a kernel request that sends a frame to a peer: a
// kernelapi.SendRequest, ReplyRequest or ErrorRequest.
type outFrame struct {
	to  identity.Address
	req any
	n   int // the talk it belongs to; 0 for answers to a peer's frame
}

// New returns a service; Run starts it.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Service{cfg: cfg, log: cfg.Logger, nickname: cfg.Nickname}
}

// Run serves until ctx ends. It may be run again after it returns (the
// supervisor restarts a failed subsystem): the talks of the last run are
// gone, as their peers were told when it stopped.
func (s *Service) Run(ctx context.Context, ready func()) error {
	ep, err := s.cfg.Router.Register(talkapi.Endpoint, inboxSize)
	if err != nil {
		return fmt.Errorf("talk: %w", err)
	}
	defer ep.Close()
	down := s.cfg.Router.Subscribe(kernelapi.TopicPeerDown, 256)
	defer down.Unsubscribe()
	s.ep = ep
	s.results = make(chan func(), 64)
	s.out = make(chan outFrame, outQueue)
	s.talks, s.pinned = make(map[int]*talk), make(map[identity.Address]bool)
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	if err := kernelapi.Handle(ctx, s.cfg.Router, ep, Names...); err != nil {
		return fmt.Errorf("talk: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sender(ctx)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ready()
	for {
		s.syncPins()
		if d := s.nextDeadline(); d.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(d))
		}
		select {
		case <-ctx.Done():
			return nil
		case m := <-ep.Inbox():
			if f, ok := m.Body.(kernelapi.Frame); ok {
				s.frame(f)
				continue
			}
			v, err := s.serve(ctx, m)
			m.Reply(v, err)
		case fn := <-s.results:
			fn()
		case ev := <-down.C():
			s.sessionEnded(ctx, ev.(kernelapi.PeerEvent).Address)
		case <-timer.C:
			s.expire(time.Now())
		}
	}
}

// syncPins asks the kernel to keep the sessions with the peers of the
// talks and requests, and to stop keeping the others for us.
func (s *Service) syncPins() {
	want := make(map[identity.Address]bool, len(s.talks))
	for _, t := range s.talks {
		want[t.peer] = true
	}
	for a := range want {
		if !s.pinned[a] {
			s.pin(a, true)
		}
	}
	for a := range s.pinned {
		if !want[a] {
			s.pin(a, false)
		}
	}
}

// pin queues a PinRequest; one that finds the queue full is tried again
// on the next turn of Run's loop.
func (s *Service) pin(a identity.Address, pinned bool) {
	if s.queue(outFrame{to: a, req: kernelapi.PinRequest{Address: a, Pinned: pinned}}) != nil {
		return
	}
	if pinned {
		s.pinned[a] = true
	} else {
		delete(s.pinned, a)
	}
}

// frame checks a frame from a peer and serves it: one that does not fit
// its message is answered with 9000.
func (s *Service) frame(f kernelapi.Frame) {
	v, err := parse(f.Envelope)
	if err != nil {
		s.refuse(f, wire.CodeInvalidData, err.Error())
		return
	}
	s.handleFrame(frame{Frame: f, v: v})
}

// answer queues the answer to a peer's request frame.
func (s *Service) answer(f kernelapi.Frame, name string, data any) {
	s.queue(outFrame{to: f.From, req: kernelapi.ReplyRequest{To: f.From, RID: f.Envelope.RID, Name: name, Data: data}})
}

// refuse queues an error frame about a peer's frame.
func (s *Service) refuse(f kernelapi.Frame, code wire.Code, text string) {
	s.queue(outFrame{to: f.From, req: kernelapi.ErrorRequest{To: f.From, RID: f.Envelope.RID, Name: f.Envelope.Name, Code: code, Text: text}})
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
			_, err := s.ep.Call(cctx, kernelapi.Endpoint, f.req)
			cancel()
			if err != nil && f.n != 0 {
				s.finish(ctx, func() { s.sendFailed(f, err) })
			} else if err != nil {
				s.log.Debug("talk: answer not sent", "peer", f.to.String(), "err", err)
			}
		}
	}
}

// send queues a frame of the talk t for its peer without blocking.
func (s *Service) send(t *talk, name string, data any) error {
	return s.queue(outFrame{to: t.peer, req: kernelapi.SendRequest{To: t.peer, Name: name, Data: data}, n: t.n})
}

// queue hands f to the sender without blocking.
func (s *Service) queue(f outFrame) error {
	select {
	case s.out <- f:
		return nil
	default:
		return fmt.Errorf("talk: frame to %s: send queue full", f.to)
	}
}

func (s *Service) sendFailed(f outFrame, err error) {
	s.log.Debug("talk: frame not sent", "peer", f.to.String(), "err", err)
	t := s.talks[f.n]
	if t == nil || t.peer != f.to {
		return
	}
	s.emit(talkapi.Event{Kind: talkapi.KindClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Text: "cannot reach the peer: " + err.Error()})
	delete(s.talks, t.n)
}

// consoles returns how many consoles are attached: subscribed to the
// events. The router counts them, so that consoles stay attached across a
// restart of the service.
func (s *Service) consoles() int { return s.cfg.Router.Subscribers(talkapi.TopicEvents) }

// emit delivers ev to the attached consoles, or keeps it for the next.
func (s *Service) emit(ev talkapi.Event) {
	ev.Time = time.Now().UTC()
	if s.consoles() > 0 {
		s.cfg.Router.Publish(talkapi.TopicEvents, ev)
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
			s.emit(talkapi.Event{Kind: talkapi.KindResponse, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: talkapi.StatusTimedOut})
		} else {
			s.send(t, NameResponse, Response{Talk: t.id, Status: talkapi.StatusTimedOut})
			s.emit(talkapi.Event{Kind: talkapi.KindRequestClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: talkapi.StatusTimedOut})
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
		_, err := s.ep.Call(cctx, kernelapi.Endpoint, kernelapi.SessionRequest{Address: addr})
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
			s.emit(talkapi.Event{Kind: talkapi.KindClosed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
		case t.outgoing:
			s.emit(talkapi.Event{Kind: talkapi.KindFailed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
		default:
			s.emit(talkapi.Event{Kind: talkapi.KindRequestClosed, Talk: t.n, Peer: addr.String(), Nickname: t.nick, Text: "connection lost"})
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
	from := f.From
	refuse := func(code wire.Code, format string, args ...any) {
		s.refuse(f.Frame, code, fmt.Sprintf(format, args...))
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
		case talkapi.StatusAccepted:
			t.state, t.deadline, t.nick = open, time.Time{}, v.Nickname
			s.remember(t)
			s.emit(talkapi.Event{Kind: talkapi.KindOpen, Talk: t.n, Peer: from.String(), Nickname: t.nick, Outgoing: true})
		case talkapi.StatusDeclined, talkapi.StatusTimedOut:
			delete(s.talks, t.n)
			s.emit(talkapi.Event{Kind: talkapi.KindResponse, Talk: t.n, Peer: from.String(), Nickname: t.nick, Status: v.Status})
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
			s.emit(talkapi.Event{Kind: talkapi.KindMsg, Talk: t.n, Peer: from.String(), Nickname: t.nick, Text: v.Text})
		}
	case NickChange:
		t := s.find(from, v.Talk)
		if t == nil || t.state != open {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		old := t.nick
		t.nick = v.Nickname
		s.emit(talkapi.Event{Kind: talkapi.KindNick, Talk: t.n, Peer: from.String(), Nickname: t.nick, OldNickname: old})
	case Close:
		t := s.find(from, v.Talk)
		if t == nil {
			refuse(wire.CodeInvalidData, "unknown talk %q", v.Talk)
			return
		}
		delete(s.talks, t.n)
		ev := talkapi.Event{Talk: t.n, Peer: from.String(), Nickname: t.nick, Text: v.Reason}
		switch {
		case t.state == open:
			ev.Kind, ev.ByPeer = talkapi.KindClosed, true
		case t.outgoing: // the callee should answer with talk_response
			ev.Kind, ev.Status = talkapi.KindResponse, talkapi.StatusDeclined
		default:
			ev.Kind, ev.ByPeer = talkapi.KindRequestClosed, true
		}
		s.emit(ev)
	}
}

// incoming serves a talk_request.
func (s *Service) incoming(f frame, req Request) {
	from := f.From
	if s.cfg.Stamps == nil {
		s.refuse(f.Frame, wire.CodeNotImplemented, "talk requests are not served")
		return
	}
	if _, err := s.cfg.Stamps.Check(req.Stamp, Resource(s.cfg.Self, from, req.Talk), s.cfg.Bits); err != nil {
		var herr *hashcash.Error
		if errors.Is(err, store.ErrLowSpace) {
			// The disk watcher has said so, once.
			s.refuse(f.Frame, wire.CodeInsufficientStorage, "low on disk space: try again later")
			return
		}
		if !errors.As(err, &herr) {
			s.log.Warn("talk: stamp not checked", "err", err)
			s.refuse(f.Frame, wire.CodeFailed, "stamp not checked")
			return
		}
		s.refuse(f.Frame, wire.CodeHashcash, err.Error())
		return
	}
	if s.consoles() == 0 {
		s.answer(f.Frame, NameResponse, Response{Talk: req.Talk, Status: talkapi.StatusNoUI})
		return
	}
	if s.find(from, req.Talk) != nil {
		s.refuse(f.Frame, wire.CodeInvalidData, fmt.Sprintf("talk %q exists", req.Talk))
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
		s.refuse(f.Frame, wire.CodeBusy, "too many talk requests")
		return
	}
	s.next++
	t := &talk{n: s.next, id: req.Talk, peer: from, nick: req.Nickname, state: ringing,
		deadline: time.Now().Add(s.cfg.Timeout), started: time.Now()}
	if a := f.Remote; a != nil {
		t.remote = a.String()
	}
	s.talks[t.n] = t
	s.answer(f.Frame, NameResponse, Response{Talk: req.Talk, Status: talkapi.StatusWaiting})
	ev := talkapi.Event{Kind: talkapi.KindRequest, Talk: t.n, Peer: from.String(), Nickname: t.nick, Remote: t.remote, Expires: t.deadline.UTC()}
	s.introduce(&ev, from)
	s.emit(ev)
}

// introduce says in ev whether the user knows the peer, and gives both
// fingerprints to compare when it does not.
func (s *Service) introduce(ev *talkapi.Event, peer identity.Address) {
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
	info, err := router.CallAs[kernelapi.PeerInfo](ctx, s.ep, kernelapi.Endpoint, kernelapi.SessionRequest{Address: to})
	if err != nil {
		return resp, err
	}
	bits, ok := info.ID.Hashcash[Purpose]
	if !ok {
		bits = DefaultBits
	}
	dl, _ := ctx.Deadline()
	mr, err := router.CallAs[minerapi.MintResult](ctx, s.ep, minerapi.Endpoint, minerapi.MintRequest{
		Resource: Resource(to, s.cfg.Self, id), Bits: bits, Priority: minerapi.Interactive, Deadline: dl,
	})
	if err != nil {
		return resp, fmt.Errorf("mint the stamp: %w", err)
	}
	e, err := router.CallAs[wire.Envelope](ctx, s.ep, kernelapi.Endpoint, kernelapi.CallRequest{To: to, Name: NameRequest,
		Data: Request{Talk: id, Nickname: nick, Stamp: mr.Stamp}})
	if err != nil {
		return resp, err
	}
	if e.Name != NameResponse {
		return resp, fmt.Errorf("peer answered %s", e.Name)
	}
	pv, err := parse(e)
	if err != nil {
		return resp, fmt.Errorf("peer's answer: %w", err)
	}
	resp = pv.(Response)
	if resp.Talk != id || resp.Status != talkapi.StatusWaiting && resp.Status != talkapi.StatusNoUI {
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
	ev := talkapi.Event{Talk: n, Peer: t.peer.String(), Nickname: t.nick}
	switch {
	case err != nil:
		delete(s.talks, n)
		ev.Kind, ev.Text = talkapi.KindFailed, describe(err)
	case resp.Status == talkapi.StatusNoUI:
		delete(s.talks, n)
		ev.Kind, ev.Status = talkapi.KindResponse, talkapi.StatusNoUI
	default:
		t.acked = true
		t.deadline = time.Now().Add(s.cfg.Timeout + callerGrace)
		ev.Kind = talkapi.KindRinging
	}
	s.emit(ev)
}

// describe turns a failed request into words for the user.
func describe(err error) string {
	switch wire.CodeOf(err) {
	case wire.CodeHashcash:
		return "the peer refused the hashcash stamp: " + err.Error()
	case wire.CodeBusy:
		return "the peer is busy; try again later"
	case wire.CodeUnknownCommand:
		return "the peer does not speak talk"
	}
	if errors.Is(err, kernelapi.ErrNoSession) {
		return "not connected to the peer"
	}
	return err.Error()
}
