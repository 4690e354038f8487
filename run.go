package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/hashcash"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/dht"
	"github.com/phpchat/phpchat-node/node/dhtapi"
	"github.com/phpchat/phpchat-node/node/diskspace"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/kernel"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/stamps"
	"github.com/phpchat/phpchat-node/node/supervisor"
	"github.com/phpchat/phpchat-node/node/wire"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/cron"
	"github.com/phpchat/phpchat-node/subsystems/cronapi"
	"github.com/phpchat/phpchat-node/subsystems/messages"
	"github.com/phpchat/phpchat-node/subsystems/miner"
	"github.com/phpchat/phpchat-node/subsystems/minerapi"
	"github.com/phpchat/phpchat-node/subsystems/talk"
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
	// Every setting is checked, and the listen address tried, before
	// anything is created: a refused one leaves no data dir behind.
	s, err := resolveSettings(c, l)
	if err != nil {
		return err
	}
	if err := checkTargets(s); err != nil {
		return err
	}
	if err := checkNotRunning(l); err != nil {
		return err
	}
	if err := checkListen(s); err != nil {
		return err
	}
	if err := checkMail(s); err != nil {
		return err
	}
	if err := checkWeb(s); err != nil {
		return err
	}
	created, err := l.Create()
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	if created {
		// The new settings.yml holds the node's random nickname.
		if s, err = resolveSettings(c, l); err != nil {
			return err
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

	// systemd is told STOPPING=1 as soon as a signal starts the shutdown,
	// or else when a required subsystem has failed.
	stopping := func() {
		if err := supervisor.Notify("STOPPING=1"); err != nil {
			logger.Warn("systemd notification failed", "err", err)
		}
	}
	notified := context.AfterFunc(c.Context, stopping)
	err = serve(c.Context, l, s, id, db, logger)
	if notified() {
		stopping() // the context did not end: serve failed
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
	_, subs, release, err := subsystems(l, s, id, db, logger)
	if err != nil {
		return err
	}
	defer release()
	// Leave a fifth of the shutdown time for closing the store.
	sup := &supervisor.Supervisor{Logger: logger, ShutdownTimeout: s.ShutdownTimeout * 4 / 5}
	logger.Info("node starting", "version", node.Version, "address", id.Address.String(), "data_dir", l.Dir)
	err = sup.Run(ctx, subs, func() {
		if err := supervisor.Notify("READY=1"); err != nil {
			logger.Warn("systemd notification failed", "err", err)
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// subsystems builds the subsystems of a node on a new router, and
// returns them with the router and a function that releases what they
// share once they have stopped.
func subsystems(l config.Layout, s *config.Settings, id *identity.Identity, db *store.DB, logger *slog.Logger) (*router.Router, []supervisor.Subsystem, func(), error) {
	r := router.New()
	info := localInfo(l, s, id)
	// Below the reserve the store refuses writes, before badger could
	// fault on a full disk.
	disk := &diskspace.Watcher{Dir: l.Store(), Reserve: s.DiskReserve, Logger: logger.With("subsystem", "disk")}
	db.SetSpaceCheck(disk.Check)
	functions := control.Functions(r, db.Contacts())
	timeouts := map[string]time.Duration{"cron.run": control.CronRunTimeout}
	ctl := &control.Server{
		Path:     l.ControlSocket(),
		Router:   r,
		Logger:   logger.With("subsystem", "control"),
		Handlers: functions,
		Timeouts: timeouts,
	}
	// The endpoint of run's own calls: minting for the DHT, cron jobs.
	self, err := r.Register("run", 1)
	if err != nil {
		return nil, nil, nil, err
	}
	dhtSvc := &dht.Service{
		Router: r, Logger: logger.With("subsystem", "dht"), Self: id.Address, Table: dht.NewTable(id.Address),
		Meta: db.Meta(), Checker: &stamps.Checker{Spent: db.Stamps(), Policy: hashcash.Policy{Expiry: dht.StampExpiry}}, Bits: s.NodeFindBits,
		Bootstrap: s.Bootstrap, Connect: s.Connect, Mint: poolMinter(self, minerapi.Background),
	}
	talkSvc := talk.New(talk.Config{
		Router: r, Logger: logger.With("subsystem", "talk"), Self: id.Address, Contacts: db.Contacts(),
		Stamps: &stamps.Checker{Spent: db.Stamps()}, Nickname: s.Nickname, Timeout: s.TalkTimeout, Bits: s.TalkBits,
	})
	msgSvc := messages.New(messages.Config{
		Router: r, Logger: logger.With("subsystem", "messages"), Identity: id, DB: db,
		Stamps: &stamps.Checker{Spent: db.Stamps(), Policy: hashcash.Policy{Expiry: s.MsgExpiry + 48*time.Hour}},
		Bits:   s.MsgBits, Replicas: s.MsgReplicas, MaxMessageSize: s.MaxMessageSize, Expiry: s.MsgExpiry, MailDomain: s.MailDomain,
		RelayLimits: store.RelayLimits{MaxBytes: int64(s.RelayQuota), MaxRecipientBytes: int64(s.RelayRecipientQuota)},
	})
	k, err := kernel.New(kernel.Config{
		Identity: id, Router: r, Logger: logger.With("subsystem", "kernel"), Meta: db.Meta(),
		Listen: s.Listen, Connect: s.Connect,
		MaxInbound: s.MaxInbound, MaxOutbound: s.MaxOutbound, MaxPerIP: s.MaxPerIP,
		MaxHandshakes: s.MaxHandshakes, IPv6Prefix: s.IPv6Prefix,
		MaxFrame: s.MaxFrame, HandshakeTimeout: s.HandshakeTime, IdleTimeout: s.IdleTimeout,
		Capabilities: []string{"dht", "talk", "msg"},
		Hashcash:     wire.HashcashPolicy{dht.Purpose: s.NodeFindBits, talk.Purpose: s.TalkBits, messages.Purpose: s.MsgBits},
		Names:        slices.Concat([]string{dht.NameFindNode}, talk.Names, messages.Names),
	})
	if err != nil {
		self.Close()
		return nil, nil, nil, err
	}
	// The optional front doors: mail gateways and the web console.
	doors, doorsInfo, err := mailGateways(l, s, id, db, r, logger)
	if err != nil {
		self.Close()
		return nil, nil, nil, err
	}
	webSub, webInfo, err := webConsole(l, s, r, functions, timeouts, logger)
	if err != nil {
		self.Close()
		return nil, nil, nil, err
	}
	doors, doorsInfo = append(doors, webSub...), append(doorsInfo, webInfo...)
	infoSvc := &node.InfoService{Router: r, Logger: logger, Base: info, Contributors: []node.Contributor{kernel.Contribute, talk.Contribute, dht.Contribute, minerInfo, cronInfo, disk.Contribute, messages.Contribute}}
	infoSvc.Contributors = append(infoSvc.Contributors, doorsInfo...)
	pool := &miner.Pool{Router: r, Logger: logger.With("subsystem", "miner"), Mint: mintStamp, Workers: s.Miners}
	sched := &cron.Scheduler{Router: r, Logger: logger.With("subsystem", "cron"), Jobs: cronJobs(db, self)}
	return r, append([]supervisor.Subsystem{
		{Name: "info", Required: true, Run: infoSvc.Run},
		{Name: "disk", Run: disk.Run},
		{Name: "kernel", Required: true, Run: k.Run},
		{Name: "dht", Run: dhtSvc.Run},
		{Name: "control", Required: true, Run: ctl.Run},
		{Name: "miner", Run: pool.Run},
		{Name: "cron", Run: sched.Run},
		{Name: "talk", Run: talkSvc.Run},
		{Name: "messages", Run: msgSvc.Run},
	}, doors...), self.Close, nil
}

// cronInfo adds the scheduler's jobs to Info.
func cronInfo(ctx context.Context, ep *router.Endpoint, in *node.Info) error {
	sts, err := router.CallAs[[]cronapi.Status](ctx, ep, cronapi.Endpoint, cronapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, st := range sts {
		in.Cron = append(in.Cron, node.JobInfo{Job: st.Job, LastRun: st.LastRun, LastTook: st.LastTook.Seconds(), LastErr: st.LastErr, Runs: st.Runs})
	}
	return nil
}

// cronJobs are the node's periodic jobs. The DHT's run in the DHT
// service, asked over the router.
func cronJobs(db *store.DB, ep *router.Endpoint) []cron.Job {
	dhtJob := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			_, err := ep.Call(ctx, dhtapi.Endpoint, dhtapi.JobRequest{Job: name})
			return err
		}
	}
	return []cron.Job{
		{Name: "bootstrap", Every: time.Minute, Jitter: 0.2, Run: dhtJob("bootstrap")},
		{Name: "ping", Every: 5 * time.Minute, Jitter: 0.2, Run: dhtJob("ping")},
		{Name: "refresh", Every: 15 * time.Minute, Jitter: 0.2, Run: dhtJob("refresh")},
		{Name: "expire", Every: 10 * time.Minute, Jitter: 0.2, Run: dhtJob("expire")},
		{Name: "save", Every: 10 * time.Minute, Jitter: 0.1, Run: func(ctx context.Context) error {
			if err := dhtJob("save")(ctx); err != nil {
				return err
			}
			if err := db.Sync(); err != nil {
				return err
			}
			return db.Compact()
		}},
	}
}

// poolMinter returns a function that mints stamps through the miner pool.
func poolMinter(ep *router.Endpoint, pr minerapi.Priority) func(context.Context, string, int) (string, error) {
	return func(ctx context.Context, resource string, bits int) (string, error) {
		// The pool drops a request at its deadline: without one, a mint
		// would go on after the call below has timed out.
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(router.DefaultTimeout)
		}
		res, err := router.CallAs[minerapi.MintResult](ctx, ep, minerapi.Endpoint, minerapi.MintRequest{Resource: resource, Bits: bits, Priority: pr, Deadline: deadline})
		return res.Stamp, err
	}
}

// localInfo describes the node from its data directory and settings.
func localInfo(l config.Layout, s *config.Settings, id *identity.Identity) node.Info {
	addr := id.Address.String()
	in := node.Info{
		Version:     node.Version,
		Address:     addr,
		Fingerprint: id.Address.Fingerprint(),
		MailAddress: mailUser(s, id),
		MailUser:    mailUser(s, id),
		Nickname:    s.Nickname,
		Listen:      s.Listen,
		DataDir:     l.Dir,
	}
	if s.IMAP {
		in.IMAP = &s.IMAPListen
	}
	if s.SMTP {
		in.SMTP = &s.SMTPListen
	}
	return in
}
