package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/supervisor"
	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/control/web"
)

// webCommand is `phpchat-node web`, whose one subcommand prints the web
// console's login URL.
func webCommand() *cli.Command {
	return &cli.Command{
		Name:  "web",
		Usage: "the web console",
		Subcommands: []*cli.Command{{
			Name:  "url",
			Usage: "print the web console's URL with its login token",
			Description: "Asks the running node where its web console listens (run --web) and prints\n" +
				"the URL that logs a browser in. Anyone with the URL can use the node: keep it private.\n" +
				"To revoke it, delete web-token in the data directory and restart the node.",
			Action: webURL,
		}},
	}
}

// webURL prints the login URL.
func webURL(c *cli.Context) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	return withNode(c, "web url", func(ctx context.Context, cl *control.Client) error {
		var in struct {
			Web *string `json:"web"`
		}
		if err := cl.Call(ctx, "info", nil, &in, nil); err != nil {
			return err
		}
		if in.Web == nil || *in.Web == "" {
			return errors.New("the web console is off: start the node with --web")
		}
		tok, err := web.LoadToken(filepath.Join(l.Dir, web.TokenFileName))
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, loginURL(*in.Web, tok))
		return nil
	})
}

// loginURL is the URL that logs in with tok at the web console listening
// at addr: a base URL ("https://host:port/") or a host:port (plain HTTP).
// An unspecified host (0.0.0.0) becomes localhost.
func loginURL(addr, tok string) string {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return base + "/login?token=" + tok
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("localhost", u.Port())
	}
	u.Path = "/login"
	u.RawQuery = url.Values{"token": {tok}}.Encode()
	return u.String()
}

// checkWeb checks the web console's settings when it is on: its
// certificate, that off loopback it has one, and its listen address.
func checkWeb(s *config.Settings) error {
	if !s.Web {
		return nil
	}
	tlsConf, err := loadTLS("web-tls", s.WebTLSCert, s.WebTLSKey)
	if err != nil {
		return cli.Exit(s.Refuse("web-tls-cert", err).Error(), exitSettings)
	}
	return checkDoor(s, "web-listen", s.WebListen, tlsConf != nil, "web-tls")
}

// webConsole returns the web console as a subsystem, and the contributor
// that puts its URL in Info, if it is on.
func webConsole(l config.Layout, s *config.Settings, r *router.Router, functions map[string]control.Handler, timeouts map[string]time.Duration, logger *slog.Logger) ([]supervisor.Subsystem, []node.Contributor, error) {
	if !s.Web {
		return nil, nil, nil
	}
	tlsConf, err := loadTLS("web-tls", s.WebTLSCert, s.WebTLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("setting web-tls-cert: %w", err)
	}
	srv := web.New(web.Config{
		Router: r, Logger: logger.With("subsystem", "web"), Listen: s.WebListen,
		Functions: functions, Timeouts: timeouts,
		TokenFile: filepath.Join(l.Dir, web.TokenFileName), TLS: tlsConf,
	})
	info := func(_ context.Context, _ *router.Endpoint, in *node.Info) error {
		if u := srv.URL(); u != "" {
			in.Web = &u
		}
		return nil
	}
	return []supervisor.Subsystem{{Name: "web", Run: srv.Run}}, []node.Contributor{info}, nil
}
