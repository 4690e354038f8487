package talk

import (
	"context"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

func (s *Service) serve(ctx context.Context, m *router.Msg) (any, error) {
	switch req := m.Body.(type) {
	case talkapi.AttachRequest:
		a := talkapi.Attached{State: s.state(), Backlog: s.backlog}
		if s.dropped > 0 {
			a.Backlog = append([]talkapi.Event{{Kind: talkapi.KindDropped, Time: time.Now().UTC(), Count: s.dropped}}, a.Backlog...)
		}
		s.backlog, s.dropped = nil, 0
		return a, nil
	case talkapi.StartRequest:
		return s.start(ctx, req.Peer)
	case talkapi.AcceptRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != ringing {
			return nil, fmt.Errorf("talk request %d: %w", req.Talk, talkapi.ErrNoTalk)
		}
		if err := s.send(t, NameResponse, Response{Talk: t.id, Status: talkapi.StatusAccepted, Nickname: s.nickname}); err != nil {
			return nil, err
		}
		t.state, t.deadline = open, time.Time{}
		s.remember(t)
		s.emit(talkapi.Event{Kind: talkapi.KindOpen, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick})
		return s.info(t), nil
	case talkapi.DeclineRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != ringing {
			return nil, fmt.Errorf("talk request %d: %w", req.Talk, talkapi.ErrNoTalk)
		}
		delete(s.talks, t.n)
		s.send(t, NameResponse, Response{Talk: t.id, Status: talkapi.StatusDeclined})
		s.emit(talkapi.Event{Kind: talkapi.KindRequestClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Status: talkapi.StatusDeclined})
		return nil, nil
	case talkapi.SendRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state != open {
			return nil, fmt.Errorf("talk %d: %w", req.Talk, talkapi.ErrNoTalk)
		}
		if req.Text == "" {
			return nil, fmt.Errorf("empty line: %w", talkapi.ErrBadInput)
		}
		if err := CheckText(req.Text, MaxText); err != nil {
			return nil, fmt.Errorf("%w: %w", talkapi.ErrBadInput, err)
		}
		if err := s.send(t, NameMsg, Msg{Talk: t.id, Text: req.Text}); err != nil {
			return nil, err
		}
		s.emit(talkapi.Event{Kind: talkapi.KindMsg, Talk: t.n, Peer: t.peer.String(), Nickname: s.nickname, Text: req.Text, Mine: true})
		return nil, nil
	case talkapi.CloseRequest:
		t := s.talks[req.Talk]
		if t == nil || t.state == ringing {
			return nil, fmt.Errorf("talk %d: %w", req.Talk, talkapi.ErrNoTalk)
		}
		delete(s.talks, t.n)
		s.send(t, NameClose, Close{Talk: t.id})
		s.emit(talkapi.Event{Kind: talkapi.KindClosed, Talk: t.n, Peer: t.peer.String(), Nickname: t.nick})
		return nil, nil
	case talkapi.NickRequest:
		if req.Nickname == "" || req.Nickname == s.nickname {
			return s.nickname, nil
		}
		if err := config.CheckNickname(req.Nickname); err != nil {
			return nil, fmt.Errorf("%w: %w", talkapi.ErrBadInput, err)
		}
		old := s.nickname
		s.nickname = req.Nickname
		for _, t := range s.sorted() {
			if t.state == open {
				s.send(t, NameNick, NickChange{Talk: t.id, Nickname: s.nickname})
			}
		}
		s.emit(talkapi.Event{Kind: talkapi.KindNick, Nickname: s.nickname, OldNickname: old, Mine: true})
		return s.nickname, nil
	case talkapi.ListRequest:
		return s.state().Talks, nil
	case talkapi.StatusRequest:
		st := talkapi.Status{Nickname: s.nickname, Consoles: s.consoles(), Letters: make(map[string]string)}
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
func (s *Service) start(ctx context.Context, p identity.Address) (talkapi.TalkInfo, error) {
	if p == s.cfg.Self {
		return talkapi.TalkInfo{}, fmt.Errorf("%w: that is this node's own address", talkapi.ErrBadInput)
	}
	for _, t := range s.talks {
		if t.peer == p && t.outgoing && t.state == calling {
			return talkapi.TalkInfo{}, fmt.Errorf("a talk request to %s is pending already (talk %d)", p, t.n)
		}
	}
	if len(s.talks) >= MaxTalks {
		return talkapi.TalkInfo{}, fmt.Errorf("too many talks")
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
	ev := talkapi.Event{Kind: talkapi.KindCalling, Talk: t.n, Peer: p.String(), Nickname: t.nick}
	s.introduce(&ev, p)
	s.emit(ev)
	s.call(ctx, t)
	return s.info(t), nil
}

func (s *Service) state() talkapi.State {
	st := talkapi.State{Address: s.cfg.Self.String(), Fingerprint: s.cfg.Self.Fingerprint(), Nickname: s.nickname, Talks: []talkapi.TalkInfo{}}
	for _, t := range s.sorted() {
		st.Talks = append(st.Talks, s.info(t))
	}
	return st
}

func (s *Service) info(t *talk) talkapi.TalkInfo {
	ti := talkapi.TalkInfo{Talk: t.n, Peer: t.peer.String(), Nickname: t.nick, Outgoing: t.outgoing,
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
	v, err := ep.Call(ctx, talkapi.Endpoint, talkapi.StatusRequest{})
	if err != nil {
		return err
	}
	st, ok := v.(talkapi.Status)
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
