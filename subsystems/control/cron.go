package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/phpchat/phpchat-node/subsystems/cronapi"
)

// CronRun is the data of a "cron.run" request: the jobs to run now, or
// every job (one full cycle) when empty.
type CronRun struct {
	Only []string `json:"only,omitempty"`
}

// CronHandlers returns "cron.run", which runs a cycle (or chosen jobs) now
// and answers with the results once they have run, and "cron.status".
func CronHandlers() map[string]Handler {
	return map[string]Handler{
		"cron.run": func(ctx context.Context, c *Conn, data json.RawMessage) (any, error) {
			var req CronRun
			if len(data) > 0 && string(data) != "null" {
				if err := decode(data, &req); err != nil {
					return nil, err
				}
			}
			v, err := c.Endpoint.Call(ctx, cronapi.Endpoint, cronapi.RunRequest{Only: req.Only})
			if err != nil {
				return nil, err
			}
			return v, nil
		},
		"cron.status": func(ctx context.Context, c *Conn, _ json.RawMessage) (any, error) {
			v, err := c.Endpoint.Call(ctx, cronapi.Endpoint, cronapi.StatusRequest{})
			if err != nil {
				return nil, fmt.Errorf("cron status: %w", err)
			}
			return v, nil
		},
	}
}
