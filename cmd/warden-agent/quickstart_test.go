package main

// TestQuickstartLocalCA runs the local-CA part of docs/quickstart.md as
// written (issue 6, "Must show": followed literally on a fresh machine, it
// works). The commands are the ```sh blocks between the
// quickstart:local:begin and quickstart:local:end markers; they run in one
// bash with an isolated HOME and XDG directories, and `warden-agent` on
// PATH is this test binary (see TestMain). Only the test server's port
// (2222 in the doc) and, where it lives elsewhere, the sshd path are
// substituted.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	quickstartBegin = "<!-- quickstart:local:begin -->"
	quickstartEnd   = "<!-- quickstart:local:end -->"
	quickstartPort  = "2222"
	quickstartSSHD  = "/usr/sbin/sshd"
	quickstartLogin = "logged-in-with-a-warden-certificate"
)

// quickstartDoc is docs/quickstart.md, relative to this package.
func quickstartDoc(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "quickstart.md"))
	if err != nil {
		t.Fatalf("docs/quickstart.md: %v", err)
	}
	return string(data)
}

// quickstartScript returns the ```sh blocks between the markers, joined in
// order.
func quickstartScript(t *testing.T, doc string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, quickstartBegin)
	if !ok {
		t.Fatalf("docs/quickstart.md has no %s marker", quickstartBegin)
	}
	section, _, ok := strings.Cut(rest, quickstartEnd)
	if !ok {
		t.Fatalf("docs/quickstart.md has no %s marker after %s", quickstartEnd, quickstartBegin)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(section, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```sh":
			in, cur = true, nil
		case !in && strings.HasPrefix(trimmed, "```"):
			t.Fatalf("docs/quickstart.md: a %q block between the markers; the test runs only ```sh blocks, so mark commands as sh", trimmed)
		case in && trimmed == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatal("docs/quickstart.md: an unclosed ```sh block between the markers")
	}
	if len(blocks) == 0 {
		t.Fatal("docs/quickstart.md: no ```sh blocks between the markers")
	}
	return strings.Join(blocks, "\n") + "\n"
}

func TestQuickstartScriptExtraction(t *testing.T) {
	script := quickstartScript(t, quickstartDoc(t))
	for _, want := range []string{"warden-agent run", "warden-agent env", "warden-agent ca", "TrustedUserCAKeys",
		"warden-agent ssh-config", "warden-agent activity", quickstartLogin, quickstartPort, quickstartSSHD} {
		if !strings.Contains(script, want) {
			t.Errorf("the marked quickstart commands do not contain %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "bin/warden-agent") {
		t.Errorf("the marked quickstart commands call bin/warden-agent; they must use warden-agent from PATH:\n%s", script)
	}
}

func TestQuickstartLocalCA(t *testing.T) {
	needPrograms(t, "bash", "ssh", "ssh-keygen")
	sshd := sshdPath(t)
	e := newTestEnv(t)
	script := quickstartScript(t, quickstartDoc(t))
	port := strconv.Itoa(freePort(t))
	script = strings.ReplaceAll(script, quickstartPort, port)
	if sshd != quickstartSSHD {
		script = strings.ReplaceAll(script, quickstartSSHD, sshd)
	}
	work := filepath.Join(e.dir, "home", "warden-quickstart")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = e.environ()
	cmd.Dir = filepath.Join(e.dir, "home")
	cmd.Stdin = nil // /dev/null
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Its own process group, so the agent and sshd it starts in the
	// background go with it when the test kills the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		// The block stops what it started; whatever is left (a failed
		// run) goes with the group, and by its pid file in case it left
		// the group.
		for _, f := range []string{"sshd.pid", "agent.pid"} {
			if b, err := os.ReadFile(filepath.Join(work, f)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
	err := cmd.Wait()
	logs := func() string {
		var b bytes.Buffer
		fmt.Fprintf(&b, "script:\n%s\nstdout:\n%s\nstderr:\n%s", script, out.String(), errb.String())
		for _, f := range []string{"agent.log", "sshd.log"} {
			if data, err := os.ReadFile(filepath.Join(work, f)); err == nil {
				fmt.Fprintf(&b, "\n%s:\n%s", f, data)
			}
		}
		return b.String()
	}
	if ctx.Err() != nil {
		t.Fatalf("the quickstart commands did not finish within 60 s\n%s", logs())
	}
	if err != nil {
		t.Fatalf("the quickstart commands failed: %v\n%s", err, logs())
	}

	stdout := out.String()
	if !strings.Contains(stdout, quickstartLogin+"\n") {
		t.Errorf("the login did not print %q\n%s", quickstartLogin, logs())
	}
	for _, want := range []string{"EVENT", "cert.issued", "cert.used", "ok: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("`warden-agent activity` (and verify) output lacks %q\n%s", want, logs())
		}
	}

	// The audit log agrees: one certificate, for the local user, used once.
	user := loginUser(t)
	a := &agentProc{e: e}
	recs := a.audit(t)
	issued := events(recs, "cert.issued", "principal", user)
	if len(issued) != 1 {
		t.Fatalf("want one cert.issued for %s, got %v", user, events(recs, "cert.issued"))
	}
	if used := events(recs, "cert.used", "serial", issued[0].str("serial")); len(used) != 1 {
		t.Errorf("want one cert.used with serial %s, got %v", issued[0].str("serial"), events(recs, "cert.used"))
	}
	if dec := issued[0].str("serial_dec"); dec != "" {
		if log, _ := os.ReadFile(filepath.Join(work, "sshd.log")); !strings.Contains(string(log), "(serial "+dec+")") {
			t.Errorf("sshd.log does not show the certificate login with serial %s\n%s", dec, logs())
		}
	}

	// The block's last step stopped the agent: it records agent.stop on
	// the way out and removes its socket.
	if !waitFor(10*time.Second, func() bool { return !dialable("unix", e.socket()) && len(events(a.audit(t), "agent.stop")) > 0 }) {
		t.Errorf("the agent did not stop after the quickstart's kill\n%s", logs())
	}
}
