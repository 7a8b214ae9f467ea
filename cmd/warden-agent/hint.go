package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

func hintCommand() *cli.Command {
	return &cli.Command{
		Name:  "hint",
		Usage: "tell the agent what an ssh process is about to connect to (run by ssh's Match exec)",
		UsageText: "warden-agent hint [--ssh-pid PID] --user USER --host HOST [--port PORT]\n\n" +
			"ssh runs it from the block `warden-agent ssh-config` prints, or runs warden-hint, the same hint\n" +
			"as a small program of its own, when that is installed beside warden-agent:\n" +
			"   Match final exec \"warden-hint --socket SOCKET --user %r --host %h --port %p\"\n\n" +
			"Without --ssh-pid the ssh process is found from the hint's parents: ssh runs the line with\n" +
			"$SHELL -c, which may run the hint itself (bash, dash, zsh) or as its child (fish).\n" +
			"It exits 0 when the agent accepted the target, so ssh uses warden's socket; when the agent\n" +
			"is down or refuses the target it exits 1 with the reason on stderr, and ssh keeps your usual agent.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "ssh-pid", Usage: "`PID` of the ssh process (default: found from the parent processes)"},
			&cli.StringFlag{Name: "user", Usage: "remote `USER` (%r)", Required: true},
			&cli.StringFlag{Name: "host", Usage: "target `HOST` (%h)", Required: true},
			&cli.IntFlag{Name: "port", Usage: "target `PORT` (%p)", Value: 22},
			&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for the agent", Value: 15 * time.Second},
		},
		Action: func(c *cli.Context) error { return runHint(hintArgsOf(c)) },
	}
}

func hintArgsOf(c *cli.Context) hintcall.Args {
	return hintcall.Args{
		Socket: globalString(c, "socket"), SSHPid: c.Int("ssh-pid"),
		User: c.String("user"), Host: c.String("host"), Port: c.Int("port"), Timeout: c.Duration("timeout"),
	}
}

// runHint is the hint command, for the urfave/cli command and for the
// fast path (hintcall.Parse) alike.
func runHint(a hintcall.Args) error {
	socket := a.Socket
	if socket == "" {
		socket = defaultSocketPath()
	}
	if msg, code := hintcall.Run(a, socket); code != 0 {
		return cli.Exit(msg, code)
	}
	return nil
}
