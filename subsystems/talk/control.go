package talk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

// EventFrame is the name of the control-socket frames that carry Events
// to an attached console (rid 0).
const EventFrame = "talk.event"

// Data of the console's control-socket functions.
type (
	// ConnectArgs is the data of "talk.connect".
	ConnectArgs struct {
		Target string `json:"target"` // host:port or address@host:port
	}
	// PeerArgs is the data of "talk.request".
	PeerArgs struct {
		Peer string `json:"peer"` // an address, or a nickname of the address book
	}
	// TalkArgs is the data of "talk.accept", "talk.decline" and "talk.close".
	TalkArgs struct {
		Talk int `json:"talk"`
	}
	// SendArgs is the data of "talk.send".
	SendArgs struct {
		Talk int    `json:"talk"`
		Text string `json:"text"`
	}
	// NickArgs is the data of "nick".
	NickArgs struct {
		Nickname string `json:"nickname,omitempty"`
	}
)

// ControlHandlers returns the consoles' functions on the control socket:
//
//	console.attach  stream Events (frames "talk.event", rid 0) until the
//	                connection closes; the first is of kind "attached"
//	talk.connect    {target}: dial a node, then ask it to talk → TalkInfo
//	talk.request    {peer}: ask a connected peer (address or nickname) → TalkInfo
//	talk.list       the talks and requests → []TalkInfo
//	talk.requests   the incoming requests waiting for an answer → []TalkInfo
//	talk.accept     {talk} → TalkInfo
//	talk.decline    {talk}
//	talk.send       {talk, text}
//	talk.close      {talk}
//	nick            {nickname}: set the nickname (none: ask) → the nickname
func ControlHandlers(r *router.Router, book *store.Contacts) map[string]control.Handler {
	call := func(ctx context.Context, c *control.Conn, req any) (any, error) {
		v, err := c.Endpoint.Call(ctx, Endpoint, req)
		if errors.Is(err, ErrNoTalk) || errors.Is(err, ErrBadInput) {
			return nil, &control.CodeError{Code: control.CodeInvalid, Err: err}
		}
		return v, err
	}
	talkFn := func(mk func(int) any) control.Handler {
		return func(ctx context.Context, c *control.Conn, data json.RawMessage) (any, error) {
			var a TalkArgs
			if err := decodeArgs(data, &a); err != nil {
				return nil, err
			}
			return call(ctx, c, mk(a.Talk))
		}
	}
	list := func(ctx context.Context, c *control.Conn, onlyRinging bool) (any, error) {
		v, err := call(ctx, c, ListRequest{})
		if err != nil || !onlyRinging {
			return v, err
		}
		all, _ := v.([]TalkInfo)
		out := []TalkInfo{}
		for _, t := range all {
			if t.State == "ringing" {
				out = append(out, t)
			}
		}
		return out, nil
	}
	return map[string]control.Handler{
		"console.attach": func(_ context.Context, c *control.Conn, _ json.RawMessage) (any, error) {
			return nil, attach(r, c)
		},
		"talk.connect": func(ctx context.Context, c *control.Conn, data json.RawMessage) (any, error) {
			var a ConnectArgs
			if err := decodeArgs(data, &a); err != nil {
				return nil, err
			}
			v, err := c.Endpoint.Call(ctx, kernel.Endpoint, kernel.ConnectRequest{Target: a.Target})
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", a.Target, err)
			}
			addr, ok := v.(identity.Address)
			if !ok {
				return nil, fmt.Errorf("kernel answered %T", v)
			}
			return call(ctx, c, StartRequest{Peer: addr})
		},
		"talk.request": func(ctx context.Context, c *control.Conn, data json.RawMessage) (any, error) {
			var a PeerArgs
			if err := decodeArgs(data, &a); err != nil {
				return nil, err
			}
			addr, err := identity.ParseAddress(a.Peer)
			if err != nil {
				ct, cerr := book.ByNickname(a.Peer)
				if cerr != nil {
					if errors.Is(cerr, store.ErrNotFound) {
						return nil, &control.CodeError{Code: control.CodeInvalid, Err: fmt.Errorf("%q is neither an address nor a nickname of the address book", a.Peer)}
					}
					return nil, cerr
				}
				if addr, err = identity.ParseAddress(ct.Address); err != nil {
					return nil, fmt.Errorf("contact %d: %w", ct.ID, err)
				}
			}
			if err := reach(ctx, c.Endpoint, addr); err != nil {
				return nil, err
			}
			return call(ctx, c, StartRequest{Peer: addr})
		},
		"talk.list": func(ctx context.Context, c *control.Conn, _ json.RawMessage) (any, error) {
			return list(ctx, c, false)
		},
		"talk.requests": func(ctx context.Context, c *control.Conn, _ json.RawMessage) (any, error) {
			return list(ctx, c, true)
		},
		"talk.accept":  talkFn(func(n int) any { return AcceptRequest{Talk: n} }),
		"talk.decline": talkFn(func(n int) any { return DeclineRequest{Talk: n} }),
		"talk.close":   talkFn(func(n int) any { return CloseRequest{Talk: n} }),
		"talk.send": func(ctx context.Context, c *control.Conn, data json.RawMessage) (any, error) {
			var a SendArgs
			if err := decodeArgs(data, &a); err != nil {
				return nil, err
			}
			return call(ctx, c, SendRequest{Talk: a.Talk, Text: a.Text})
		},
		"nick": func(ctx context.Context, c *control.Conn, data json.RawMessage) (any, error) {
			var a NickArgs
			if len(data) > 0 && string(data) != "null" {
				if err := decodeArgs(data, &a); err != nil {
					return nil, err
				}
			}
			return call(ctx, c, NickRequest{Nickname: a.Nickname})
		},
	}
}

