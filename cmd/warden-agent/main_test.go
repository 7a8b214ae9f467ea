package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// wardenExe is this test binary under the name warden-agent (see
// TestMain). Every warden-agent the tests run — the agent itself, ssh's
// Match exec hint, the CLI commands — is this binary, so the real code runs
// and is covered.
var wardenExe string

// TestMain lets the test binary act as warden-agent: started under that
// name it runs the CLI instead of the tests (STYLE item 13).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "warden-agent" {
		os.Exit(exitCode(runCLI(os.Args)))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "warden-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	// WARDEN_E2E_EXE runs the end-to-end tests against another build of
	// warden-agent (an older commit, to see which tests fail there).
	if other := os.Getenv("WARDEN_E2E_EXE"); other != "" {
		self = other
	}
	// A hard link (or a copy), not a symlink: `warden-agent ssh-config`
	// writes its own path with symlinks resolved into the Match exec line,
	// and through a symlink that would be the test binary's own name, which
	// runs the tests instead of the hint.
	exe := filepath.Join(dir, "warden-agent")
	if err := os.Link(self, exe); err != nil {
		if err := copyFile(self, exe); err != nil {
			fmt.Fprintln(os.Stderr, "TestMain:", err)
			return 1
		}
	}
	wardenExe = exe
	// warden-hint beside it, as `make install` puts it: ssh-config then
	// prints it in the Match block, and the agent takes hints from it.
	if os.Getenv("WARDEN_E2E_EXE") == "" {
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "warden-hint"), "github.com/netkingdom/ops-warden/cmd/warden-hint")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "TestMain: build warden-hint: %v\n%s", err, out)
			return 1
		}
	}
	os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return m.Run()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// testEnv is one isolated user environment: its own XDG directories (so
// its own socket, CA key, audit log and agent.yaml) and HOME.
type testEnv struct {
	t       *testing.T
	dir     string // short, for socket paths
	runtime string // XDG_RUNTIME_DIR
	state   string // XDG_STATE_HOME
	config  string // XDG_CONFIG_HOME
	extra   []string
}

// shortTempDir is a temporary directory with a short path: unix socket
// paths are limited to 108 bytes, and t.TempDir's names grow with the test
// name.
func shortTempDir(t *testing.T) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	d, err := os.MkdirTemp(base, "wa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	d := shortTempDir(t)
	e := &testEnv{t: t, dir: d, runtime: filepath.Join(d, "run"), state: filepath.Join(d, "state"), config: filepath.Join(d, "config")}
	// A binary built with -race sleeps a second at exit; every login runs
	// the hint, so that second would be added to each.
	e.extra = append(e.extra, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	for _, p := range []string{e.runtime, e.state, e.config, filepath.Join(d, "home")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// socket is the default agent socket of this environment.
func (e *testEnv) socket() string { return filepath.Join(e.runtime, "warden", "agent.sock") }

// auditPath is the default audit log of this environment.
func (e *testEnv) auditPath() string { return filepath.Join(e.state, "warden", "audit.log") }

// writeConfig writes agent.yaml.
func (e *testEnv) writeConfig(yaml string) {
	e.t.Helper()
	dir := filepath.Join(e.config, "warden")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(yaml), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// environ is the environment of every process of this test: the parent's,
// without anything that would point at a real agent or configuration,
// plus the test's own directories and extra (KEY=value, later wins).
func (e *testEnv) environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "SSH_AUTH_SOCK" || k == "SSH_AGENT_PID" || k == "HOME" || k == "DISPLAY" ||
			strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "WARDEN_") || strings.HasPrefix(k, "SSH_ASKPASS") ||
			strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"HOME="+filepath.Join(e.dir, "home"),
		"XDG_RUNTIME_DIR="+e.runtime,
		"XDG_STATE_HOME="+e.state,
		"XDG_CONFIG_HOME="+e.config,
	)
	env = append(env, e.extra...)
	return append(env, extra...)
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
}

// run runs a program to completion (bounded by 30 s) with the test's
// environment plus env, stdin from /dev/null.
func (e *testEnv) run(env []string, name string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.environ(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), err: err}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	} else {
		r.code = -1
	}
	if ctx.Err() != nil {
		e.t.Fatalf("%s %s: timed out\n%s", name, strings.Join(args, " "), r)
	}
	return r
}

// warden runs a warden-agent command.
func (e *testEnv) warden(args ...string) result {
	e.t.Helper()
	return e.run(nil, wardenExe, args...)
}

// mustWarden runs a warden-agent command that must succeed.
func (e *testEnv) mustWarden(args ...string) string {
	e.t.Helper()
	r := e.warden(args...)
	if r.code != 0 {
		e.t.Fatalf("warden-agent %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// syncBuffer collects a subprocess's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
