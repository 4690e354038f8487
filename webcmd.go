package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/subsystems/control"
	"github.com/phpchat/phpchat-node/subsystems/web"
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
