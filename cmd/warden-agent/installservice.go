package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"
)

// The systemd user units. These constants are the canonical text:
// contrib/systemd/ holds the same bytes (installservice_test.go keeps them
// equal), and install-service writes them with only the ExecStart path
// replaced by the running binary.
const (
	serviceUnitName = "warden-agent.service"
	socketUnitName  = "warden-agent.socket"

	// defaultExecStart is the binary path in the canonical unit.
	defaultExecStart = "%h/.local/bin/warden-agent"

	socketUnit = `# warden-agent socket: systemd owns the agent socket and starts the agent on
# the first connection. Install with ` + "`warden-agent install-service`" + `, or copy both
# units to ~/.config/systemd/user/ and run
#   systemctl --user daemon-reload
#   systemctl --user enable --now warden-agent.socket
# See docs/service.md.
[Unit]
Description=warden-agent socket (SSH_AUTH_SOCK for just-in-time SSH certificates)
Documentation=https://github.com/netkingdom/ops-warden/blob/main/docs/service.md

[Socket]
# The agent's default socket: $XDG_RUNTIME_DIR/warden/agent.sock.
ListenStream=%t/warden/agent.sock
SocketMode=0600
DirectoryMode=0700

[Install]
WantedBy=sockets.target
`

	serviceUnit = `# warden-agent: a local ssh-agent that serves just-in-time SSH certificates and
# proxies every other key to your own agent. Started by warden-agent.socket.
# See docs/service.md for the hardening below and for the upstream agent.
[Unit]
Description=warden-agent (just-in-time SSH certificates from an ssh-agent)
Documentation=https://github.com/netkingdom/ops-warden/blob/main/docs/service.md
Requires=warden-agent.socket
After=warden-agent.socket

[Service]
Type=simple
ExecStart=` + defaultExecStart + ` run
# SIGHUP reopens the audit log and reloads the catalog and policy.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
# Your own agent, for the keys warden-agent proxies: the agent uses
# $SSH_AUTH_SOCK of the user manager (systemctl --user set-environment
# SSH_AUTH_SOCK=...) or an Environment= / --upstream drop-in.
# The state directory (local CA key, audit log) is %S/warden, which is
# ~/.local/state/warden; the agent is told so explicitly.
Environment=XDG_STATE_HOME=%S
StateDirectory=warden
StateDirectoryMode=0700

# Hardening.
UMask=0177
# No core file (the agent also sets RLIMIT_CORE 0 and PR_SET_DUMPABLE 0).
LimitCORE=0
NoNewPrivileges=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=%S/warden %t/warden
PrivateTmp=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
SystemCallArchitectures=native

[Install]
Also=warden-agent.socket
`
)

// serviceUnitFor is the service unit with ExecStart pointing at exe.
func serviceUnitFor(exe string) string {
	return strings.Replace(serviceUnit, "ExecStart="+defaultExecStart+" ", "ExecStart="+systemdExecQuote(exe)+" ", 1)
}

// systemdExecQuote writes a path as one word of a systemd command line:
// specifiers (%) and variables ($) are escaped, and a path with spaces,
// quotes or backslashes is double-quoted.
func systemdExecQuote(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	p = strings.ReplaceAll(p, "$", "$$")
	if !strings.ContainsAny(p, " \t\"'\\;") {
		return p
	}
	p = strings.ReplaceAll(p, `\`, `\\`)
	p = strings.ReplaceAll(p, `"`, `\"`)
	return `"` + p + `"`
}

// manualEnable are the commands install-service runs, for the user to run
// by hand when it cannot.
const manualEnable = "  systemctl --user daemon-reload\n  systemctl --user enable --now " + socketUnitName + "\n"

// profileLine is the SSH_AUTH_SOCK line for the shell profile.
const profileLine = `export SSH_AUTH_SOCK="$XDG_RUNTIME_DIR/warden/agent.sock"`

func installServiceCommand() *cli.Command {
	return &cli.Command{
		Name:  "install-service",
		Usage: "install and enable the systemd user units, or the launchd agent on macOS (socket-activated agent)",
		UsageText: "warden-agent install-service [--dry-run] [--no-enable]\n\n" +
			"Writes warden-agent.socket and warden-agent.service to $XDG_CONFIG_HOME/systemd/user/,\n" +
			"with ExecStart pointing at this binary, then runs `systemctl --user daemon-reload` and\n" +
			"`systemctl --user enable --now warden-agent.socket`. See docs/service.md.\n" +
			"On macOS it writes ~/Library/LaunchAgents/net.netkingdom.warden-agent.plist and runs\n" +
			"`launchctl bootstrap gui/$UID` on it. See docs/macos.md.\n\n" +
			"Example:\n   warden-agent install-service\n" +
			"   echo 'export SSH_AUTH_SOCK=\"$XDG_RUNTIME_DIR/warden/agent.sock\"' >> ~/.profile",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print the units and the commands; write and run nothing"},
			&cli.BoolFlag{Name: "no-enable", Usage: "write the units but do not run systemctl"},
		},
		Action: installService,
	}
}

