package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/kernelapi"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/store"
)

// NodeHandlers returns the functions every node serves: "info" (the
// node's Info) and "ping" (answers "pong", to check a connection).
func NodeHandlers() map[string]Handler {
	return map[string]Handler{
		"ping": func(context.Context, *Conn, json.RawMessage) (any, error) { return "pong", nil },
		"peers": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			return c.Endpoint.Call(ctx, kernelapi.Endpoint, kernelapi.PeersRequest{})
		},
		"info": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			v, err := c.Endpoint.Call(ctx, node.InfoEndpoint, node.InfoRequest{})
			if err != nil {
				return nil, err
			}
			in, ok := v.(node.Info)
			if !ok {
				return nil, fmt.Errorf("info service answered %T", v)
			}
			return in, nil
		},
	}
}

// Functions returns every function of a node's control socket: the node's
// own, the address book's (book), the scheduler's, the consoles' and the
// offline messages'.
func Functions(r *router.Router, book *store.Contacts) map[string]Handler {
	all := make(map[string]Handler)
	for _, fns := range []map[string]Handler{NodeHandlers(), ContactHandlers(book), CronHandlers(), TalkHandlers(r, book), MessageHandlers(book)} {
		for name, h := range fns {
			if _, dup := all[name]; dup {
				// As http.ServeMux: two handlers of one name are a bug.
				panic("control: function " + name + " defined twice")
			}
			all[name] = h
		}
	}
	return all
}
