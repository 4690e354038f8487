package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
	"github.com/phpchat/phpchat-node/subsystems/talkapi"
)

// TalkHandlers returns the consoles' functions on the control socket:
//
//	console.attach  stream Events (frames "talk.event", rid 0) until the
//	                connection closes; the first is of kind "attached".
//	                The offline-message service's msgapi.Events come
//	                too, as frames "msg.event" (MsgEventFrame), rid 0
//	talk.connect    {target}: dial a node, then ask it to talk → talkapi.TalkInfo
//	talk.request    {peer}: ask a connected peer (address or nickname) → talkapi.TalkInfo
//	talk.list       the talks and requests → []talkapi.TalkInfo
//	talk.requests   the incoming requests waiting for an answer → []talkapi.TalkInfo
//	talk.accept     {talk} → talkapi.TalkInfo
//	talk.decline    {talk}
//	talk.send       {talk, text}
//	talk.close      {talk}
//	nick            {nickname}: set the nickname (none: ask) → the nickname
func TalkHandlers(r *router.Router, book *store.Contacts) map[string]Handler {
	call := func(ctx context.Context, c *Conn, req any) (any, error) {
		v, err := c.Endpoint.Call(ctx, talkapi.Endpoint, req)
		if errors.Is(err, talkapi.ErrNoTalk) || errors.Is(err, talkapi.ErrBadInput) {
			return nil, &CodeError{Code: CodeInvalid, Err: err}
		}
		return v, err
	}
	talkFn := func(mk func(int) any) Handler {
		return func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a talkapi.TalkArgs
			if err := decode(data, &a); err != nil {
				return nil, err
			}
			return call(ctx, c, mk(a.Talk))
		}
	}
	list := func(ctx context.Context, c *Conn, onlyRinging bool) (any, error) {
		v, err := call(ctx, c, talkapi.ListRequest{})
		if err != nil || !onlyRinging {
			return v, err
		}
		all, _ := v.([]talkapi.TalkInfo)
		out := []talkapi.TalkInfo{}
		for _, t := range all {
			if t.State == "ringing" {
				out = append(out, t)
			}
		}
		return out, nil
	}
	return map[string]Handler{
		"console.attach": func(_ context.Context, c *Conn, _ json.RawMessage) (any, error) {
			return nil, attach(r, c)
		},
		"talk.connect": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a talkapi.ConnectArgs
			if err := decode(data, &a); err != nil {
				return nil, err
			}
			p, err := router.CallAs[kernelapi.PeerInfo](ctx, c.Endpoint, kernelapi.Endpoint, kernelapi.ConnectRequest{Target: a.Target})
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", a.Target, err)
			}
			return call(ctx, c, talkapi.StartRequest{Peer: p.Address})
		},
		"talk.request": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a talkapi.PeerArgs
			if err := decode(data, &a); err != nil {
				return nil, err
			}
			addr, err := ResolvePeer(book, a.Peer)
			if err != nil {
				return nil, err
			}
			if _, err := c.Endpoint.Call(ctx, dhtapi.Endpoint, dhtapi.ReachRequest{Address: addr}); err != nil {
				return nil, err
			}
			return call(ctx, c, talkapi.StartRequest{Peer: addr})
		},
		"talk.list": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			return list(ctx, c, false)
		},
		"talk.requests": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			return list(ctx, c, true)
		},
		"talk.accept":  talkFn(func(n int) any { return talkapi.AcceptRequest{Talk: n} }),
		"talk.decline": talkFn(func(n int) any { return talkapi.DeclineRequest{Talk: n} }),
		"talk.close":   talkFn(func(n int) any { return talkapi.CloseRequest{Talk: n} }),
		"talk.send": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a talkapi.SendArgs
			if err := decode(data, &a); err != nil {
				return nil, err
			}
			return call(ctx, c, talkapi.SendRequest{Talk: a.Talk, Text: a.Text})
		},
		"nick": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a talkapi.NickArgs
			if len(data) > 0 && string(data) != "null" {
				if err := decode(data, &a); err != nil {
					return nil, err
				}
			}
			return call(ctx, c, talkapi.NickRequest{Nickname: a.Nickname})
		},
	}
}

// attach streams the talk events and the offline-message events to the
// console at c until it goes away.
func attach(r *router.Router, c *Conn) error {
	ctx := c.Context()
	sub := r.Subscribe(talkapi.TopicEvents, 1024)
	defer sub.Unsubscribe()
	msgs := r.Subscribe(msgapi.TopicEvents, 256)
	defer msgs.Unsubscribe()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := c.Endpoint.Call(actx, talkapi.Endpoint, talkapi.AttachRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	a, ok := v.(talkapi.Attached)
	if !ok {
		return fmt.Errorf("talk answered %T", v)
	}
	if err := c.Send(talkapi.EventFrame, 0, talkapi.Event{Kind: talkapi.KindAttached, Time: time.Now().UTC(), State: &a.State}); err != nil {
		return err
	}
	for _, ev := range a.Backlog {
		if err := c.Send(talkapi.EventFrame, 0, ev); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C():
			if !ok {
				return nil
			}
			if err := c.Send(talkapi.EventFrame, 0, ev); err != nil {
				return err
			}
		case ev, ok := <-msgs.C():
			if !ok {
				return nil
			}
			if err := c.Send(MsgEventFrame, 0, ev); err != nil {
				return err
			}
		}
	}
}
