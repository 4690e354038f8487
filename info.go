package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/diskspace"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "show the local node: address, mail address, nickname, whether it runs",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (with -c: one per interval)"},
			&cli.BoolFlag{Name: "live", Aliases: []string{"c"}, Usage: "live statistics of the running node, refreshed every interval"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "with -c: time between samples"},
			&cli.IntFlag{Name: "count", Usage: "with -c: stop after this many samples (0: until interrupted)"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("live") {
				return liveInfo(c)
			}
			in, err := readInfo(c)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				return enc.Encode(in)
			}
			printInfo(c.App.Writer, in)
			return nil
		},
	}
}

// readInfo asks the running node, or reads the data directory when no node
// runs on it.
func readInfo(c *cli.Context) (node.Info, error) {
	l, err := layout(c)
	if err != nil {
		return node.Info{}, err
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	cl, err := control.Dial(ctx, l.ControlSocket())
	if err == nil {
		defer cl.Close()
		var in node.Info
		if err := cl.Call(ctx, "info", nil, &in, nil); err != nil {
			return in, cli.Exit(fmt.Sprintf("info from running node: %v", err), exitFailure)
		}
		return in, nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		// A socket we may not use, or a node that does not answer, is
		// not a stopped node.
		return node.Info{}, cli.Exit(fmt.Sprintf("info: %v", err), exitFailure)
	}
	id, err := identity.Load(l.Key())
	if errors.Is(err, fs.ErrNotExist) {
		return node.Info{}, cli.Exit(fmt.Sprintf("no node in %s (`phpchat-node run` creates one)", l.Dir), exitFailure)
	}
	if err != nil {
		return node.Info{}, cli.Exit(err.Error(), exitFailure)
	}
	s, err := resolveSettings(nil, l)
	if err != nil {
		return node.Info{}, err
	}
	return localInfo(l, s, id), nil
}

func printInfo(w io.Writer, in node.Info) {
	fmt.Fprintf(w, "phpchat-node %s\n", in.Version)
	row := func(k, v string) { fmt.Fprintf(w, "   %-13s %s\n", k+":", v) }
	row("Address", in.Address)
	row("Fingerprint", in.Fingerprint)
	row("Mail address", in.MailAddress)
	row("Nickname", in.Nickname)
	row("Listen", in.Listen)
	row("Data dir", in.DataDir)
	if in.Running {
		row("Running", fmt.Sprintf("yes (pid %d, up %s)", in.PID, (time.Duration(in.Uptime)*time.Second).String()))
		if in.MemoryRSS > 0 {
			row("Memory", fmt.Sprintf("%.1f MiB resident", float64(in.MemoryRSS)/(1<<20)))
		}
		if in.DiskFree != nil {
			row("Disk", diskRow(in))
		}
		if in.Peers != nil {
			row("Peers", fmt.Sprintf("%d (%d in, %d out)", *in.Peers, in.PeersIn, in.PeersOut))
		}
		if in.TrafficIn != nil && in.TrafficOut != nil {
			row("Traffic", fmt.Sprintf("in %s, out %s", byteSize(float64(*in.TrafficIn)), byteSize(float64(*in.TrafficOut))))
		}
		if in.DHTNodes != nil && in.Buckets != nil {
			v := fmt.Sprintf("%d nodes in %d buckets", *in.DHTNodes, *in.Buckets)
			if in.DHTNote != "" {
				v += " (" + in.DHTNote + ")"
			}
			row("DHT", v)
		}
		if m := in.Miner; m != nil {
			row("Miner", fmt.Sprintf("%d workers, %s hashes/s, %d queued, %d minted", m.Workers, siNumber(m.HashRate), m.Queued, m.Minted))
		}
		for _, j := range in.Cron {
			last := "not run yet"
			if !j.LastRun.IsZero() {
				last = fmt.Sprintf("last %s (took %s)", j.LastRun.Local().Format(time.DateTime), time.Duration(j.LastTook*float64(time.Second)).Round(time.Millisecond))
				if j.LastErr != "" {
					last += ", failed: " + j.LastErr
				}
			}
			row("Cron", fmt.Sprintf("%-9s %s", j.Job, last))
		}
		for _, t := range in.Targets {
			state := "connecting"
			switch {
			case t.Connected:
				state = "connected"
			case t.LastError != "":
				state = "not connected: " + t.LastError
			}
			row("Connect", t.Target+" ("+state+")")
		}
	} else {
		row("Running", "no")
	}
}

// diskRow describes the free space of the data dir for info.
func diskRow(in node.Info) string {
	free := diskspace.Size(*in.DiskFree)
	if in.DiskLow {
		return fmt.Sprintf("LOW: %s free, below the reserve of %s: work that writes is refused (setting disk-reserve)", free, diskspace.Size(in.DiskReserve))
	}
	return fmt.Sprintf("%s free (reserve %s)", free, diskspace.Size(in.DiskReserve))
}
