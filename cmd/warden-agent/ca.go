package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
)

// errKnownHostsRemoved answers `ca --known-hosts`, which printed the user
// CA as "@cert-authority *": a line that makes ssh accept any host
// certificate that CA signs, for every host.
const errKnownHostsRemoved = "ca --known-hosts was removed: warden's CA signs user certificates only, and a " +
	"\"@cert-authority *\" line for it would make ssh trust it as a host CA for every host. " +
	"Trust host keys with known_hosts or your organisation's host CA (@cert-authority *.example.com KEY); " +
	"see docs/catalog.md"

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "print the CA public key of the configured issuer, for sshd's TrustedUserCAKeys",
		UsageText: "warden-agent ca\n\nExample (on a test server):\n" +
			"   warden-agent ca | sudo tee -a /etc/ssh/trusted_user_ca_keys\n" +
			"   echo 'TrustedUserCAKeys /etc/ssh/trusted_user_ca_keys' | sudo tee -a /etc/ssh/sshd_config\n\n" +
			"The key is a user CA: sshd trusts it to vouch for users. It is never a host CA, so there is\n" +
			"no known_hosts line for it.",
		Flags: []cli.Flag{
			// Kept, hidden, to explain its removal instead of "flag
			// provided but not defined".
			&cli.BoolFlag{Name: "known-hosts", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("known-hosts") {
				return cli.Exit(errKnownHostsRemoved, 2)
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			iss, closeIssuer, err := newIssuer(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer closeIssuer()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			key, err := iss.CAPublicKey(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
			return nil
		},
	}
}
