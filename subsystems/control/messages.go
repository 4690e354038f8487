package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/msgapi"
)

// MsgEventFrame is the name of the frames that console.attach streams for
// the offline-message service's events (msgapi.Event), with rid 0.
const MsgEventFrame = "msg.event"

// MsgSend is the data of a "msg.send" request.
type MsgSend struct {
	To      string `json:"to"`      // an address, or a nickname of the address book
	Content []byte `json:"content"` // an RFC 5322 message (base64 in JSON)
}

// MsgID is the data of "msg.read" and "msg.delete", and the reply of
// "msg.send".
type MsgID struct {
	ID string `json:"id"` // a message id, or a unique prefix of one
}

// MessageHandlers returns the offline-message functions:
//
//	msg.send    {to, content}: queue a message → {id}, once it is durable
//	msg.list    the inbox and outbox, oldest first → []msgapi.Summary
//	msg.read    {id} → msgapi.Message; an inbox message is marked read
//	msg.delete  {id}
//
// Bad data, an unknown recipient and an unknown or ambiguous id are
// CodeInvalid.
func MessageHandlers(book *store.Contacts) map[string]Handler {
	return map[string]Handler{
		"msg.send": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var a MsgSend
			if err := decode(data, &a); err != nil {
				return nil, err
			}
			if a.To == "" || len(a.Content) == 0 {
				return nil, &CodeError{Code: CodeInvalid, Err: errors.New("msg.send needs a recipient (to) and a message (content)")}
			}
			to, err := ResolvePeer(book, a.To)
			if err != nil {
				return nil, err
			}
			id, err := callMessages[string](ctx, c, msgapi.SendRequest{To: to, Content: a.Content})
			return MsgID{ID: id}, err
		},
		"msg.list": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			list, err := callMessages[[]msgapi.Summary](ctx, c, msgapi.ListRequest{})
			if list == nil {
				list = []msgapi.Summary{}
			}
			return list, err
		},
		"msg.read": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			id, err := decodeID(data)
			if err != nil {
				return nil, err
			}
			return callMessages[msgapi.Message](ctx, c, msgapi.ReadRequest{ID: id})
		},
		"msg.delete": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			id, err := decodeID(data)
			if err != nil {
				return nil, err
			}
			_, err = callMessages[any](ctx, c, msgapi.DeleteRequest{ID: id})
			return nil, err
		},
	}
}

// decodeID decodes a MsgID and checks that it names a message.
func decodeID(data json.RawMessage) (string, error) {
	var a MsgID
	if err := decode(data, &a); err != nil {
		return "", err
	}
	if a.ID == "" {
		return "", &CodeError{Code: CodeInvalid, Err: errors.New("a message id is needed")}
	}
	return a.ID, nil
}

// callMessages asks the offline-message service, making the errors that
// the caller's input caused CodeInvalid.
func callMessages[T any](ctx context.Context, c *Conn, req any) (T, error) {
	v, err := c.Endpoint.Call(ctx, msgapi.Endpoint, req)
	var zero T
	if err != nil {
		for _, bad := range []error{msgapi.ErrBadInput, msgapi.ErrNoMessage, msgapi.ErrAmbiguous, msgapi.ErrTooLarge} {
			if errors.Is(err, bad) {
				return zero, &CodeError{Code: CodeInvalid, Err: err}
			}
		}
		if errors.Is(err, router.ErrNoEndpoint) {
			return zero, fmt.Errorf("the offline-message service is not running: %w", err)
		}
		return zero, err
	}
	if v == nil {
		return zero, nil
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("messages answered %T", v)
	}
	return t, nil
}

// ResolvePeer returns the address that s names: an address, or the
// nickname of a contact of book. Neither is a *CodeError with
// CodeInvalid.
func ResolvePeer(book *store.Contacts, s string) (identity.Address, error) {
	addr, err := identity.ParseAddress(s)
	if err == nil {
		return addr, nil
	}
	ct, cerr := book.ByNickname(s)
	if errors.Is(cerr, store.ErrNotFound) {
		return identity.Address{}, &CodeError{Code: CodeInvalid, Err: fmt.Errorf("%q is neither an address nor a nickname of the address book", s)}
	}
	if cerr != nil {
		return identity.Address{}, cerr
	}
	addr, err = identity.ParseAddress(ct.Address)
	if err != nil {
		return identity.Address{}, fmt.Errorf("contact %d: %w", ct.ID, err)
	}
	return addr, nil
}
