package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/subsystems/control"
)

// sample is one interval of `info -c --json`: the node's Info, the
// connections with an open talk and the traffic rates since the previous
// sample.
type sample struct {
	node.Info
	Talking        int     `json:"talking"`          // connections with status T
	TrafficInRate  float64 `json:"traffic_in_rate"`  // bytes per second
	TrafficOutRate float64 `json:"traffic_out_rate"` // bytes per second

	gone int // connections closed lately, shown as 'x' in the text view
}

// goneFor is how long the text view shows a closed connection, as 'x'.
const goneFor = 5 * time.Second

// closedConns follows the connections from sample to sample, so that the
// text view shows those that closed as 'x' for goneFor, as the original
// did.
type closedConns struct {
	open map[string]bool      // by peer address, in the last sample
	gone map[string]time.Time // by peer address: when it was first missed
}

// update notes the connections of s, taken at now, and sets s.gone.
func (cc *closedConns) update(s *sample, now time.Time) {
	open := make(map[string]bool, len(s.Connections))
	for _, c := range s.Connections {
		open[c.Address] = true
		delete(cc.gone, c.Address)
	}
	for a := range cc.open {
		if !open[a] {
			if cc.gone == nil {
				cc.gone = make(map[string]time.Time)
			}
			cc.gone[a] = now
		}
	}
	cc.open = open
	s.gone = 0
	for a, at := range cc.gone {
		if now.Sub(at) >= goneFor {
			delete(cc.gone, a)
			continue
		}
		s.gone++
	}
}

// liveInfo prints the running node's statistics every interval, count
// times (forever when count is 0), until interrupted.
func liveInfo(c *cli.Context) error {
	interval := c.Duration("interval")
	if interval <= 0 {
		return cli.Exit("info: --interval must be positive (such as 1s)", exitSettings)
	}
	count := c.Int("count")
	l, err := layout(c)
	if err != nil {
		return err
	}
	cl, err := control.Dial(c.Context, l.ControlSocket())
	if err != nil {
		return cli.Exit(fmt.Sprintf("info -c: %v on %s", err, l.Dir), exitFailure)
	}
	defer cl.Close()

	w := c.App.Writer
	tty := false
	if f, ok := w.(*os.File); ok && !c.Bool("json") {
		tty = term.IsTerminal(int(f.Fd()))
	}
	var prev *sample
	var prevAt time.Time
	var closed closedConns
	lines := 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; count == 0 || n < count; n++ {
		if n > 0 {
			select {
			case <-c.Context.Done():
				return nil
			case <-tick.C:
			}
		}
		ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
		var s sample
		err := cl.Call(ctx, "info", nil, &s.Info, nil)
		cancel()
		if err != nil {
			return cli.Exit(fmt.Sprintf("info -c: node stopped answering: %v", err), exitFailure)
		}
		now := time.Now()
		for _, c := range s.Connections {
			if c.Status == "T" {
				s.Talking++
			}
		}
		closed.update(&s, now)
		if prev != nil {
			secs := now.Sub(prevAt).Seconds()
			s.TrafficInRate = rate(s.TrafficIn, prev.TrafficIn, secs)
			s.TrafficOutRate = rate(s.TrafficOut, prev.TrafficOut, secs)
		}
		prev, prevAt = &s, now
		if c.Bool("json") {
			if err := json.NewEncoder(w).Encode(s); err != nil {
				return err
			}
			continue
		}
		var b strings.Builder
		width := 80
		if tty {
			if cols, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && cols > 40 {
				width = cols
			}
		}
		writeLive(&b, s, width)
		if tty && lines > 0 {
			fmt.Fprintf(w, "\x1b[%dA\x1b[J", lines) // back to the top of the last sample
		} else if lines > 0 {
			fmt.Fprintln(w)
		}
		io.WriteString(w, b.String())
		lines = strings.Count(b.String(), "\n")
	}
	return nil
}

func rate(now, before *uint64, secs float64) float64 {
	if now == nil || before == nil || secs <= 0 || *now < *before {
		return 0
	}
	return float64(*now-*before) / secs
}

// writeLive writes one sample as text.
func writeLive(b *strings.Builder, s sample, width int) {
	row := func(k, v string) { fmt.Fprintf(b, " %-13s %s\n", k+":", v) }
	fmt.Fprintf(b, "Live statistics of %s (up %s)\n", s.Nickname, (time.Duration(s.Uptime) * time.Second).String())
	na := "n/a"
	if s.Peers != nil {
		row("Peers", fmt.Sprintf("%d (%d in, %d out, %d talking)", *s.Peers, s.PeersIn, s.PeersOut, s.Talking))
	} else {
		row("Peers", na)
	}
	if s.TrafficIn != nil && s.TrafficOut != nil {
		row("Traffic IN", fmt.Sprintf("%s (%s/s)", byteSize(float64(*s.TrafficIn)), byteSize(s.TrafficInRate)))
		row("Traffic OUT", fmt.Sprintf("%s (%s/s)", byteSize(float64(*s.TrafficOut)), byteSize(s.TrafficOutRate)))
	} else {
		row("Traffic IN", na)
		row("Traffic OUT", na)
	}
	if s.DHTNodes != nil && s.Buckets != nil {
		v := fmt.Sprintf("%d nodes in %d buckets", *s.DHTNodes, *s.Buckets)
		if s.DHTNote != "" {
			v += " (" + s.DHTNote + ")"
		}
		row("DHT", v)
	} else {
		row("DHT", na)
	}
	if m := s.Miner; m != nil {
		row("Miner", fmt.Sprintf("%d workers, %s hashes/s, %d queued, %d minted", m.Workers, siNumber(m.HashRate), m.Queued, m.Minted))
	} else {
		row("Miner", na)
	}
	// One letter per connection, as the original: o outbound, i inbound,
	// t talk request pending, T talking, x closed in the last seconds.
	var letters strings.Builder
	all := make([]string, 0, len(s.Connections)+s.gone)
	for _, c := range s.Connections {
		all = append(all, c.Status)
	}
	for range s.gone {
		all = append(all, "x")
	}
	for i, l := range all {
		if i > 0 && i%(width-16) == 0 {
			letters.WriteString("\n" + strings.Repeat(" ", 15))
		}
		letters.WriteString(l)
	}
	row("Connections", letters.String())
}

func byteSize(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func siNumber(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}
