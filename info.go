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

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/diskspace"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

// infoUsage is the synopsis of the info command.
const infoUsage = "usage: phpchat-node info [--json] [-c [--interval D] [--count N]]"

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
			if c.NArg() != 0 {
				return cli.Exit(infoUsage, exitSettings)
			}
			for _, f := range []string{"count", "interval"} {
				if c.IsSet(f) && !c.Bool("live") {
					return cli.Exit(fmt.Sprintf("info: --%s is for live statistics: add -c (%s)", f, infoUsage), exitSettings)
				}
			}
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

// DefaultWaitTimeout is how long `wait` waits for a node by default.
const DefaultWaitTimeout = 30 * time.Second

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "wait until the node of the data dir is ready: it answers on its control socket and listens for peers",
		Description: "wait exits 0 once the node started by `run` on the same data dir is ready (and, with --peers N, " +
			"has N peers), and 1 if it is not within the timeout. It lets a script start a node in the background " +
			"and go on once it serves:\n\n" +
			"   phpchat-node run 2>node.log &\n   phpchat-node wait && phpchat-node info",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: DefaultWaitTimeout, Usage: "give up after this long"},
			&cli.IntFlag{Name: "peers", Usage: "wait also until the node has at least this many peers"},
		},
		Action: waitReady,
	}
}

func waitReady(c *cli.Context) error {
	if c.NArg() != 0 || c.Int("peers") < 0 {
		return cli.Exit("usage: phpchat-node wait [--timeout D] [--peers N]", exitSettings)
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return cli.Exit(fmt.Sprintf("wait: --timeout %s is not a positive duration", timeout), exitSettings)
	}
	l, err := layout(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	// The node may not have made its data dir or socket yet: ask again,
	// less and less often. The reason given at the end is that of the
	// last answer, not of a question cut short by the timeout.
	why := errors.New("no answer")
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
		err := nodeReady(ctx, l.ControlSocket(), c.Int("peers"))
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			why = err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.Context.Err() != nil {
				return cli.Exit("wait: interrupted", exitFailure)
			}
			return cli.Exit(fmt.Sprintf("wait: no node ready in %s after %s: %v", l.Dir, timeout, why), exitFailure)
		case <-t.C:
		}
	}
}

// nodeReady returns nil once the node on the control socket at path answers,
// its kernel listens for peers (info then has peer counts) and it has at
// least peers peers.
func nodeReady(ctx context.Context, path string, peers int) error {
	cl, err := control.Dial(ctx, path)
	if errors.Is(err, control.ErrNotRunning) {
		return errors.New("no node is running")
	}
	if err != nil {
		return err
	}
	defer cl.Close()
	var in node.Info
	if err := cl.Call(ctx, "info", nil, &in, nil); err != nil {
		return err
	}
	switch {
	case in.Peers == nil:
		return errors.New("the node does not listen for peers yet")
	case *in.Peers < peers:
		return fmt.Errorf("the node has %d peers, not %d", *in.Peers, peers)
	}
	return nil
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
	id, s, err := loadNode(l)
	if err != nil {
		return node.Info{}, err
	}
	return localInfo(l, s, id), nil
}

// loadNode reads the identity and settings of the node in l, which need
// not run; a directory without a node is an error that says so.
func loadNode(l config.Layout) (*identity.Identity, *config.Settings, error) {
	id, err := identity.Load(l.Key())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, cli.Exit(errNoNode(l).Error(), exitFailure)
	}
	if err != nil {
		return nil, nil, cli.Exit(err.Error(), exitFailure)
	}
	s, err := resolveSettings(nil, l)
	if err != nil {
		return nil, nil, err
	}
	return id, s, nil
}

// errNoNode says that a data directory holds no node: commands other than
// run never create one.
func errNoNode(l config.Layout) error {
	return fmt.Errorf("no node in %s (`phpchat-node --data-dir %s run` creates one)", l.Dir, l.Dir)
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