func installService(c *cli.Context) error {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		return cli.Exit(fmt.Sprintf("warden-agent install-service: systemd user units are for Linux, the launchd agent for macOS; on %s see docs/platforms.md", runtime.GOOS), 1)
	}
	w := c.App.Writer
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install-service: cannot find this binary's path: %w", err)
	}
	if strings.ContainsAny(exe, "\n\r") {
		return fmt.Errorf("install-service: binary path %q contains a newline", exe)
	}
	if isTemporaryBinary(exe) {
		fmt.Fprintf(c.App.ErrWriter, "warden-agent: warning: %s looks like a temporary build (go run or go test);"+
			" install the binary (make install, go install) and run install-service from there\n", exe)
	}
	if runtime.GOOS == "darwin" {
		return installLaunchd(c, exe)
	}
	dir := filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "systemd", "user")
	units := []struct{ name, text string }{
		{socketUnitName, socketUnit},
		{serviceUnitName, serviceUnitFor(exe)},
	}

	if c.Bool("dry-run") {
		for _, u := range units {
			fmt.Fprintf(w, "# would write %s (mode 0644):\n%s\n", filepath.Join(dir, u.name), u.text)
		}
		if !c.Bool("no-enable") {
			fmt.Fprintf(w, "# would run:\n%s", manualEnable)
		}
		printProfileHint(w)
		return nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install-service: %w", err)
	}
	for _, u := range units {
		path := filepath.Join(dir, u.name)
		changed, err := writeUnitFile(path, u.text)
		if err != nil {
			return fmt.Errorf("install-service: %w", err)
		}
		verb := "wrote"
		if !changed {
			verb = "unchanged"
		}
		fmt.Fprintf(w, "%s %s\n", verb, path)
	}

	if c.Bool("no-enable") {
		fmt.Fprintf(w, "\nNot enabled (--no-enable). To start the agent on demand:\n%s", manualEnable)
	} else if err := enableUnits(w); err != nil {
		// The units are in place; only this machine's systemd is missing
		// or unreachable (a container, no user session). Not an error of
		// install-service: say what failed and what to run.
		fmt.Fprintf(c.App.ErrWriter, "warden-agent: the units are written, but %v\nEnable them by hand where a systemd user session runs:\n%s", err, manualEnable)
	} else {
		fmt.Fprintf(w, "enabled and started %s; the agent starts on the first connection\n", socketUnitName)
	}
	printUpstreamHint(w)
	printProfileHint(w)
	return nil
}

// writeUnitFile writes text to path (mode 0644) through a temporary file
// and a rename, and reports whether the content changed.
func writeUnitFile(path, text string) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, []byte(text)) {
		if err := os.Chmod(path, 0o644); err != nil {
			return false, err
		}
		return false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// enableUnits runs daemon-reload and enables and starts the socket.
func enableUnits(w io.Writer) error {
	systemctl, err := exec.LookPath("systemctl")
	if err != nil {
		return errors.New("systemctl is not installed here, so nothing was enabled")
	}
	for _, args := range [][]string{
		{"--user", "daemon-reload"},
		{"--user", "enable", "--now", socketUnitName},
	} {
		out, err := exec.Command(systemctl, args...).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				msg = err.Error()
			}
			return fmt.Errorf("`systemctl %s` failed: %s", strings.Join(args, " "), msg)
		}
		// enable prints "Created symlink ..." lines: pass them on.
		w.Write(out)
	}
	return nil
}

// printUpstreamHint says where the service finds the user's own agent.
func printUpstreamHint(w io.Writer) {
	fmt.Fprintln(w, "\nYour own keys: the service proxies them to $SSH_AUTH_SOCK of the systemd user manager")
	fmt.Fprintln(w, "(`systemctl --user show-environment`), or to --upstream set in a drop-in (docs/service.md).")
	if up := os.Getenv("SSH_AUTH_SOCK"); up != "" && !strings.Contains(up, "/warden/") {
		fmt.Fprintf(w, "To use the agent of this shell:\n  systemctl --user set-environment SSH_AUTH_SOCK=%s\n", shellQuote(up))
	}
}

// printProfileHint prints the line for the shell profile.
func printProfileHint(w io.Writer) {
	fmt.Fprintf(w, "\nAdd this line to your shell profile (~/.profile, ~/.bashrc or ~/.zshrc):\n  %s\n", profileLine)
	fmt.Fprintln(w, "or keep your usual agent and send only catalog hosts to warden: warden-agent ssh-config >> ~/.ssh/config")
}

// isTemporaryBinary reports a binary that go run or go test built in a
// temporary directory: a unit pointing at it breaks once it is deleted.
func isTemporaryBinary(exe string) bool {
	return strings.Contains(exe, string(filepath.Separator)+"go-build") ||
		strings.HasPrefix(exe, os.TempDir()+string(filepath.Separator))
}
