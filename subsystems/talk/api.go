package talk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
)

// Kinds of Event.
const (
	KindAttached      = "attached"       // first event of a console: State
	KindCalling       = "calling"        // an outgoing request is being made
	KindRinging       = "ringing"        // the callee's user has the request
	KindResponse      = "response"       // the callee's answer other than accepted: Status 2, 3 or 4
	KindFailed        = "failed"         // an outgoing request failed: Text
	KindRequest       = "request"        // an incoming request, to accept or decline
	KindRequestClosed = "request_closed" // an incoming request ended unanswered: Status 2 or 3, or Text
	KindOpen          = "open"           // a talk began
	KindMsg           = "msg"            // a line of a talk
	KindNick          = "nick"           // a nickname changed: the peer's (Talk set) or the user's
	KindClosed        = "closed"         // a talk ended
	KindDropped       = "dropped"        // Count events were lost while no console was attached
)

// An Event is something the users at the attached consoles should see.
type Event struct {
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	Talk     int       `json:"talk,omitempty"` // the talk's (or request's) number
	Peer     string    `json:"peer,omitempty"` // the peer's address
	Nickname string    `json:"nickname,omitempty"`
	Text     string    `json:"text,omitempty"`
	Status   int       `json:"status,omitempty"`
	// Mine marks a line the user wrote (at any console).
	Mine bool `json:"mine,omitempty"`
	// Outgoing marks an open talk this node asked for.
	Outgoing bool `json:"outgoing,omitempty"`
	// ByPeer marks a talk or request the peer ended.
	ByPeer      bool      `json:"by_peer,omitempty"`
	OldNickname string    `json:"old_nickname,omitempty"`
	Remote      string    `json:"remote,omitempty"` // the peer's network address
	Expires     time.Time `json:"expires,omitzero"`
	// Contact is the peer's nickname in the address book, if it is
	// there; otherwise FirstTime is set and both fingerprints are given.
	Contact         string `json:"contact,omitempty"`
	FirstTime       bool   `json:"first_time,omitempty"`
	Fingerprint     string `json:"fingerprint,omitempty"`
	PeerFingerprint string `json:"peer_fingerprint,omitempty"`
	Count           int    `json:"count,omitempty"`
	State           *State `json:"state,omitempty"`
}

// TalkInfo describes a talk or a request.
type TalkInfo struct {
	Talk     int       `json:"talk"`
	Peer     string    `json:"peer"`
	Nickname string    `json:"nickname"`
	State    string    `json:"state"` // "calling", "ringing" or "open"
	Outgoing bool      `json:"outgoing"`
	Remote   string    `json:"remote,omitempty"`
	Started  time.Time `json:"started"`
	Expires  time.Time `json:"expires,omitzero"`
}

// State is what a console needs when it attaches.
type State struct {
	Address     string     `json:"address"`
	Fingerprint string     `json:"fingerprint"`
	Nickname    string     `json:"nickname"`
	Talks       []TalkInfo `json:"talks"`
}

// Requests the service serves on the router.
type (
	// AttachRequest attaches a console until Done is closed; the reply is
	// an Attached. Events go to subscribers of TopicEvents from then on:
	// subscribe before attaching.
	AttachRequest struct{ Done <-chan struct{} }
	// StartRequest asks Peer (with a session) to talk; the reply is the
	// new talk's TalkInfo, and the outcome comes as events.
	StartRequest struct{ Peer identity.Address }
	// AcceptRequest accepts the incoming request Talk; the reply is its
	// TalkInfo.
	AcceptRequest struct{ Talk int }
	// DeclineRequest declines the incoming request Talk.
	DeclineRequest struct{ Talk int }
	// SendRequest sends a line on the open talk Talk.
	SendRequest struct {
		Talk int
		Text string
	}
	// CloseRequest ends the talk Talk, or withdraws the outgoing request.
	CloseRequest struct{ Talk int }
	// NickRequest sets the user's nickname, or asks for it if empty; the
	// reply is the nickname.
	NickRequest struct{ Nickname string }
	// ListRequest asks for the talks and requests: []TalkInfo.
	ListRequest struct{}
	// StatusRequest asks for the figures of `info`: a Status.
	StatusRequest struct{}
)

// Attached is the reply to an AttachRequest.
type Attached struct {
	State   State
	Backlog []Event // events kept while no console was attached
}

// Status is the service's part of `info`.
type Status struct {
	Nickname string
	// Consoles is the number of consoles attached.
	Consoles int
	// Letters maps a peer's address to its status letter in `info -c`:
	// "T" talking, "t" a request pending.
	Letters map[string]string
}

// Errors of the router requests.
var (
	ErrNoTalk   = errors.New("no such talk")
	ErrBadInput = errors.New("bad input")
)

