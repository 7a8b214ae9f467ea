package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// The macOS launchd user agent. launchd owns the socket (the plist's
// Sockets key, as systemd's socket unit does on Linux) and starts the
// agent on the first connection; the agent takes the socket over with
// launch_activate_socket (agentproxy.LaunchdListener).
const (
	launchdLabel = "net.netkingdom.warden-agent"
	// launchdSocketName is the key in the plist's Sockets dictionary.
	launchdSocketName = "Listeners"

	// The canonical plist (contrib/launchd/) is rendered for this user.
	launchdDefaultExe  = "/usr/local/bin/warden-agent"
	launchdDefaultHome = "/Users/you"
)

// launchdPlist renders the plist for a binary, a socket and a log file.
// launchd expands neither ~ nor $HOME, so every path is absolute.
func launchdPlist(exe, socket, logFile string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!--
  warden-agent as a macOS launchd user agent; see docs/macos.md.
  launchd owns the socket (Sockets) and starts the agent on the first
  connection, as warden-agent.socket does with systemd on Linux.

  ` + "`warden-agent install-service`" + ` writes this file with your paths to
  ~/Library/LaunchAgents/ and loads it. By hand: replace ` + launchdDefaultHome + ` and
  the binary path, create the socket directory, and load it:
    mkdir -m 700 -p ~/Library/Caches/warden
    launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/` + launchdLabel + `.plist
  The upstream agent is the SSH_AUTH_SOCK launchd gives the login session
  (macOS's own ssh-agent).
-->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + launchdLabel + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + xmlText(exe) + `</string>
		<string>run</string>
	</array>
	<key>Sockets</key>
	<dict>
		<key>` + launchdSocketName + `</key>
		<dict>
			<key>SockPathName</key>
			<string>` + xmlText(socket) + `</string>
			<!-- 0600: plists have no octal. -->
			<key>SockPathMode</key>
			<integer>384</integer>
		</dict>
	</dict>
	<key>StandardOutPath</key>
	<string>` + xmlText(logFile) + `</string>
	<key>StandardErrorPath</key>
	<string>` + xmlText(logFile) + `</string>
	<key>ProcessType</key>
	<string>Interactive</string>
	<!-- 077: files the agent creates are the user's alone. -->
	<key>Umask</key>
	<integer>63</integer>
</dict>
</plist>
`
}

// launchdDefaultPlist is contrib/launchd/net.netkingdom.warden-agent.plist.
func launchdDefaultPlist() string {
	lib := filepath.Join(launchdDefaultHome, "Library")
	return launchdPlist(launchdDefaultExe, filepath.Join(lib, "Caches", "warden", "agent.sock"),
		filepath.Join(lib, "Logs", "warden-agent.log"))
}

func xmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// installLaunchd is install-service on macOS: write the plist to
// ~/Library/LaunchAgents, make the socket's directory, and (re)load the
// job with launchctl bootout and bootstrap in the gui/UID domain.
func installLaunchd(c *cli.Context, exe string) error {
	w := c.App.Writer
	home := homeDir()
	socket := defaultSocketPath()
	logFile := filepath.Join(home, "Library", "Logs", "warden-agent.log")
	path := filepath.Join(home, "Library", "LaunchAgents", launchdLabel+".plist")
	text := launchdPlist(exe, socket, logFile)
	domain := fmt.Sprintf("gui/%d", os.Getuid())
	cmds := [][]string{
		{"bootout", domain + "/" + launchdLabel},
		{"bootstrap", domain, path},
	}
	manual := fmt.Sprintf("  launchctl bootout %s/%s\n  launchctl bootstrap %s %s\n", domain, launchdLabel, domain, shellQuote(path))
	profile := `export SSH_AUTH_SOCK=` + shellQuote(socket)

	if c.Bool("dry-run") {
		fmt.Fprintf(w, "# would write %s (mode 0644):\n%s\n", path, text)
		fmt.Fprintf(w, "# would create %s (mode 0700)\n", filepath.Dir(socket))
		if !c.Bool("no-enable") {
			fmt.Fprintf(w, "# would run:\n%s", manual)
		}
		printLaunchdProfileHint(w, profile)
		return nil
	}
	for _, d := range []string{filepath.Dir(path), filepath.Dir(logFile)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("install-service: %w", err)
		}
	}
	// launchd creates the socket, not its directory; the agent checks it
	// is private when it runs without launchd.
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return fmt.Errorf("install-service: socket directory: %w", err)
	}
	changed, err := writeUnitFile(path, text)
	if err != nil {
		return fmt.Errorf("install-service: %w", err)
	}
	verb := "wrote"
	if !changed {
		verb = "unchanged"
	}
	fmt.Fprintf(w, "%s %s\n", verb, path)
	if c.Bool("no-enable") {
		fmt.Fprintf(w, "\nNot loaded (--no-enable). To start the agent on demand:\n%s", manual)
	} else if err := runLaunchctl(w, cmds); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warden-agent: the plist is written, but %v\nLoad it by hand in your login session:\n%s", err, manual)
	} else {
		fmt.Fprintf(w, "loaded %s; launchd listens on %s and starts the agent on the first connection\n", launchdLabel, socket)
	}
	printLaunchdProfileHint(w, profile)
	return nil
}

// runLaunchctl runs the commands; bootout may fail (nothing was loaded).
func runLaunchctl(w io.Writer, cmds [][]string) error {
	launchctl, err := exec.LookPath("launchctl")
	if err != nil {
		return errors.New("launchctl is not installed here, so nothing was loaded")
	}
	for i, args := range cmds {
		out, err := exec.Command(launchctl, args...).CombinedOutput()
		if err != nil && i > 0 {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				msg = err.Error()
			}
			return fmt.Errorf("`launchctl %s` failed: %s", strings.Join(args, " "), msg)
		}
	}
	return nil
}

func printLaunchdProfileHint(w io.Writer, line string) {
	fmt.Fprintf(w, "\nAdd this line to ~/.zshrc (or ~/.bash_profile):\n  %s\n", line)
	fmt.Fprintln(w, "or keep your usual agent and send only catalog hosts to warden: warden-agent ssh-config >> ~/.ssh/config")
}
