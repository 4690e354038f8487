// Command phpchat-node runs a node of the PHPChat network: a decentralized,
// end-to-end encrypted chat and offline-mail system. One process holds the
// peer-to-peer kernel, the scheduler, the hashcash miners, the mail gateways
// and the control socket through which the other commands reach it.
//
// Usage:
//
//	phpchat-node [--data-dir DIR] run      start a node in the foreground
//	phpchat-node info [--json]             show the local node
//	phpchat-node console                   attach for live talk
//	phpchat-node contacts [list|add|remove] the address book
//	phpchat-node cronjob -c|-p|-b          run scheduled jobs now
//	phpchat-node hashcash mint|check|speed hashcash stamps, as the C tool
//	phpchat-node version                   print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the command line args, printing to stdout and stderr, and
// returns the exit status. Tests call it to run a command in process.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, args)
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if !errors.As(err, &ec) {
		fmt.Fprintln(stderr, "phpchat-node:", err)
		return exitFailure
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "phpchat-node:", msg)
	}
	return ec.ExitCode()
}

// Exit statuses.
const (
	exitFailure  = 1 // the node or the command failed
	exitSettings = 2 // a setting or an argument was refused
)

func newApp() *cli.App {
	app := &cli.App{
		Name:    "phpchat-node",
		Usage:   "a node of the PHPChat network: decentralized, end-to-end encrypted chat and offline mail",
		Version: node.Version,
		// Exit codes are ours; urfave's handler would exit from inside Run.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "data-dir",
				Usage:   "directory of the node's key, settings and database",
				EnvVars: []string{"PHPCHAT_DATA_DIR"},
				Value:   config.DefaultDataDir(),
			},
			settingFlag("log-level"),
			settingFlag("log-format"),
		},
		Commands: []*cli.Command{
			runCommand(),
			infoCommand(),
			contactsCommand(),
			hashcashCommand(),
			cronjobCommand(),
			consoleCommand(),
			sendCommand(),
			messagesCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, "phpchat-node", node.Version)
					return nil
				},
			},
		},
		OnUsageError: usageError,
	}
	setUsageError(app.Commands)
	return app
}

// usageError makes a refused flag or argument an exit with status 2.
func usageError(_ *cli.Context, err error, _ bool) error {
	return cli.Exit(err.Error(), exitSettings)
}

// setUsageError gives every command the app's usage-error handler: urfave/cli
// does not pass the app's down to commands.
func setUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		setUsageError(c.Subcommands)
	}
}

// settingFlag is the command-line flag of a setting in config.Table. The
// environment and settings.yml are read by config, not by the flag, so that
// an error can name where a refused value came from.
func settingFlag(key string) cli.Flag {
	d, ok := config.Lookup(key)
	if !ok {
		panic("no setting " + key) // a programming error, caught by any test
	}
	usage := fmt.Sprintf("%s (environment %s, settings.yml key %s)", d.Usage, d.Env(), key)
	if d.List {
		return &cli.StringSliceFlag{Name: key, Usage: usage + "; repeatable"}
	}
	return &cli.StringFlag{Name: key, Usage: usage, DefaultText: d.Default}
}

// flagSource is the config.Source of the flags set on the command line.
type flagSource struct{ c *cli.Context }

func (f flagSource) Value(key string) (string, string, bool) {
	if !f.c.IsSet(key) {
		return "", "", false
	}
	if d, _ := config.Lookup(key); d.List {
		return strings.Join(f.c.StringSlice(key), ","), "flag --" + key, true
	}
	return f.c.String(key), "flag --" + key, true
}

// layout returns the data directory chosen by --data-dir, made absolute.
func layout(c *cli.Context) (config.Layout, error) {
	dir, err := filepath.Abs(c.String("data-dir"))
	if err != nil {
		return config.Layout{}, cli.Exit(fmt.Sprintf("--data-dir: %v", err), exitSettings)
	}
	return config.Layout{Dir: dir}, nil
}

// resolveSettings reads settings.yml of l and resolves the settings from
// the flags of c (if not nil), the environment and the file. A refused
// setting is an exit with status 2.
func resolveSettings(c *cli.Context, l config.Layout) (*config.Settings, error) {
	file, err := config.ReadFile(l.Settings())
	if err != nil {
		return nil, cli.Exit(err.Error(), exitSettings)
	}
	var sources []config.Source
	if c != nil {
		sources = append(sources, flagSource{c})
	}
	sources = append(sources, config.Env(os.LookupEnv), file)
	s, err := config.Resolve(sources...)
	if err != nil {
		return nil, cli.Exit(err.Error(), exitSettings)
	}
	return s, nil
}

func newLogger(w io.Writer, s *config.Settings) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.LogLevel}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