func (s *Service) serve(ctx context.Context, m *router.Msg) (any, error) {
	switch req := m.Body.(type) {
	case AttachRequest:
		s.consoles++
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-req.Done:
				select {
				case s.detached <- struct{}{}:
				case <-ctx.Done():
				}
			case <-ctx.Done():
			}
		}()
		a := Attached{State: s.state(), Backlog: s.backlog}
		if s.dropped > 0 {
			a.Backlog = append([]Event{{Kind: KindDropped, Time: time.Now().UTC(), Count: s.dropped}}, a.Backlog...)
		}
		s.backlog, s.dropped = nil, 0
		return a, nil
	case StartRequest:
		return s.start(ctx, req.Peer)
	case AcceptRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != ringing {
			return nil, fmt.Errorf("talk request %d: %w", req.Talk, ErrNoTalk)
		}
		if err := s.send(t, NameResponse, Response{Talk: t.id, Status: StatusAccepted, Nickname: s.nickname}); err != nil {
			return nil, err
		}
		t.state, t.deadline = open, time.Time{}
		s.remember(t)
		s.emit(Event{Kind: KindOpen, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick})
		return s.info(t), nil
	case DeclineRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != ringing {
			return nil, fmt.Errorf("talk request %d: %w", req.Talk, ErrNoTalk)
		}
		delete(s.talks, t.n)
		s.send(t, NameResponse, Response{Talk: t.id, Status: StatusDeclined})
		s.emit(Event{Kind: KindRequestClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: StatusDeclined})
		return nil, nil
	case SendRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != open {
			return nil, fmt.Errorf("talk %d: %w", req.Talk, ErrNoTalk)
		}
		if req.Text == "" {
			return nil, fmt.Errorf("empty line: %w", ErrBadInput)
		}
		if err := CheckText(req.Text, MaxText); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		if err := s.send(t, NameMsg, Msg{Talk: t.id, Text: req.Text}); err != nil {
			return nil, err
		}
		s.emit(Event{Kind: KindMsg, Talk: t.n, Peer: t.peer.String(), Nickname: s.nickname, Text: req.Text, Mine: true})
		return nil, nil
	case CloseRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state == ringing {
			return nil, fmt.Errorf("talk %d: %w", req.Talk, ErrNoTalk)
		}
		delete(s.talks, t.n)
		s.send(t, NameClose, Close{Talk: t.id})
		s.emit(Event{Kind: KindClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick})
		return nil, nil
	case NickRequest:
		if req.Nickname == "" || req.Nickname == s.nickname {
			return s.nickname, nil
		}
		if err := config.CheckNickname(req.Nickname); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		old := s.nickname
		s.nickname = req.Nickname
		for _, t := range s.sorted() {
			if t.state == open {
				s.send(t, NameNick, NickChange{Talk: t.id, Nickname: s.nickname})
			}
		}
		s.emit(Event{Kind: KindNick, Nickname: s.nickname, OldNickname: old, Mine: true})
		return s.nickname, nil
	case ListRequest:
		return s.state().Talks, nil
	case StatusRequest:
		st := Status{Nickname: s.nickname, Consoles: s.consoles, Letters: make(map[string]string)}
		for _, t := range s.talks {
			a := t.peer.String()
			if t.state == open {
				st.Letters[a] = "T"
			} else if st.Letters[a] == "" {
				st.Letters[a] = "t"
			}
		}
		return st, nil
	}
	return nil, fmt.Errorf("talk: unexpected %T", m.Body)
}

// start begins an outgoing talk with peer.
func (s *Service) start(ctx context.Context, p identity.Address) (TalkInfo, error) {
	if p == s.cfg.Self {
		return TalkInfo{}, fmt.Errorf("%w: that is this node's own address", ErrBadInput)
	}
	for _, t := range s.talks {
		if t.peer == p && t.outgoing && t.state == calling {
			return TalkInfo{}, fmt.Errorf("a talk request to %s is pending already (talk %d)", p, t.n)
		}
	}
	if len(s.talks) >= MaxTalks {
		return TalkInfo{}, fmt.Errorf("too many talks")
	}
	s.next++
	t := &talk{n: s.next, id: newTalkID(), peer: p, outgoing: true, state: calling,
		started: time.Now(), deadline: time.Now().Add(callTimeout + time.Second)}
	if s.cfg.Contacts != nil {
		if ct, err := s.cfg.Contacts.ByAddress(p.String()); err == nil {
			t.nick = ct.Nickname
		}
	}
	s.talks[t.n] = t
	ev := Event{Kind: KindCalling, Talk: t.n, Peer: p.String(), Nickname: t.nick}
	s.introduce(&ev, p)
	s.emit(ev)
	s.call(ctx, t)
	return s.info(t), nil
}

func (s *Service) state() State {
	st := State{Address: s.cfg.Self.String(), Fingerprint: s.cfg.Self.Fingerprint(), Nickname: s.nickname, Talks: []TalkInfo{}}
	for _, t := range s.sorted() {
		st.Talks = append(st.Talks, s.info(t))
	}
	return st
}

func (s *Service) info(t *talk) TalkInfo {
	ti := TalkInfo{Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Outgoing: t.outgoing,
		Remote: t.remote, Started: t.started.UTC(), Expires: t.deadline.UTC()}
	if t.deadline.IsZero() {
		ti.Expires = time.Time{}
	}
	ti.State = [...]string{calling: "calling", ringing: "ringing", open: "open"}[t.state]
	return ti
}

// Contribute adds the talks to a node's Info: the user's nickname, and
// the status letters of the connections with a talk ("T") or a pending
// request ("t"). It is a node.Contributor and must run after the
// kernel's, which lists the connections.
func Contribute(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	v, err := ep.Call(ctx, Endpoint, StatusRequest{})
	if err != nil {
		return err
	}
	st, ok := v.(Status)
	if !ok {
		return fmt.Errorf("talk answered %T", v)
	}
	in.Nickname = st.Nickname
	for i := range in.Connections {
		if l, ok := st.Letters[in.Connections[i].Address]; ok {
			in.Connections[i].Status = l
		}
	}
	return nil
}
