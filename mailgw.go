package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/phpchat/phpchat-node/config"
	"github.com/phpchat/phpchat-node/node"
	"github.com/phpchat/phpchat-node/node/identity"
	"github.com/phpchat/phpchat-node/node/mailauth"
	"github.com/phpchat/phpchat-node/node/router"
	"github.com/phpchat/phpchat-node/node/supervisor"
	"github.com/phpchat/phpchat-node/store"
	"github.com/phpchat/phpchat-node/subsystems/imapgw"
	"github.com/phpchat/phpchat-node/subsystems/smtpgw"
)

// mailTLS returns the mail gateways' TLS configuration, or nil when no
// certificate is set.
func mailTLS(s *config.Settings) (*tls.Config, error) {
	return loadTLS("mail-tls", s.MailTLSCert, s.MailTLSKey)
}

// loadTLS returns the TLS configuration of a certificate and key (the
// settings prefix-cert and prefix-key), or nil when neither is set.
func loadTLS(prefix, certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%s-cert and %s-key go together", prefix, prefix)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// checkMail checks the settings of the mail gateways that are on (see
// checkDoor).
func checkMail(s *config.Settings) error {
	if !s.SMTP && !s.IMAP {
		return nil
	}
	tlsConf, err := mailTLS(s)
	if err != nil {
		return cli.Exit(s.Refuse("mail-tls-cert", err).Error(), exitSettings)
	}
	if s.SMTP {
		if err := checkDoor(s, "smtp-listen", s.SMTPListen, tlsConf != nil, "mail-tls"); err != nil {
			return err
		}
	}
	if s.IMAP {
		return checkDoor(s, "imap-listen", s.IMAPListen, tlsConf != nil, "mail-tls")
	}
	return nil
}

// checkDoor checks a server that clients reach, whose listen address is
// the setting key: off loopback it needs TLS (the settings tls-cert and
// tls-key), as passwords and tokens never cross a network in clear; and
// its address is tried.
func checkDoor(s *config.Settings, key, listen string, hasTLS bool, tls string) error {
	if !hasTLS && !loopback(listen) {
		err := fmt.Errorf("off loopback it needs TLS: set %s-cert and %s-key", tls, tls)
		return cli.Exit(s.Refuse(key, err).Error(), exitSettings)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return cli.Exit(s.Refuse(key, listenError(err)).Error(), exitSettings)
	}
	return ln.Close()
}

// loopback reports whether the host of hostport is a loopback address or
// localhost.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// mailUser is the user of the mail gateways: the node's mail address.
func mailUser(s *config.Settings, id *identity.Identity) string {
	return id.Address.String() + "@" + s.MailDomain
}

// mailGateways returns the mail gateways that are on, as subsystems, and
// the contributors that put their bound addresses in Info.
func mailGateways(l config.Layout, s *config.Settings, id *identity.Identity, db *store.DB, r *router.Router, logger *slog.Logger) ([]supervisor.Subsystem, []node.Contributor, error) {
	if !s.SMTP && !s.IMAP {
		return nil, nil, nil
	}
	creds, err := mailauth.Load(l.MailPassword(), mailUser(s, id))
	if err != nil {
		return nil, nil, err
	}
	// One checker: failed logins count per source across both gateways.
	auth := &mailauth.Checker{Credentials: creds, Logger: logger.With("subsystem", "mail")}
	tlsConf, err := mailTLS(s)
	if err != nil {
		return nil, nil, fmt.Errorf("setting mail-tls-cert: %w", err)
	}
	var subs []supervisor.Subsystem
	var infos []node.Contributor
	if s.SMTP {
		srv := smtpgw.New(smtpgw.Config{
			Router: r, Logger: logger.With("subsystem", "smtp"), Listen: s.SMTPListen, Domain: s.MailDomain,
			Self: id.Address, Nickname: s.Nickname, Contacts: db.Contacts(),
			Auth: auth, TLS: tlsConf, MaxMessageSize: s.MaxMessageSize,
		})
		subs = append(subs, supervisor.Subsystem{Name: "smtp", Run: srv.Run})
		infos = append(infos, func(_ context.Context, _ *router.Endpoint, in *node.Info) error {
			if a := srv.Addr(); a != "" {
				in.SMTP = &a // the bound address, as with port 0
			}
			return nil
		})
	}
	if s.IMAP {
		srv := imapgw.New(imapgw.Config{
			Router: r, Logger: logger.With("subsystem", "imap"), DB: db, Listen: s.IMAPListen,
			Auth: auth, TLS: tlsConf, MaxMessageSize: s.MaxMessageSize,
		})
		subs = append(subs, supervisor.Subsystem{Name: "imap", Run: srv.Run})
		infos = append(infos, func(_ context.Context, _ *router.Endpoint, in *node.Info) error {
			if a := srv.Addr(); a != nil {
				addr := a.String()
				in.IMAP = &addr
			}
			return nil
		})
	}
	return subs, infos, nil
}

// mailCommand is `mail`: the mail gateways.
func mailCommand() *cli.Command {
	return &cli.Command{
		Name:  "mail",
		Usage: "the mail gateways (IMAP and SMTP)",
		Subcommands: []*cli.Command{{
			Name:  "setup",
			Usage: "print what a mail client needs: servers, ports, security, user and password",
			Action: func(c *cli.Context) error {
				if c.Args().Len() > 0 {
					return cli.Exit("usage: phpchat-node mail setup", exitSettings)
				}
				return mailSetup(c)
			},
		}},
	}
}

// mailSetup prints the mail client settings of the node's gateways.
func mailSetup(c *cli.Context) error {
	l, err := layout(c)
	if err != nil {
		return err
	}
	id, s, err := loadNode(l)
	if err != nil {
		return err
	}
	creds, err := mailauth.Load(l.MailPassword(), mailUser(s, id))
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	security := "none: loopback only (set mail-tls-cert and mail-tls-key for TLS)"
	if s.MailTLSCert != "" {
		security = "STARTTLS, with the certificate of mail-tls-cert"
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Your mail address:  %s\n\n", mailUser(s, id))
	for _, g := range []struct {
		name, listen string
		on           bool
		flag         string
	}{{"IMAP (incoming)", s.IMAPListen, s.IMAP, "--imap"}, {"SMTP (outgoing)", s.SMTPListen, s.SMTP, "--smtp"}} {
		host, port, _ := net.SplitHostPort(g.listen)
		state := ""
		if !g.on {
			state = fmt.Sprintf("   (off: start the node with %s)", g.flag)
		}
		fmt.Fprintf(w, "%s%s\n  server:          %s\n  port:            %s\n  security:        %s\n  authentication:  normal password\n\n", g.name, state, host, port, security)
	}
	fmt.Fprintf(w, "User name:  %s\nPassword:   %s\n", creds.User, creds.Password)
	if os.Getenv(mailauth.EnvPassword) == "" {
		fmt.Fprintf(w, "            (kept in %s; %s overrides it)\n", l.MailPassword(), mailauth.EnvPassword)
	}
	return nil
}
