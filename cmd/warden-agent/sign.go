package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/agentproxy"
)

func signCommand() *cli.Command {
	return &cli.Command{
		Name:  "sign",
		Usage: "print a certificate for a target (the cert_command of tunnel programs)",
		UsageText: "warden-agent sign --principal P --host H [--ttl D] [--out DIR]\n\n" +
			"Prints the OpenSSH certificate line on stdout and nothing else. The private key stays in\n" +
			"the agent: point the tunnel's SSH_AUTH_SOCK at the agent (a client that sends no\n" +
			"session-bind needs a route with require_bind: false). --out DIR also writes id_ed25519\n" +
			"(0600) and id_ed25519-cert.pub for tools that cannot use an agent.\n\n" +
			"Example:\n   warden-agent sign --principal deploy --host db1.prod.example.com",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "principal", Usage: "remote `USER`", Required: true},
			&cli.StringFlag{Name: "host", Usage: "target `HOST`", Required: true},
			&cli.DurationFlag{Name: "ttl", Usage: "cap on the lifetime of a newly issued certificate"},
			&cli.StringFlag{Name: "out", Usage: "also write the key and certificate files into `DIR`"},
		},
		Action: func(c *cli.Context) error {
			socket, err := socketFor(c)
			if err != nil {
				return err
			}
			var reply struct {
				agentproxy.SignCertReply
				Error string `json:"error"`
			}
			err = agentproxy.CallExtension(socket, agentproxy.ExtSignCert, agentproxy.SignCertRequest{
				Principal: c.String("principal"), Host: c.String("host"),
				TTLSeconds: int64(c.Duration("ttl") / time.Second), ExportKey: c.String("out") != "",
			}, &reply, 30*time.Second)
			if errors.Is(err, agentproxy.ErrNoAgent) {
				return cli.Exit(fmt.Sprintf("warden-agent is not running on %s; start it with `warden-agent run`", socket), 2)
			}
			if err != nil {
				return err
			}
			if reply.Error != "" {
				return cli.Exit("warden-agent: no certificate: "+reply.Error, 1)
			}
			if dir := c.String("out"); dir != "" {
				if err := writeKeyFiles(dir, reply.PrivateKey, reply.Certificate); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "warden-agent: wrote %s: the private key now exists on disk; delete it when done\n",
					filepath.Join(dir, "id_ed25519"))
			}
			fmt.Fprintln(c.App.Writer, reply.Certificate)
			return nil
		},
	}
}

// writeKeyFiles writes the pair the way ssh-keygen names it, so
// `ssh -i DIR/id_ed25519` finds the certificate beside the key.
func writeKeyFiles(dir, key, cert string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "id_ed25519")
	// Replace, never append to or widen an existing file's mode.
	os.Remove(keyPath)
	if err := os.WriteFile(keyPath, []byte(key), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyPath+"-cert.pub", []byte(cert+"\n"), 0o644)
}