// reach makes sure the node has a session with addr: if it has none, it
// looks the node up in the DHT and dials the addresses found.
func reach(ctx context.Context, ep *router.Endpoint, addr identity.Address) error {
	if _, err := ep.Call(ctx, kernel.Endpoint, kernel.SessionRequest{Address: addr}); err == nil {
		return nil
	} else if !errors.Is(err, kernel.ErrNoSession) {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := ep.Call(lctx, dht.Endpoint, dht.LookupRequest{Target: addr.ID()})
	if err != nil {
		return fmt.Errorf("not connected to %s, and the DHT lookup failed: %w", addr, err)
	}
	res, _ := v.(dht.LookupResult)
	var errs []error
	for _, n := range res.Nodes {
		if n.Address != addr {
			continue
		}
		for _, hp := range n.Addrs {
			if _, err := ep.Call(ctx, kernel.Endpoint, kernel.ConnectRequest{Target: addr.String() + "@" + hp}); err != nil {
				errs = append(errs, err)
				continue
			}
			return nil
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cannot reach %s: %w", addr, errors.Join(errs...))
	}
	return fmt.Errorf("not connected to %s, and the DHT does not know where it is: connect to ADDRESS@HOST:PORT", addr)
}

// attach streams the talk events to the console at c until it goes away.
func attach(r *router.Router, c *control.Conn) error {
	ctx := c.Context()
	sub := r.Subscribe(TopicEvents, 1024)
	defer sub.Unsubscribe()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := c.Endpoint.Call(actx, Endpoint, AttachRequest{Done: ctx.Done()})
	cancel()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	a, ok := v.(Attached)
	if !ok {
		return fmt.Errorf("talk answered %T", v)
	}
	if err := c.Send(EventFrame, 0, Event{Kind: KindAttached, Time: time.Now().UTC(), State: &a.State}); err != nil {
		return err
	}
	for _, ev := range a.Backlog {
		if err := c.Send(EventFrame, 0, ev); err != nil {
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
			if err := c.Send(EventFrame, 0, ev); err != nil {
				return err
			}
		}
	}
}

// decodeArgs decodes a function's data, refusing unknown fields, with
// CodeInvalid on failure.
func decodeArgs(data json.RawMessage, v any) error {
	if len(data) == 0 {
		return &control.CodeError{Code: control.CodeInvalid, Err: errors.New("request needs data")}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &control.CodeError{Code: control.CodeInvalid, Err: fmt.Errorf("bad request data: %w", err)}
	}
	return nil
}
