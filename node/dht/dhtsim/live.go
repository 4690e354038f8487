package dhtsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"

	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/nodetest"
	"github.com/phpchat/phpchat-node/node/router"
)

// Live is a network of complete nodes in one process (package nodetest):
// each has its own kernel (TLS 1.3 sessions over loopback TCP), DHT
// service, store and router, as `phpchat-node run` builds them.
type Live struct {
	Nodes []*LiveNode
	rng   *rand.Rand
}

// LiveNode is one node of a Live network.
type LiveNode struct {
	*nodetest.Node
	online bool
}

// StartLive starts n nodes with their stores under dir; each node after
// the first joins through the first. Bits is the node_find price.
func StartLive(ctx context.Context, n int, dir string, bits int, seed uint64) (*Live, error) {
	lv := &Live{rng: rand.New(rand.NewPCG(seed, seed+1))}
	for i := 0; i < n; i++ {
		var boot []string
		if i > 0 {
			s := lv.Nodes[0]
			boot = []string{s.Target()}
		}
		nd, err := startLiveNode(filepath.Join(dir, fmt.Sprint(i)), bits, boot)
		if err != nil {
			lv.Stop()
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		lv.Nodes = append(lv.Nodes, nd)
		if i > 0 {
			if _, err := nd.Call(ctx, dhtapi.Endpoint, dhtapi.JobRequest{Job: "bootstrap"}); err != nil {
				lv.Stop()
				return nil, fmt.Errorf("node %d joins: %w", i, err)
			}
		}
	}
	return lv, nil
}

func startLiveNode(dir string, bits int, bootstrap []string) (*LiveNode, error) {
	n, err := nodetest.Start(nodetest.Config{Dir: dir, Bits: bits, Bootstrap: bootstrap})
	if err != nil {
		return nil, err
	}
	return &LiveNode{Node: n, online: true}, nil
}

func (nd *LiveNode) stop() {
	if nd.online {
		nd.online = false
		nd.Stop()
	}
}

// Stop stops every node.
func (lv *Live) Stop() {
	for _, nd := range lv.Nodes {
		nd.stop()
	}
}

// Leave stops a fraction of the nodes (not the first), without notice.
func (lv *Live) Leave(fraction float64) {
	for _, i := range lv.rng.Perm(len(lv.Nodes) - 1)[:int(fraction*float64(len(lv.Nodes)))] {
		lv.Nodes[i+1].stop()
	}
}

// Measure runs lookups of random online nodes' ids from random online
// nodes, as Net.Measure does.
func (lv *Live) Measure(ctx context.Context, lookups int) (Result, error) {
	var online []*LiveNode
	for _, nd := range lv.Nodes {
		if nd.online {
			online = append(online, nd)
		}
	}
	var res Result
	for i := 0; i < lookups; i++ {
		from := online[lv.rng.IntN(len(online))]
		to := online[lv.rng.IntN(len(online))]
		lr, err := router.CallAs[dhtapi.LookupResult](ctx, from.Endpoint, dhtapi.Endpoint, dhtapi.LookupRequest{Target: to.ID.Address.ID()})
		if err != nil {
			return res, err
		}
		res.Lookups++
		res.Rounds = append(res.Rounds, lr.Rounds)
		res.Messages = append(res.Messages, lr.Messages)
		var all []dht.Node
		for _, nd := range online {
			if nd != from {
				all = append(all, dht.Node{Address: nd.ID.Address})
			}
		}
		dht.SortByDistance(all, to.ID.Address.ID())
		if len(all) > dht.K {
			all = all[:dht.K]
		}
		got := make([]identity.Address, len(lr.Nodes))
		for j, n := range lr.Nodes {
			got[j] = n.Address
		}
		want := make([]identity.Address, len(all))
		for j, n := range all {
			want[j] = n.Address
		}
		if slices.Equal(got, want) {
			res.ExactSet++
		}
		if len(got) > 0 && got[0] == to.ID.Address || from == to {
			res.FoundTarget++
		}
	}
	return res, nil
}
