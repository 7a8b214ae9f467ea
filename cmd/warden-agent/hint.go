package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/agentproxy"
)

func hintCommand() *cli.Command {
	return &cli.Command{
		Name:  "hint",
		Usage: "tell the agent what an ssh process is about to connect to (run by ssh's Match exec)",
		UsageText: "warden-agent hint [--ssh-pid PID] --user USER --host HOST [--port PORT]\n\n" +
			"ssh runs it from the block `warden-agent ssh-config` prints:\n" +
			"   Match final exec \"warden-agent hint --user %r --host %h --port %p\"\n\n" +
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

func hintArgsOf(c *cli.Context) hintArgs {
	return hintArgs{
		socket: globalString(c, "socket"), sshPid: c.Int("ssh-pid"),
		user: c.String("user"), host: c.String("host"), port: c.Int("port"), timeout: c.Duration("timeout"),
	}
}

// hintArgs are the hint command's flags; socket is --socket (or
// $WARDEN_SOCKET), empty for the default.
type hintArgs struct {
	socket, user, host string
	sshPid, port       int
	timeout            time.Duration
}

// runHint is the hint command, for the urfave/cli command and for the
// fast path (parseHintArgs) alike.
func runHint(a hintArgs) error {
	socket := a.socket
	if socket == "" {
		socket = defaultSocketPath()
	}
	sshPid := a.sshPid
	if sshPid == 0 {
		sshPid = matchExecSSHPid("/proc", os.Getppid())
	}
	var reply agentproxy.HintReply
	err := agentproxy.CallExtension(socket, agentproxy.ExtHint, agentproxy.HintRequest{
		SSHPid: sshPid, User: a.user, Host: a.host, Port: a.port,
	}, &reply, a.timeout)
	if errors.Is(err, agentproxy.ErrNoAgent) {
		return cli.Exit("warden-agent: not running on "+socket+"; "+fallback(socket, os.Getenv("SSH_AUTH_SOCK")), 1)
	}
	if err != nil {
		return cli.Exit("warden-agent: "+err.Error(), 1)
	}
	if !reply.OK {
		return cli.Exit(fmt.Sprintf("warden-agent: no certificate for %s@%s: %s", a.user, a.host, reply.Error), 1)
	}
	return nil
}

// parseHintArgs is the hint's fast path: ssh runs the hint before every
// connection, and building the whole urfave/cli app costs more than the
// hint itself. It accepts only a plain, complete hint command line (args
// after hoistGlobalFlags): global --socket/--config first, then "hint"
// and its flags, each once, as -name, --name, with the value as the next
// word or after '=', parsed as urfave/cli (Go's flag package) parses
// them. Anything else (help, an unknown or repeated flag, a bad value, a
// missing --user or --host, a positional argument) returns false, and the
// full app handles it with its own messages and exit codes.
func parseHintArgs(args []string) (hintArgs, bool) {
	a := hintArgs{port: 22, timeout: 15 * time.Second}
	seen := map[string]bool{}
	i := 1
	// flag returns the name and value of the flag at args[i] and moves i
	// past it.
	flag := func() (name, value string, ok bool) {
		w := args[i]
		if len(w) < 2 || w[0] != '-' || w == "--" {
			return "", "", false
		}
		name = strings.TrimPrefix(w[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return "", "", false
		}
		name, value, hasValue := strings.Cut(name, "=")
		if seen[name] {
			return "", "", false
		}
		seen[name] = true
		i++
		if !hasValue {
			if i >= len(args) {
				return "", "", false
			}
			value = args[i]
			i++
		}
		return name, value, true
	}
	for i < len(args) && args[i] != "hint" {
		name, value, ok := flag()
		if !ok {
			return a, false
		}
		switch name {
		case "socket":
			a.socket = value
		case "config": // not read by the hint
		default:
			return a, false
		}
	}
	if i >= len(args) {
		return a, false
	}
	for i++; i < len(args); {
		name, value, ok := flag()
		if !ok {
			return a, false
		}
		var err error
		switch name {
		case "user":
			a.user = value
		case "host":
			a.host = value
		case "ssh-pid":
			a.sshPid, err = parseFlagInt(value)
		case "port":
			a.port, err = parseFlagInt(value)
		case "timeout":
			a.timeout, err = time.ParseDuration(value)
		default:
			return a, false
		}
		if err != nil {
			return a, false
		}
	}
	if !seen["user"] || !seen["host"] {
		return a, false
	}
	if !seen["socket"] {
		// urfave/cli reads the flag's EnvVars.
		a.socket = os.Getenv("WARDEN_SOCKET")
	}
	return a, true
}

// parseFlagInt parses an int flag value as Go's flag package does.
func parseFlagInt(s string) (int, error) {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	return int(n), err
}

// matchExecSSHPid finds the ssh process a hint runs for, from the hint's
// parent pid. ssh runs a Match exec line as `$SHELL -c LINE` (readconf.c
// execute_in_shell). bash, dash and zsh exec a single command in place,
// so ssh is the hint's parent; fish forks it, so the parent is that shell
// and ssh is its parent. fish also has no $PPID, which is why the block
// does not pass one.
func matchExecSSHPid(procRoot string, parent int) int {
	if procName(procRoot, parent) == "ssh" {
		return parent
	}
	argv := procCmdline(procRoot, parent)
	if len(argv) == 3 && argv[1] == "-c" {
		if gp := procParent(procRoot, parent); gp > 1 {
			return gp
		}
	}
	return parent
}

// procStat returns the command name and the fields after it of
// /proc/PID/stat; the name is in parentheses and may hold anything, so the
// fields start after the last ')'.
func procStat(procRoot string, pid int) (name string, fields []string) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", nil
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", nil
	}
	return string(data[open+1 : end]), strings.Fields(string(data[end+1:]))
}

func procName(procRoot string, pid int) string {
	name, _ := procStat(procRoot, pid)
	return name
}

// procParent is field 4 of /proc/PID/stat, or 0.
func procParent(procRoot string, pid int) int {
	_, f := procStat(procRoot, pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func procCmdline(procRoot string, pid int) []string {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// fallback says truthfully what ssh does when warden is down: ssh runs
// the hint with its own environment, so SSH_AUTH_SOCK here is the agent ssh
// falls back to. Pointing it at warden's own socket leaves ssh no agent.
func fallback(socket, authSock string) string {
	switch {
	case authSock == "":
		return "SSH_AUTH_SOCK is not set, so ssh falls back to your key files (~/.ssh/id_*) only; start warden-agent (`systemctl --user start warden-agent` or `warden-agent run`)"
	case samePath(authSock, socket):
		return "SSH_AUTH_SOCK points at it too, so ssh has no agent to fall back to: start warden-agent (`systemctl --user start warden-agent` or `warden-agent run`), or keep SSH_AUTH_SOCK on your own agent and let the ssh-config block route to warden (docs/ssh-config.md, break-glass)"
	case !answers(authSock):
		return fmt.Sprintf("your usual agent (SSH_AUTH_SOCK=%s) does not answer either, so ssh falls back to your key files (~/.ssh/id_*) only", authSock)
	}
	return fmt.Sprintf("ssh falls back to your usual agent (SSH_AUTH_SOCK=%s)", authSock)
}

func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// answers reports whether something accepts connections on socket.
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
