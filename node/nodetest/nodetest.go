// Package nodetest runs complete nodes in one process, for tests and
// simulations: each has its router, store, kernel (TLS 1.3 sessions over
// loopback TCP), DHT service and miner pool, as `phpchat-node run` builds
// them, and any other subsystem a test adds.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/miner"
)

// Config configures a Node. Only Dir is required.
type Config struct {
	Dir      string             // the store's directory
	Identity *identity.Identity // nil: a new one
	Table    *dht.Table         // nil: a new one
	Logger   *slog.Logger       // nil: discard
	// Bits is the price of node_find (DefaultBits if zero).
	Bits      int
	Bootstrap []string
	// Hashcash and Names add purposes and frame names for the subsystems
	// of Extra.
	Hashcash wire.HashcashPolicy
	Names    []string
	// Extra returns more subsystems to run, started after the others in
	// order.
	Extra func(n *Node) []Run
}

// A Run is a subsystem's Run function.
type Run func(ctx context.Context, ready func()) error

// DefaultBits is the node_find price of test nodes: cheap to mint.
const DefaultBits = 4

// Node is a running node.
type Node struct {
	ID       *identity.Identity
	Router   *router.Router
	DB       *store.DB
	Kernel   *kernel.Kernel
	DHT      *dht.Service
	Endpoint *router.Endpoint // the test's own, "test"

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start starts a node and returns once every subsystem is ready.
func Start(cfg Config) (*Node, error) {
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = identity.Generate(); err != nil {
			return nil, err
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bits := cfg.Bits
	if bits == 0 {
		bits = DefaultBits
	}
	table := cfg.Table
	if table == nil {
		table = dht.NewTable(id.Address)
	}
	db, err := store.Open(cfg.Dir, logger)
	if err != nil {
		return nil, err
	}
	r := router.New()
	n := &Node{ID: id, Router: r, DB: db, done: make(chan struct{})}
	n.DHT = &dht.Service{
		Router: r, Logger: logger, Self: id.Address, Table: table, Meta: db.Meta(),
		Checker: &stamps.Checker{Spent: db.Stamps(), Policy: hashcash.Policy{Expiry: dht.StampExpiry}}, Bits: bits,
		Bootstrap: cfg.Bootstrap, RequestTimeout: 5 * time.Second, Mint: Mint,
	}
	policy := wire.HashcashPolicy{dht.Purpose: bits}
	for p, b := range cfg.Hashcash {
		policy[p] = b
	}
	n.Kernel, err = kernel.New(kernel.Config{
		Identity: id, Router: r, Logger: logger, Listen: "127.0.0.1:0",
		MaxInbound: 256, MaxOutbound: 64, MaxPerIP: 256, MaxFrame: wire.MaxFrameSize,
		HandshakeTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute,
		Hashcash: policy, Names: append([]string{dht.NameFindNode}, cfg.Names...),
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	pool := &miner.Pool{Router: r, Logger: logger, Workers: 1,
		Mint: func(ctx context.Context, resource string, bits, workers int, hashes *atomic.Uint64) (string, error) {
			return Mint(ctx, resource, bits)
		}}
	runs := []Run{n.Kernel.Run, pool.Run, n.DHT.Run}
	if cfg.Extra != nil {
		runs = append(runs, cfg.Extra(n)...)
	}
	if err := n.start(runs); err != nil {
		return nil, err
	}
	if n.Endpoint, err = r.Register("test", 16); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// start runs the subsystems, each once the one before it is ready.
func (n *Node) start(runs []Run) error {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	errc := make(chan error, len(runs))
	go func() {
		var errs []error
		for range runs {
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
		n.err = errors.Join(errs...)
		n.DB.Close()
		close(n.done)
	}()
	for i, run := range runs {
		ready := make(chan struct{})
		go func() { errc <- run(ctx, func() { close(ready) }) }()
		select {
		case <-ready:
		case <-n.done:
			return fmt.Errorf("subsystem %d stopped while starting: %v", i, n.err)
		case <-time.After(30 * time.Second):
			// Not a test's timing: a subsystem that never says it is
			// ready is a bug, and this ends the wait for it.
			n.Stop()
			return fmt.Errorf("subsystem %d not ready in 30 s", i)
		}
	}
	return nil
}

// Stop stops the node and closes its store; it returns the subsystems'
// errors. It may be called more than once.
func (n *Node) Stop() error {
	n.cancel()
	<-n.done
	return n.err
}

// Done is closed once the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Target returns "address@host:port" of the node.
func (n *Node) Target() string { return fmt.Sprintf("%s@%s", n.ID.Address, n.Kernel.ListenAddr()) }

// Call calls the endpoint to from the test's endpoint.
func (n *Node) Call(ctx context.Context, to string, req any) (any, error) {
	return n.Endpoint.Call(ctx, to, req)
}

// Mint mints a stamp on one core, for a dht.Service.
func Mint(ctx context.Context, resource string, bits int) (string, error) {
	st, err := hashcash.Mint(ctx, resource, bits, hashcash.WithWorkers(1))
	if err != nil {
		return "", err
	}
	return st.String(), nil
}
