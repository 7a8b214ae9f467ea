package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parsePlist reads a plist with Python's plistlib (plutil is macOS-only):
// a real plist parser, not our own, decides whether launchd could read it.
func parsePlist(t *testing.T, data []byte) map[string]any {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	cmd := exec.Command("python3", "-c", `import json, plistlib, sys; json.dump(plistlib.loads(sys.stdin.buffer.read()), sys.stdout)`)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plistlib rejects the plist: %v\n%s", err, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkPlist checks what launchd needs (launchd.plist(5)) and what the
// agent relies on: the label, the program and its arguments, the socket
// under the name the agent activates with SockPathName and mode 0600,
// absolute log paths, umask 077.
func checkPlist(t *testing.T, m map[string]any, exe, socket, logFile string) {
	t.Helper()
	if m["Label"] != launchdLabel {
		t.Errorf("Label = %v", m["Label"])
	}
	if args, _ := m["ProgramArguments"].([]any); !reflect.DeepEqual(args, []any{exe, "run"}) {
		t.Errorf("ProgramArguments = %v, want [%s run]", m["ProgramArguments"], exe)
	}
	socks, _ := m["Sockets"].(map[string]any)
	l, _ := socks[launchdSocketName].(map[string]any)
	if l == nil {
		t.Fatalf("Sockets has no %q entry: %v", launchdSocketName, m["Sockets"])
	}
	if l["SockPathName"] != socket {
		t.Errorf("SockPathName = %v, want %s", l["SockPathName"], socket)
	}
	if mode, _ := l["SockPathMode"].(float64); mode != 0o600 {
		t.Errorf("SockPathMode = %v, want %d (0600)", l["SockPathMode"], 0o600)
	}
	for _, k := range []string{"SockType", "SockFamily", "SockServiceName", "SecureSocketWithKey"} {
		if _, ok := l[k]; ok {
			t.Errorf("socket entry has %s: a Unix path socket needs none", k)
		}
	}
	for _, k := range []string{"StandardOutPath", "StandardErrorPath"} {
		if m[k] != logFile {
			t.Errorf("%s = %v, want %s", k, m[k], logFile)
		}
	}
	if umask, _ := m["Umask"].(float64); umask != 0o77 {
		t.Errorf("Umask = %v, want %d (077)", m["Umask"], 0o77)
	}
	// Socket-activated: launchd starts the agent on the first connection
	// and again after it exits; RunAtLoad or KeepAlive would start it
	// without one.
	for _, k := range []string{"RunAtLoad", "KeepAlive"} {
		if _, ok := m[k]; ok {
			t.Errorf("plist sets %s", k)
		}
	}
	for _, p := range []string{exe, socket, logFile} {
		if !filepath.IsAbs(p) {
			t.Errorf("%s is not absolute: launchd expands neither ~ nor $HOME", p)
		}
	}
}

// contrib/launchd holds exactly what install-service writes for the
// default binary path and /Users/you, and launchd could read it.
func TestLaunchdPlistContrib(t *testing.T) {
	path := filepath.Join("..", "..", "contrib", "launchd", launchdLabel+".plist")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != launchdDefaultPlist() {
		t.Errorf("%s differs from launchdDefaultPlist(); regenerate it from installlaunchd.go", path)
	}
	checkPlist(t, parsePlist(t, data), launchdDefaultExe,
		"/Users/you/Library/Caches/warden/agent.sock", "/Users/you/Library/Logs/warden-agent.log")
	if !strings.Contains(string(data), "launchctl bootstrap gui/") {
		t.Error("the plist's comment does not say how to load it")
	}
}

// Paths with spaces, & and < stay one intact string each.
func TestLaunchdPlistEscapes(t *testing.T) {
	exe := "/Users/a & b/Applications/<warden>/warden-agent"
	sock := "/Users/a & b/Library/Caches/warden/agent.sock"
	logFile := "/Users/a & b/Library/Logs/warden-agent.log"
	checkPlist(t, parsePlist(t, []byte(launchdPlist(exe, sock, logFile))), exe, sock, logFile)
}

// install-service's macOS path, run here with a launchctl that logs its
// arguments: the plist for this user in ~/Library/LaunchAgents, the socket
// directory 0700, then bootout and bootstrap in gui/UID.
func TestInstallLaunchd(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", "")
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	script := "#!/bin/sh\necho \"$*\" >> '" + calls + "'\n[ \"$1\" = bootout ] && { echo 'Boot-out failed: 3: No such process'; exit 3; }\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "launchctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	exe := "/opt/warden/bin/warden-agent"
	run := func(args ...string) string {
		var out, errOut bytes.Buffer
		app := &cli.App{Name: "warden-agent", Writer: &out, ErrWriter: &errOut, Commands: []*cli.Command{{
			Name:   "install-service",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "dry-run"}, &cli.BoolFlag{Name: "no-enable"}},
			Action: func(c *cli.Context) error { return installLaunchd(c, exe) },
		}}}
		if err := app.Run(append([]string{"warden-agent", "install-service"}, args...)); err != nil {
			t.Fatalf("install-service %v: %v\n%s", args, err, errOut.String())
		}
		if errOut.Len() > 0 {
			t.Errorf("install-service %v wrote to stderr:\n%s", args, errOut.String())
		}
		return out.String()
	}
	plist := filepath.Join(home, "Library", "LaunchAgents", launchdLabel+".plist")
	socket := defaultSocketPath()

	out := run("--dry-run")
	if _, err := os.Stat(plist); err == nil {
		t.Fatal("--dry-run wrote the plist")
	}
	if !strings.Contains(out, "launchctl bootstrap gui/") || !strings.Contains(out, "<key>Sockets</key>") {
		t.Errorf("--dry-run output:\n%s", out)
	}

	out = run()
	data, err := os.ReadFile(plist)
	if err != nil {
		t.Fatal(err)
	}
	checkPlist(t, parsePlist(t, data), exe, socket, filepath.Join(home, "Library", "Logs", "warden-agent.log"))
	if fi, err := os.Stat(filepath.Dir(socket)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v %v", fi, err)
	}
	got, _ := os.ReadFile(calls)
	uid := os.Getuid()
	want := "bootout gui/" + strconv.Itoa(uid) + "/" + launchdLabel + "\nbootstrap gui/" + strconv.Itoa(uid) + " " + plist + "\n"
	if string(got) != want {
		t.Errorf("launchctl calls:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(out, "export SSH_AUTH_SOCK="+shellQuote(socket)) || !strings.Contains(out, "loaded "+launchdLabel) {
		t.Errorf("output:\n%s", out)
	}
	// Again: unchanged file, launchd reloaded.
	if out := run(); !strings.Contains(out, "unchanged "+plist) {
		t.Errorf("second run:\n%s", out)
	}
}
