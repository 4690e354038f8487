// Command dht measures Kademlia lookups in a simulated network (package
// dhtsim: the real table and lookup, an in-memory transport): success
// rate, rounds and messages per lookup, before and after a share of the
// nodes leave without notice.
//
//	go run ./bench/dht -n 1000 -lookups 2000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/phpchat/phpchat-node/node/dht/dhtsim"
)

func main() {
	n := flag.Int("n", 1000, "nodes in the network")
	lookups := flag.Int("lookups", 2000, "lookups measured in each phase")
	leave := flag.Float64("leave", 0.2, "fraction of nodes that leave without notice")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()

	ctx := context.Background()
	nt := dhtsim.New(*n, *seed)
	t0 := time.Now()
	if err := nt.Join(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("network: %d nodes joined in %s\n", *n, time.Since(t0).Round(time.Millisecond))

	report := func(phase string) {
		res, err := nt.Measure(ctx, *lookups)
		if err != nil {
			log.Fatal(err)
		}
		pct := func(k int) float64 { return 100 * float64(k) / float64(res.Lookups) }
		fmt.Printf("%-34s lookups %d  found target %.1f%%  exact closest-%d set %.1f%%  rounds median %d p99 %d  messages median %d p99 %d\n",
			phase, res.Lookups, pct(res.FoundTarget), 20, pct(res.ExactSet),
			dhtsim.Percentile(res.Rounds, 50), dhtsim.Percentile(res.Rounds, 99),
			dhtsim.Percentile(res.Messages, 50), dhtsim.Percentile(res.Messages, 99))
	}
	report("all nodes online:")
	nt.Leave(*leave)
	report(fmt.Sprintf("after %.0f%% left without notice:", *leave*100))
	nt.Maintain()
	report("after one ping round:")
}
