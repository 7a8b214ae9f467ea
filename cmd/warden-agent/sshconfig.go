package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

func sshConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh-config",
		Usage: "print the ~/.ssh/config block that sends ssh's target to the agent",
		UsageText: "warden-agent ssh-config >> ~/.ssh/config\n\n" +
			"The block runs the hint before each connection (warden-hint when it is installed beside\n" +
			"warden-agent, else `warden-agent hint`). When the agent is up and accepts\n" +
			"the target, ssh uses the agent's socket; when it is down, ssh keeps your usual agent (break-glass).",
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			fmt.Fprint(c.App.Writer, sshConfigBlock(hintCommandLine(), cfg.Socket))
			return nil
		},
	}
}

// sshConfigBlock is the Match block for ~/.ssh/config; hint is the
// command that sends the hint (hintCommandLine). "final" makes ssh
// evaluate it after host name canonicalisation, so %h is the real host.
// The line names no shell variable: ssh runs it with the user's $SHELL,
// which may be fish (no $PPID) as well as a POSIX shell; the hint finds
// the ssh process, whose later agent connection the agent recognises by
// its peer pid, from its own parents (hintcall.MatchExecSSHPid).
func sshConfigBlock(hint, socket string) string {
	return fmt.Sprintf(`# warden-agent: just-in-time certificates for the hosts in the catalog.
# When warden-agent is not running, the hint fails and ssh uses your usual agent.
Match final exec "%s --socket %s --user %%r --host %%h --port %%p"
    IdentityAgent %s
`, hint, socket, socket)
}

// hintCommandLine is how the Match block runs the hint: warden-hint when
// it is installed beside this binary (it starts several times faster,
// and ssh waits for it on every connection), else `warden-agent hint`.
func hintCommandLine() string {
	if p := hintProgram(); p != "" {
		return p
	}
	return selfPath() + " hint"
}

// hintProgram is the warden-hint program beside this binary, or "" when
// there is none. The agent takes the hint extension from it
// (agentproxy.Config.HintProgram).
func hintProgram() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "warden-hint")
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return p
}

// selfPath is the absolute path of this binary, for the Match exec line.
// Symlinks are kept: a package manager's versioned target disappears on
// upgrade, the link does not.
func selfPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "warden-agent"
	}
	return exe
}
