package main

import (
	"context"
	"fmt"
	"math"
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
				Flags: []cli.Flag{bits, workers,
					&cli.BoolFlag{Name: "force", Usage: fmt.Sprintf("mint even when the estimate is over %s", mintLimit)},
				},
				Action: mintCommand,
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
					if err := checkBits(c); err != nil {
						return err
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
					n, err := numWorkers(c)
					if err != nil {
						return err
					}
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

// mintLimit is the longest mint `hashcash mint` starts without --force,
// as estimated from the measured hash rate.
const mintLimit = 10 * time.Minute

// mintCommand is `hashcash mint`. A mint of many bits is estimated first
// from a short measure of the hash rate: one that would take longer than
// mintLimit is refused unless forced, and a long one says how long.
func mintCommand(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("usage: phpchat-node hashcash mint [-b BITS] [-w WORKERS] [--force] RESOURCE", exitSettings)
	}
	if err := checkBits(c); err != nil {
		return err
	}
	n, err := numWorkers(c)
	if err != nil {
		return err
	}
	bits := c.Int("bits")
	if est, rate, ok := estimateMint(c.Context, bits, n); ok && est > 10*time.Second {
		what := fmt.Sprintf("%d bits would take %s at %s hashes/s", bits, roughDuration(est), siNumber(rate))
		if est > mintLimit && !c.Bool("force") {
			return cli.Exit(fmt.Sprintf("hashcash mint: %s, over %s: add --force to mint anyway", what, mintLimit), exitSettings)
		}
		fmt.Fprintf(c.App.ErrWriter, "hashcash mint: %s (Ctrl-C stops)\n", what)
	}
	st, err := hashcash.Mint(c.Context, c.Args().First(), bits, hashcash.WithWorkers(n))
	if err != nil {
		return cli.Exit(fmt.Sprintf("hashcash mint: %v", err), exitFailure)
	}
	fmt.Fprintln(c.App.Writer, st.String())
	return nil
}

// estimateMint returns the expected time of minting bits with n workers,
// and the hash rate measured for it. Mints of few bits, which take under
// a second on any machine, are not measured (ok false).
func estimateMint(ctx context.Context, bits, n int) (est time.Duration, rate float64, ok bool) {
	const measured = 20 // bits above which a mint is measured first
	if bits <= measured {
		return 0, 0, false
	}
	rate = hashcash.Speed(ctx, n, 200*time.Millisecond)
	if rate <= 0 {
		return 0, 0, false // interrupted
	}
	// On average a stamp of b bits takes 2^b hashes; a Duration holds
	// up to 292 years, which is as good as forever here.
	secs := min(math.Ldexp(1, bits)/rate, float64(math.MaxInt64/time.Second))
	return time.Duration(secs * float64(time.Second)), rate, true
}

// roughDuration prints d as a person would say it: "about 40 s", "about
// 3 min", …, "about 7 years", "centuries".
func roughDuration(d time.Duration) string {
	const day, year = 24 * time.Hour, 365 * 24 * time.Hour
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("about %.0f s", d.Seconds())
	case d < 2*time.Hour:
		return fmt.Sprintf("about %.0f min", d.Minutes())
	case d < 2*day:
		return fmt.Sprintf("about %.0f h", d.Hours())
	case d < 2*year:
		return fmt.Sprintf("about %.0f days", float64(d)/float64(day))
	case d >= 290*year:
		return "centuries"
	}
	return fmt.Sprintf("about %.0f years", float64(d)/float64(year))
}

// checkBits refuses a --bits out of the range a stamp can have.
func checkBits(c *cli.Context) error {
	if b := c.Int("bits"); b < 0 || b > hashcash.MaxBits {
		return cli.Exit(fmt.Sprintf("hashcash %s: -b %d out of range (0-%d)", c.Command.Name, b, hashcash.MaxBits), exitSettings)
	}
	return nil
}

// numWorkers returns the --workers of c, one per CPU if not set or 0.
func numWorkers(c *cli.Context) (int, error) {
	n := c.Int("workers")
	switch {
	case n < 0 || n > 1024:
		return 0, cli.Exit(fmt.Sprintf("hashcash %s: -w %d out of range (1-1024, or 0 for one per CPU)", c.Command.Name, n), exitSettings)
	case n == 0:
		return runtime.NumCPU(), nil
	}
	return n, nil
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
