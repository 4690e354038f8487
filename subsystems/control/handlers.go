package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/phpchat/phpchat-node/node"
)

// NodeHandlers returns the functions every node serves: "info" (the
// node's Info) and "ping" (answers "pong", to check a connection).
func NodeHandlers() map[string]Handler {
	return map[string]Handler{
		"ping": func(context.Context, *Conn, json.RawMessage) (any, error) { return "pong", nil },
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
