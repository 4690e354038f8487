package dhtsim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
)

// Live is a network of complete nodes in one process: each has its own
// kernel (TLS 1.3 sessions over loopback TCP), DHT service, spent-stamp
// store and router, as `phpchat-node run` builds them; only the miner
// pool is replaced by direct minting.
type Live struct {
	Nodes []*LiveNode
	rng   *rand.Rand
}

// LiveNode is one node of a Live network.
type LiveNode struct {
	ID     *identity.Identity
	Kernel *kernel.Kernel
	DHT    *dht.Service
	ep     *router.Endpoint
	cancel context.CancelFunc
	done   chan struct{}
	db     *store.DB
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
			boot = []string{fmt.Sprintf("%s@%s", s.ID.Address, s.Kernel.ListenAddr())}
		}
		nd, err := startLiveNode(filepath.Join(dir, fmt.Sprint(i)), bits, boot)
		if err != nil {
			lv.Stop()
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		lv.Nodes = append(lv.Nodes, nd)
		if i > 0 {
			if _, err := nd.ep.Call(ctx, dht.Endpoint, dht.JobRequest{Job: "bootstrap"}); err != nil {
				lv.Stop()
				return nil, fmt.Errorf("node %d joins: %w", i, err)
			}
		}
	}
	return lv, nil
}

func startLiveNode(dir string, bits int, bootstrap []string) (*LiveNode, error) {
	id, err := identity.Generate()
	if err != nil {
		return nil, err
	}
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	r := router.New()
	logger := slog.New(slog.DiscardHandler)
	svc := &dht.Service{
		Router: r, Logger: logger, Table: dht.NewTable(id.Address), Meta: db.Meta(),
		Checker: &stamps.Checker{Spent: db.Stamps(), Policy: hashcash.Policy{Expiry: dht.StampExpiry}}, Bits: bits, Bootstrap: bootstrap,
		RequestTimeout: 5 * time.Second,
		Mint: func(ctx context.Context, resource string, bits int) (string, error) {
			st, err := hashcash.Mint(ctx, resource, bits, hashcash.WithWorkers(1))
			if err != nil {
				return "", err
			}
			return st.String(), nil
		},
	}
	k, err := kernel.New(kernel.Config{
		Identity: id, Router: r, Logger: logger, Listen: "127.0.0.1:0",
		MaxInbound: 256, MaxOutbound: 64, MaxPerIP: 1 << 16, MaxFrame: 1 << 20,
		HandshakeTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute,
		Hashcash: wire.HashcashPolicy{dht.Purpose: bits}, Handlers: svc.Handlers(),
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd := &LiveNode{ID: id, Kernel: k, DHT: svc, cancel: cancel, done: make(chan struct{}), db: db, online: true}
	kready, dready := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 2)
	go func() { errc <- k.Run(ctx, func() { close(kready) }) }()
	go func() {
		<-kready
		errc <- svc.Run(ctx, func() { close(dready) })
	}()
	go func() { <-errc; <-errc; db.Close(); close(nd.done) }()
	select {
	case <-dready:
	case <-nd.done:
		return nil, fmt.Errorf("node stopped while starting")
	}
	nd.ep, err = r.Register("bench", 1)
	if err != nil {
		nd.stop()
		return nil, err
	}
	return nd, nil
}

func (nd *LiveNode) stop() {
	if nd.online {
		nd.online = false
		nd.cancel()
		<-nd.done
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
		v, err := from.ep.Call(ctx, dht.Endpoint, dht.LookupRequest{Target: to.ID.Address.ID()})
		if err != nil {
			return res, err
		}
		lr := v.(dht.LookupResult)
		res.Lookups++
		res.Rounds = append(res.Rounds, lr.Stats.Rounds)
		res.Messages = append(res.Messages, lr.Stats.Messages)
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
