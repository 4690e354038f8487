package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/store"
)

// ContactAdd is the data of a "contacts.add" request.
type ContactAdd struct {
	Address  string `json:"address"`
	Nickname string `json:"nickname"`
}

// ContactRemove is the data of a "contacts.remove" request.
type ContactRemove struct {
	ID uint64 `json:"id"`
}

// AddContact checks and adds a contact: the address must be a valid node
// address and the nickname a valid nickname not yet in the book. A bad
// address or nickname is a *CodeError with CodeInvalid (9000).
func AddContact(book *store.Contacts, req ContactAdd) (store.Contact, error) {
	addr, err := identity.ParseAddress(req.Address)
	if err != nil {
		return store.Contact{}, &CodeError{Code: CodeInvalid, Err: err}
	}
	if err := config.CheckNickname(req.Nickname); err != nil {
		return store.Contact{}, &CodeError{Code: CodeInvalid, Err: err}
	}
	return book.Add(store.Contact{Address: addr.String(), Nickname: req.Nickname})
}

// ContactHandlers returns the address-book functions: "contacts.list",
// "contacts.add" and "contacts.remove".
func ContactHandlers(book *store.Contacts) map[string]Handler {
	return map[string]Handler{
		"contacts.list": func(context.Context, *Conn, json.RawMessage) (any, error) {
			list, err := book.List()
			if list == nil {
				list = []store.Contact{}
			}
			return list, err
		},
		"contacts.add": func(_ context.Context, _ *Conn, data json.RawMessage) (any, error) {
			var req ContactAdd
			if err := decode(data, &req); err != nil {
				return nil, err
			}
			return AddContact(book, req)
		},
		"contacts.remove": func(_ context.Context, _ *Conn, data json.RawMessage) (any, error) {
			var req ContactRemove
			if err := decode(data, &req); err != nil {
				return nil, err
			}
			return nil, book.Remove(req.ID)
		},
	}
}

// decode decodes a request's data, refusing unknown fields, with
// CodeInvalid on failure.
func decode(data json.RawMessage, v any) error {
	if len(data) == 0 {
		return &CodeError{Code: CodeInvalid, Err: fmt.Errorf("request needs data")}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &CodeError{Code: CodeInvalid, Err: fmt.Errorf("bad request data: %w", err)}
	}
	return nil
}
