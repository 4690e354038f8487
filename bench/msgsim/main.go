// Command msgsim simulates the delivery of offline messages (package
// dhtsim's SimulateMessages: the real routing table and lookup, the
// messages service's rules, simulated time) while nodes leave and join,
// and reports the share delivered with receipts, the delays, and the
// copies per message over time, with the full rules and without some.
//
//	go run ./bench/msgsim -n 1000 -messages 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phpchat/phpchat-node/node/dht/dhtsim"
)

// A variant is a set of rules to run.
type variant struct {
	name                           string
	noRepublish, noHandoff, repair bool
}

var variants = []variant{
	{"full", false, false, false},
	{"no-handoff", false, true, false},
	{"no-republish", true, false, false},
	{"neither", true, true, false},
	{"repair", false, false, true},
	{"repair-no-republish", true, false, true},
}

func main() {
	c := dhtsim.DefaultMsgConfig
	flag.IntVar(&c.Nodes, "n", c.Nodes, "nodes online when the messages are sent")
	flag.IntVar(&c.Messages, "messages", c.Messages, "messages sent")
	flag.IntVar(&c.Senders, "senders", c.Senders, "nodes that send them (online at first)")
	flag.IntVar(&c.Recipients, "recipients", c.Recipients, "nodes that receive them (offline at first, not counted in -n)")
	flag.IntVar(&c.Replicas, "r", c.Replicas, "relays a message is stored on")
	flag.Float64Var(&c.Leave, "leave", c.Leave, "fraction of -n that leaves for good without notice")
	flag.Float64Var(&c.Join, "join", c.Join, "fraction of -n that joins as new nodes")
	flag.DurationVar(&c.ChurnOver, "churn-over", c.ChurnOver, "leaves, joins and senders' absences spread over this time")
	flag.DurationVar(&c.SendOver, "send-over", c.SendOver, "messages sent over this time")
	flag.DurationVar(&c.OnlineBy, "online-by", c.OnlineBy, "recipients come online between -send-over and this")
	flag.Float64Var(&c.SendersAway, "senders-away", c.SendersAway, "fraction of senders offline once for a while")
	flag.DurationVar(&c.AwayMax, "away-max", c.AwayMax, "longest absence of a sender")
	flag.DurationVar(&c.Horizon, "horizon", c.Horizon, "simulated time of a run at most")
	flag.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	only := flag.String("variants", "full,no-handoff,no-republish,neither", "rule sets to run (also: repair, repair-no-republish: the hand-off job offers copies to the r closest it knows, not only to closer nodes)")
	every := flag.Int("every", 4, "print copies per message every this many samples")
	flag.Parse()

	fmt.Printf("nodes %d online at send time (+%d recipients offline, +%.0f%% joining); %.0f%% leave without notice; churn over %s\n",
		c.Nodes, c.Recipients, 100*c.Join, 100*c.Leave, c.ChurnOver)
	fmt.Printf("messages %d from %d senders, sent over %s; recipients online at uniform times %s-%s and stay; %.0f%% of senders away once for 1h-%s\n",
		c.Messages, c.Senders, c.SendOver, c.SendOver, c.OnlineBy, 100*c.SendersAway, c.AwayMax)
	fmt.Printf("r = %d; re-publication %s doubling to %s; fetch every %s; hand-off every %s; ping round every %s; horizon %s; seed %d\n\n",
		c.Replicas, dhtsim.FirstRetry, dhtsim.MaxRetry, dhtsim.FetchEvery, dhtsim.HandoffEvery, dhtsim.PingEvery, c.Horizon, c.Seed)

	var runs []run
	for _, v := range variants {
		if !strings.Contains(","+*only+",", ","+v.name+",") {
			continue
		}
		c := c
		c.NoRepublish, c.NoHandoff, c.Repair = v.noRepublish, v.noHandoff, v.repair
		t0 := time.Now()
		res, err := dhtsim.SimulateMessages(context.Background(), c)
		if err != nil {
			log.Fatalf("%s: %v", v.name, err)
		}
		runs = append(runs, run{v.name, res, time.Since(t0)})
	}
	printOutcomes(runs)
	fmt.Println()
	printCopies(runs, *every)
}

type run struct {
	name string
	res  *dhtsim.MsgResult
	wall time.Duration
}

func pct(k, n int) string { return fmt.Sprintf("%.1f%%", 100*float64(k)/float64(n)) }

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Minute:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func printOutcomes(runs []run) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "rules\treceived\treceipted\tby relay\tsend→inbox p50/p99\tonline→inbox p50/p99/max\tsend→receipt p50/p99/max\tcopies left\tlookups\tends at\twall")
	for _, r := range runs {
		s := r.res
		p := dhtsim.DurationPercentile
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s / %s\t%s / %s / %s\t%s / %s / %s\t%d\t%d\t%s\t%s\n", r.name,
			pct(s.Received, s.Sent), pct(s.Receipted, s.Sent), pct(s.ByRelay, s.Sent),
			dur(p(s.ToInbox, 50)), dur(p(s.ToInbox, 99)),
			dur(p(s.AfterOnline, 50)), dur(p(s.AfterOnline, 99)), dur(p(s.AfterOnline, 100)),
			dur(p(s.ToReceipt, 50)), dur(p(s.ToReceipt, 99)), dur(p(s.ToReceipt, 100)),
			s.CopiesLeft, s.Lookups, dur(s.End), r.wall.Round(100*time.Millisecond))
	}
	w.Flush()
}

// printCopies prints, per run, the messages not yet in their recipient's
// inbox and their copies on online nodes (mean, min, how many have none).
func printCopies(runs []run, every int) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(w, "hour\t")
	for _, r := range runs {
		fmt.Fprintf(w, "%s: in flight\tmean\tmin\tnone\t", r.name)
	}
	fmt.Fprintln(w)
	longest := 0
	for _, r := range runs {
		longest = max(longest, len(r.res.Samples))
	}
	for i := every - 1; i < longest; i += every {
		at := time.Duration(0)
		for _, r := range runs {
			if i < len(r.res.Samples) {
				at = r.res.Samples[i].At
				break
			}
		}
		fmt.Fprintf(w, "%.0f\t", at.Hours())
		for _, r := range runs {
			if i >= len(r.res.Samples) {
				fmt.Fprint(w, "-\t-\t-\t-\t")
				continue
			}
			sm := r.res.Samples[i]
			fmt.Fprintf(w, "%d\t%.2f\t%d\t%d\t", sm.InFlight, sm.Mean, sm.Min, sm.Zero)
		}
		fmt.Fprintln(w)
	}
	w.Flush()
}
