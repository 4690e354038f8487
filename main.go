// Command phpchat-node runs a node of the PHPChat network: a decentralized,
// end-to-end encrypted chat and offline-mail system. One process holds the
// peer-to-peer kernel, the scheduler, the hashcash miners, the mail gateways
// and the control socket through which the other commands reach it.
//
// Usage:
//
//	phpchat-node [--data-dir DIR] run      start a node in the foreground
//	phpchat-node wait [--timeout D]        wait until the node is ready
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
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/transport"
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
		Name:  "phpchat-node",
		Usage: "a node of the PHPChat network: decentralized, end-to-end encrypted chat and offline mail",
		Description: "Every setting of the node is a flag of run (`phpchat-node run --help` lists them all), " +
			"an environment variable PHPCHAT_* and a key of settings.yml in the data directory.",
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
			waitCommand(),
			infoCommand(),
			contactsCommand(),
			hashcashCommand(),
			cronjobCommand(),
			consoleCommand(),
			sendCommand(),
			messagesCommand(),
			mailCommand(),
			webCommand(),
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
		Action:       unknownCommand,
	}
	setUsageError(app.Commands)
	return app
}

// unknownCommand is the action of the app and of commands that only have
// subcommands: with no argument it shows the help, with one it refuses it
// as a usage error.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	name := c.App.Name
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != name {
		name += " " + c.Command.Name
	}
	return cli.Exit(fmt.Sprintf("unknown command %q (`%s --help` lists the commands)", c.Args().First(), name), exitSettings)
}

// usageError makes a refused flag or argument an exit with status 2.
func usageError(_ *cli.Context, err error, _ bool) error {
	return cli.Exit(err.Error(), exitSettings)
}

// setUsageError gives every command the app's usage-error handler (urfave/cli
// does not pass the app's down to commands), and those that only have
// subcommands the refusal of an unknown one.
func setUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		if c.Action == nil && len(c.Subcommands) > 0 {
			c.Action = unknownCommand
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
	if d.Bool {
		return &cli.BoolFlag{Name: key, Usage: usage}
	}
	def := d.Default
	if d.DefaultText != "" {
		def = d.DefaultText
	}
	return &cli.StringFlag{Name: key, Usage: usage, DefaultText: def}
}

// flagSource is the config.Source of the flags set on the command line.
type flagSource struct{ c *cli.Context }

func (f flagSource) Value(key string) (string, string, bool) {
	if !f.c.IsSet(key) {
		return "", "", false
	}
	d, _ := config.Lookup(key)
	switch {
	case d.List:
		return strings.Join(f.c.StringSlice(key), ","), "flag --" + key, true
	case d.Bool:
		return strconv.FormatBool(f.c.Bool(key)), "flag --" + key, true
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

// checkNotRunning refuses to start a second node on a data directory that
// exists and whose lock another node holds. It runs before the listen
// address is tried, which that node holds too.
func checkNotRunning(l config.Layout) error {
	if _, err := os.Stat(l.Dir); err != nil {
		return nil // no data dir: no node
	}
	lock, err := l.Lock()
	if err != nil {
		return cli.Exit(fmt.Sprintf("cannot run: %v", err), exitFailure)
	}
	return lock.Unlock()
}

// checkListen tries the listen setting before anything is created: it
// binds the address and closes it at once, so that an address that cannot
// be bound (in use, not on this machine, a name that does not resolve) is
// refused as a setting, with its origin, and not as a failed node.
func checkListen(s *config.Settings) error {
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return cli.Exit(s.Refuse("listen", listenError(err)).Error(), exitSettings)
	}
	return ln.Close()
}

// listenError is the reason of a failed listen without the repetition of
// the net package's "listen tcp ADDR:" prefix.
func listenError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return fmt.Errorf("cannot listen: host %q not found", de.Name)
	}
	return fmt.Errorf("cannot listen: %w", err)
}

// checkTargets parses the connect and bootstrap peers as the kernel will.
// config checks them when resolving; this is the kernel's own parser, so
// that a target the kernel would refuse stops the node before it starts.
func checkTargets(s *config.Settings) error {
	for key, targets := range map[string][]string{"connect": s.Connect, "bootstrap": s.Bootstrap} {
		for _, t := range targets {
			if _, _, err := transport.ParseTarget(t); err != nil {
				return cli.Exit(s.Refuse(key, err).Error(), exitSettings)
			}
		}
	}
	return nil
}

func newLogger(w io.Writer, s *config.Settings) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.LogLevel}
	if s.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
