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

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "print the CA public key of the configured issuer, for sshd's TrustedUserCAKeys",
		UsageText: "warden-agent ca [--known-hosts]\n\nExample (on a test server):\n" +
			"   warden-agent ca | sudo tee -a /etc/ssh/trusted_user_ca_keys\n" +
			"   echo 'TrustedUserCAKeys /etc/ssh/trusted_user_ca_keys' | sudo tee -a /etc/ssh/sshd_config",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "known-hosts", Usage: "print as a @cert-authority known_hosts line"},
		},
		Action: func(c *cli.Context) error {
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
			line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			if c.Bool("known-hosts") {
				line = "@cert-authority * " + line
			}
			fmt.Fprintln(c.App.Writer, line)
			return nil
		},
	}
}
