package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func envCommand() *cli.Command {
	return &cli.Command{
		Name:  "env",
		Usage: "print the shell line that points SSH_AUTH_SOCK at the agent (for programs that do not read ~/.ssh/config)",
		UsageText: "warden-agent env [--fish | --path]\n\n" +
			"For ssh itself, keep SSH_AUTH_SOCK on your own agent and add the block of `warden-agent ssh-config`:\n" +
			"ssh then uses warden for the hosts it serves and your own agent whenever warden is down (break-glass).\n" +
			"With SSH_AUTH_SOCK on warden's socket, ssh has no agent while warden is down, unless systemd's\n" +
			"socket activation starts it again (warden-agent install-service).\n\n" +
			"Example (a tunnel program that reads SSH_AUTH_SOCK):\n   SSH_AUTH_SOCK=$(warden-agent env --path) python3 tunnel.py",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fish", Usage: "fish shell syntax"},
			&cli.BoolFlag{Name: "path", Usage: "print only the socket path"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			if !c.Bool("path") {
				// On stderr: stdout is eval'd, and fish's eval joins lines.
				fmt.Fprintln(c.App.ErrWriter, "warden-agent env: with SSH_AUTH_SOCK on warden, ssh has no agent while warden is down; for ssh, keep SSH_AUTH_SOCK on your own agent and use `warden-agent ssh-config` instead (break-glass)")
			}
			switch {
			case c.Bool("path"):
				fmt.Fprintln(c.App.Writer, cfg.Socket)
			case c.Bool("fish"):
				fmt.Fprintf(c.App.Writer, "set -gx SSH_AUTH_SOCK %s;\n", shellQuote(cfg.Socket))
			default:
				fmt.Fprintf(c.App.Writer, "SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", shellQuote(cfg.Socket))
			}
			return nil
		},
	}
}

// shellQuote quotes a path for sh and fish when it needs quoting.
func shellQuote(s string) string {
	for _, r := range s {
		if !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
