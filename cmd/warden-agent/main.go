// Command warden-agent is a local ssh-agent that serves just-in-time SSH
// certificates and proxies every other key to the user's own agent.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	os.Exit(exitCode(runCLI(os.Args)))
}

// runCLI runs the command line args (os.Args). The hint, which ssh runs
// before every connection, skips building the urfave/cli app when its
// command line is a plain one (hintcall.Parse).
func runCLI(args []string) error {
	args = hoistGlobalFlags(args)
	if a, ok := hintcall.Parse(args); ok {
		return runHint(a)
	}
	return newApp().Run(args)
}

// hoistGlobalFlags moves --config and --socket (with their values) to the
// front, right after the program name. The flag parser stops at the first
// positional argument, so `warden-agent route ssh://a@b --config x` would
// otherwise ignore --config; in front they are the app's own flags, which
// every command reads. Nothing after "--" is touched.
func hoistGlobalFlags(args []string) []string {
	if len(args) < 2 {
		return args
	}
	var hoisted, rest []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "config" || name == "socket") {
			if hasValue {
				hoisted = append(hoisted, a)
				continue
			}
			if i+1 < len(args) {
				hoisted = append(hoisted, a, args[i+1])
				i++
				continue
			}
		}
		rest = append(rest, a)
	}
	return append(append([]string{args[0]}, hoisted...), rest...)
}

// exitCode prints err once and turns it into the process exit code:
// cli.Exit errors carry their own code and message.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "warden-agent:", err)
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "warden-agent",
		Usage:   "short-lived SSH certificates from an ssh-agent, with a record of every use",
		Version: version,
		Description: "warden-agent replaces ssh-agent: point SSH_AUTH_SOCK at it and every ssh login gets a\n" +
			"certificate minted for exactly that user and host, while your own keys keep working.",
		Flags:                globalFlags(),
		EnableBashCompletion: true,
		Commands:             commands(),
		// Errors are printed once, by main.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// commands lists every subcommand; each lives in its own file. Every
// command also takes the global flags (--config, --socket), so they work
// after the command name as well as before it.
func commands() []*cli.Command {
	cmds := []*cli.Command{
		runCommand(),
		hintCommand(),
		envCommand(),
		sshConfigCommand(),
		caCommand(),
		statusCommand(),
		signCommand(),
		completionCommand(),
		installServiceCommand(),
		manCommand(),
		activityCommand(),
		routeCommand(),
		catalogCommand(),
		policyCommand(),
		driftCommand(),
	}
	for _, c := range cmds {
		addGlobalFlags(c)
	}
	return cmds
}

func addGlobalFlags(c *cli.Command) {
	have := map[string]bool{}
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			have[n] = true
		}
	}
	for _, f := range globalFlags() {
		if have[f.Names()[0]] {
			continue
		}
		// Only the app's own copy reads $WARDEN_CONFIG/$WARDEN_SOCKET: a
		// command's copy that did would count as set from the environment
		// and win over the flag given before the command name, where
		// hoistGlobalFlags puts it (globalString reads the command first).
		if sf, ok := f.(*cli.StringFlag); ok {
			sf.EnvVars = nil
		}
		c.Flags = append(c.Flags, f)
	}
	for _, sub := range c.Subcommands {
		addGlobalFlags(sub)
	}
}
