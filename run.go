package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/supervisor"
	"github.com/phpchat/phpchat-node/node/transport"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/cron"
	"github.com/phpchat/phpchat-node/subsystems/miner"
)

func runCommand() *cli.Command {
	var flags []cli.Flag
	for _, d := range config.Table {
		if d.Key == "log-level" || d.Key == "log-format" {
			continue // global flags
		}
		flags = append(flags, settingFlag(d.Key))
	}
	return &cli.Command{
		Name:   "run",
		Usage:  "run the node in the foreground until SIGINT or SIGTERM",
		Flags:  flags,
		Action: runNode,
	}
}

func runNode(c *cli.Context) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	if _, err := l.Create(); err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	s, err := resolveSettings(c, l)
	if err != nil {
		return err
	}
	for _, t := range s.Connect {
		if _, _, err := transport.ParseTarget(t); err != nil {
			return cli.Exit(fmt.Sprintf("setting connect: %v", err), exitSettings)
		}
	}
	logger := newLogger(c.App.ErrWriter, s)

	lock, err := l.Lock()
	if err != nil {
		return cli.Exit(fmt.Sprintf("cannot run: %v", err), exitFailure)
	}
	defer lock.Unlock()

	id, created, err := identity.LoadOrCreate(l.Key())
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	if created {
		logger.Info("new node identity created", "address", id.Address.String(), "key", l.Key())
	}
	db, err := store.Open(l.Store(), logger)
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}

	err = serve(c.Context, l, s, id, db, logger)
	if nerr := supervisor.Notify("STOPPING=1"); nerr != nil {
		logger.Warn("systemd notification failed", "err", nerr)
	}
	if cerr := db.Close(); cerr != nil {
		logger.Error("closing store", "err", cerr)
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	logger.Info("node stopped")
	return nil
}

// serve runs the node's subsystems until ctx ends or a required one fails.
func serve(ctx context.Context, l config.Layout, s *config.Settings, id *identity.Identity, db *store.DB, logger *slog.Logger) error {
	r := router.New()
	info := localInfo(l, s, id)
	handlers := control.NodeHandlers()
	maps.Copy(handlers, control.ContactHandlers(db.Contacts()))
	maps.Copy(handlers, control.CronHandlers())
	handlers["peers"] = func(ctx context.Context, c *control.Conn, _ json.RawMessage) (any, error) {
		return c.Endpoint.Call(ctx, kernel.Endpoint, kernel.PeersRequest{})
	}
	ctl := &control.Server{
		Path:     l.ControlSocket(),
		Router:   r,
		Logger:   logger.With("subsystem", "control"),
		Handlers: handlers,
	}
	k, err := kernel.New(kernel.Config{
		Identity: id, Router: r, Logger: logger.With("subsystem", "kernel"), Meta: db.Meta(),
		Listen: s.Listen, Connect: s.Connect,
		MaxInbound: s.MaxInbound, MaxOutbound: s.MaxOutbound, MaxPerIP: s.MaxPerIP,
		MaxFrame: s.MaxFrame, HandshakeTimeout: s.HandshakeTime, IdleTimeout: s.IdleTimeout,
	})
	if err != nil {
		return err
	}
	infoSvc := &node.InfoService{Router: r, Logger: logger, Base: info, Contributors: []node.Contributor{kernel.Contribute, minerInfo, cronInfo}}
	pool := &miner.Pool{Router: r, Logger: logger.With("subsystem", "miner"), Mint: mintStamp, Workers: s.Miners}
	sched := &cron.Scheduler{Router: r, Logger: logger.With("subsystem", "cron"), Jobs: cronJobs(db)}
	sup := &supervisor.Supervisor{Logger: logger, ShutdownTimeout: s.ShutdownTimeout}
	logger.Info("node starting", "version", node.Version, "address", info.Address, "data_dir", l.Dir)
	err = sup.Run(ctx, []supervisor.Subsystem{
		{Name: "info", Required: true, Run: infoSvc.Run},
		{Name: "kernel", Required: true, Run: k.Run},
		{Name: "control", Required: true, Run: ctl.Run},
		{Name: "miner", Run: pool.Run},
		{Name: "cron", Run: sched.Run},
	}, func() {
		if err := supervisor.Notify("READY=1"); err != nil {
			logger.Warn("systemd notification failed", "err", err)
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// cronInfo adds the scheduler's jobs to Info.
func cronInfo(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	v, err := ep.Call(ctx, cron.Endpoint, cron.StatusRequest{})
	if err != nil {
		return err
	}
	sts, ok := v.([]cron.Status)
	if !ok {
		return fmt.Errorf("cron answered %T", v)
	}
	for _, st := range sts {
		in.Cron = append(in.Cron, node.JobInfo{Job: st.Job, LastRun: st.LastRun, LastTook: st.LastTook.Seconds(), LastErr: st.LastErr, Runs: st.Runs})
	}
	return nil
}

// cronJobs are the node's periodic jobs.
func cronJobs(db *store.DB) []cron.Job {
	return []cron.Job{
		{Name: "save", Every: 10 * time.Minute, Jitter: 0.1, Run: func(context.Context) error {
			if err := db.Sync(); err != nil {
				return err
			}
			return db.Compact()
		}},
	}
}

// localInfo describes the node from its data directory and settings.
func localInfo(l config.Layout, s *config.Settings, id *identity.Identity) node.Info {
	addr := id.Address.String()
	return node.Info{
		Version:     node.Version,
		Address:     addr,
		Fingerprint: id.Address.Fingerprint(),
		MailAddress: addr + "@" + s.MailDomain,
		Nickname:    s.Nickname,
		Listen:      s.Listen,
		DataDir:     l.Dir,
	}
}
