package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func envCommand() *cli.Command {
	return &cli.Command{
		Name:      "env",
		Usage:     "print the shell line that points SSH_AUTH_SOCK at the agent",
		UsageText: "warden-agent env [--fish | --path]\n\nExample:\n   eval \"$(warden-agent env)\"",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fish", Usage: "fish shell syntax"},
			&cli.BoolFlag{Name: "path", Usage: "print only the socket path"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
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
