package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/cronapi"
)

func cronjobCommand() *cli.Command {
	return &cli.Command{
		Name:  "cronjob",
		Usage: "run scheduled jobs on the running node now, and wait for them",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "cycle", Aliases: []string{"c"}, Usage: "run one full cycle of every job"},
			&cli.BoolFlag{Name: "ping", Aliases: []string{"p"}, Usage: "run only the ping job"},
			&cli.BoolFlag{Name: "bootstrap", Aliases: []string{"b"}, Usage: "run only the bootstrap job"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
		},
		Action: func(c *cli.Context) error {
			var req control.CronRun
			switch {
			case c.Bool("cycle"):
			case c.Bool("ping") || c.Bool("bootstrap"):
				if c.Bool("ping") {
					req.Only = append(req.Only, "ping")
				}
				if c.Bool("bootstrap") {
					req.Only = append(req.Only, "bootstrap")
				}
			default:
				return cli.Exit("cronjob: say what to run: -c (a full cycle), -p (ping) or -b (bootstrap)", exitSettings)
			}
			l, err := layout(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, control.CronRunTimeout)
			defer cancel()
			cl, err := control.Dial(ctx, l.ControlSocket())
			if err != nil {
				return cli.Exit(fmt.Sprintf("cronjob: %v", err), exitFailure)
			}
			defer cl.Close()
			var res []cronapi.Result
			if err := cl.Call(ctx, "cron.run", req, &res, nil); err != nil {
				return cli.Exit(fmt.Sprintf("cronjob: %v", err), exitFailure)
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(res)
			}
			failed := 0
			for _, r := range res {
				status := "ok"
				if r.Error != "" {
					status, failed = "failed: "+r.Error, failed+1
				}
				fmt.Fprintf(c.App.Writer, "%-12s %8s  %s\n", r.Job, r.Took.Round(time.Microsecond), status)
			}
			if failed > 0 {
				return cli.Exit("", exitFailure)
			}
			return nil
		},
	}
}
