package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
)

// hashcashCommand mirrors the reference C tool: mint, check, speed.
func hashcashCommand() *cli.Command {
	bits := &cli.IntFlag{Name: "bits", Aliases: []string{"b"}, Value: 20, Usage: "bits of work (leading zero bits)"}
	workers := &cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Usage: "miner goroutines (default: one per CPU)"}
	return &cli.Command{
		Name:  "hashcash",
		Usage: "mint and check hashcash v1 stamps, as the hashcash tool does",
		Subcommands: []*cli.Command{
			{
				Name: "mint", Usage: "print a stamp for RESOURCE", ArgsUsage: "RESOURCE",
				Flags: []cli.Flag{bits, workers},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("usage: phpchat-node hashcash mint -b BITS RESOURCE", exitSettings)
					}
					st, err := hashcash.Mint(c.Context, c.Args().First(), c.Int("bits"), hashcash.WithWorkers(numWorkers(c.Int("workers"))))
					if err != nil {
						return cli.Exit(fmt.Sprintf("hashcash mint: %v", err), exitFailure)
					}
					fmt.Fprintln(c.App.Writer, st.String())
					return nil
				},
			},
			{
				Name: "check", Usage: "exit 0 if STAMP is valid, 1 with the reason if not", ArgsUsage: "STAMP",
				Flags: []cli.Flag{
					bits,
					&cli.StringFlag{Name: "resource", Aliases: []string{"r"}, Usage: "the resource the stamp must be for (any case, as the hashcash tool)"},
					&cli.DurationFlag{Name: "expiry", Value: hashcash.DefaultExpiry, Usage: "how long a stamp stays valid"},
				},
				Action: func(c *cli.Context) error {
					// Exit status 1 means a refused stamp, so a usage
					// error is 2, not the flag library's 1.
					if c.NArg() != 1 || !c.IsSet("resource") {
						return cli.Exit("usage: phpchat-node hashcash check -b BITS -r RESOURCE STAMP", exitSettings)
					}
					// The C tool lowercases a resource when minting and
					// compares without case: so does this check.
					p := hashcash.Policy{MinBits: c.Int("bits"), Resource: c.String("resource"), FoldCase: true, Expiry: c.Duration("expiry")}
					st, err := p.Verify(c.Args().First())
					if err != nil {
						return cli.Exit(fmt.Sprintf("invalid stamp: %v", err), exitFailure)
					}
					fmt.Fprintf(c.App.Writer, "valid stamp: %d bits on %q\n", st.ZeroBits(), st.Resource)
					return nil
				},
			},
			{
				Name:  "speed",
				Usage: "print hashes per second: one worker on the first line, all workers on the second",
				Flags: []cli.Flag{
					workers,
					&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: 2 * time.Second, Usage: "time measured for each line"},
				},
				Action: func(c *cli.Context) error {
					d := c.Duration("duration")
					if d <= 0 {
						return cli.Exit("hashcash speed: --duration must be positive", exitSettings)
					}
					n := numWorkers(c.Int("workers"))
					one := hashcash.Speed(c.Context, 1, d)
					all := hashcash.Speed(c.Context, n, d)
					fmt.Fprintf(c.App.Writer, "%.0f hashes/s with 1 worker\n", one)
					fmt.Fprintf(c.App.Writer, "%.0f hashes/s with %d workers\n", all, n)
					return nil
				},
			},
		},
	}
}

func numWorkers(n int) int {
	if n <= 0 {
		return runtime.NumCPU()
	}
	return n
}

// mintStamp is the miner pool's MintFunc.
func mintStamp(ctx context.Context, resource string, bits, workers int, hashes *atomic.Uint64) (string, error) {
	st, err := hashcash.Mint(ctx, resource, bits, hashcash.WithWorkers(workers), hashcash.WithHashCounter(hashes))
	if err != nil {
		return "", err
	}
	return st.String(), nil
}

// minerInfo adds the miner pool's figures to Info.
func minerInfo(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	st, err := router.CallAs[minerapi.Stats](ctx, ep, minerapi.Endpoint, minerapi.StatsRequest{})
	if err != nil {
		return err
	}
	in.Miner = &node.MinerInfo{Workers: st.Workers, HashRate: st.HashRate, Queued: st.Queued, Minted: st.Minted}
	return nil
}
