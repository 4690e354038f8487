// Command dht measures Kademlia lookups in a simulated network (package
// dhtsim: the real table and lookup, an in-memory transport): success
// rate, rounds and messages per lookup, before and after a share of the
// nodes leave without notice.
//
//	go run ./bench/dht -n 1000 -lookups 2000
//
// With -pairs, every node of the network looks up every other node's id
// (n×(n-1) lookups), before any node leaves: the full form of dhtsim's
// test, which checks a sample.
//
//	go run ./bench/dht -n 100 -pairs
//
// With -real, the nodes are complete nodes (package dhtsim's Live: each a
// kernel with TLS sessions over loopback TCP, a DHT service paid with
// hashcash, a store), which costs more: use a smaller -n.
//
//	go run ./bench/dht -real -n 100 -lookups 300
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/phpchat/phpchat-node/node/dht/dhtsim"
)

func main() {
	n := flag.Int("n", 1000, "nodes in the network")
	lookups := flag.Int("lookups", 2000, "lookups measured in each phase")
	leave := flag.Float64("leave", 0.2, "fraction of nodes that leave without notice")
	seed := flag.Uint64("seed", 1, "random seed")
	real := flag.Bool("real", false, "run complete nodes over loopback TCP instead of the in-memory transport")
	bits := flag.Int("bits", 8, "with -real: hashcash bits of node_find")
	pairs := flag.Bool("pairs", false, "also look up every node's id from every other node")
	flag.Parse()

	ctx := context.Background()
	if *real {
		runLive(ctx, *n, *lookups, *leave, *bits, *seed)
		return
	}
	nt := dhtsim.New(*n, *seed)
	t0 := time.Now()
	if err := nt.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("network: %d nodes joined in %s\n", *n, time.Since(t0).Round(time.Millisecond))

	report := func(phase string) {
		t0 := time.Now()
		res, err := nt.Measure(ctx, *lookups)
		if err != nil {
			log.Fatal(err)
		}
		printResult(phase, res)
		fmt.Printf("%-34s %s\n", "", time.Since(t0).Round(time.Millisecond))
	}
	if *pairs {
		t0 := time.Now()
		res, err := nt.MeasurePairs(ctx, 1)
		if err != nil {
			log.Fatal(err)
		}
		printResult("every pair, all online:", res)
		fmt.Printf("%-34s %s\n", "", time.Since(t0).Round(time.Millisecond))
	}
	report("all nodes online:")
	nt.Leave(*leave)
	report(fmt.Sprintf("after %.0f%% left without notice:", *leave*100))
	nt.Maintain()
	report("after one ping round:")
	fmt.Printf("total: %s\n", time.Since(t0).Round(time.Millisecond))
}

func printResult(phase string, res dhtsim.Result) {
	pct := func(k int) float64 { return 100 * float64(k) / float64(res.Lookups) }
	fmt.Printf("%-34s lookups %d  found target %.1f%%  exact closest-%d set %.1f%%  rounds median %d p99 %d  messages median %d p99 %d\n",
		phase, res.Lookups, pct(res.FoundTarget), 20, pct(res.ExactSet),
		dhtsim.Percentile(res.Rounds, 50), dhtsim.Percentile(res.Rounds, 99),
		dhtsim.Percentile(res.Messages, 50), dhtsim.Percentile(res.Messages, 99))
}

// runLive measures a network of complete nodes.
func runLive(ctx context.Context, n, lookups int, leave float64, bits int, seed uint64) {
	dir, err := os.MkdirTemp("", "dht-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	lv, err := dhtsim.StartLive(ctx, n, dir, bits, seed)
	if err != nil {
		log.Fatal(err)
	}
	defer lv.Stop()
	fmt.Printf("network: %d complete nodes (TLS over loopback, node_find at %d bits) joined in %s\n", n, bits, time.Since(t0).Round(time.Millisecond))
	measure := func(phase string) {
		t0 := time.Now()
		res, err := lv.Measure(ctx, lookups)
		if err != nil {
			log.Fatal(err)
		}
		printResult(phase, res)
		fmt.Printf("%-34s %.1f ms per lookup\n", "", float64(time.Since(t0).Milliseconds())/float64(lookups))
	}
	measure("all nodes online:")
	lv.Leave(leave)
	measure(fmt.Sprintf("after %.0f%% left without notice:", leave*100))
	measure("again (tables have dropped the dead):")
}
