package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

// TestHintFastPathParsesAsTheApp: for every command line the fast path
// takes, urfave/cli would have run the hint with the same values; the
// ones it declines are left to the app.
func TestHintFastPathParsesAsTheApp(t *testing.T) {
	cases := []struct {
		line string
		fast bool
	}{
		{"hint --user root --host example.com --port 22", true},
		{"hint --socket /s/agent.sock --user bob --host db1 --port 2222", true},
		{"--socket /s/agent.sock hint --user bob --host db1", true},
		{"--socket=/s/agent.sock --config /c.yaml hint -user=bob -host=db1 -port=0x16", true},
		{"hint --user bob --host db1 --ssh-pid 4242 --timeout 2s", true},
		{"hint --user= --host db1", true},
		{"hint --user -x --host --", true},
		{"hint --user bob --host db1 --port 22 --config /c.yaml", true},
		{"hint --user bob --host db1 -- extra", false},
		{"hint --user bob --host db1 extra", false},
		{"hint --user bob", false},
		{"hint --host db1", false},
		{"hint --user bob --host db1 --port x", false},
		{"hint --user bob --host db1 --timeout 2", false},
		{"hint --user bob --host db1 --user alice", false},
		{"hint --user bob --host db1 --help", false},
		{"hint -h", false},
		{"hint --user bob --host db1 --bogus 1", false},
		{"hint --user bob --host db1 ---port 1", false},
		{"hint --user bob --host", false},
		{"--help hint --user bob --host db1", false},
		{"status", false},
		{"", false},
		{"hint --user bob --host db1 --generate-bash-completion", false},
	}
	for _, env := range []string{"", "/env/agent.sock"} {
		t.Setenv("WARDEN_SOCKET", env)
		for _, c := range cases {
			args := hoistGlobalFlags(append([]string{"warden-agent"}, strings.Fields(c.line)...))
			got, fast := hintcall.Parse(args)
			if fast != c.fast {
				t.Errorf("%q (WARDEN_SOCKET=%q): fast path %v, want %v", c.line, env, fast, c.fast)
				continue
			}
			if !fast {
				continue
			}
			want, ran := appHintArgs(t, args)
			if !ran {
				t.Errorf("%q: the fast path takes it but the app does not run the hint", c.line)
			} else if got != want {
				t.Errorf("%q (WARDEN_SOCKET=%q): fast path %+v, app %+v", c.line, env, got, want)
			}
		}
	}
}

// appHintArgs runs args through the full app with the hint's action
// replaced by one that returns what the action would have used.
func appHintArgs(t *testing.T, args []string) (got hintcall.Args, ran bool) {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	for _, cmd := range app.Commands {
		if cmd.Name == "hint" {
			cmd.Action = func(c *cli.Context) error {
				got, ran = hintArgsOf(c), true
				return nil
			}
		}
	}
	if err := app.Run(args); err != nil {
		t.Logf("app: %v", err)
	}
	return got, ran
}

// TestGlobalFlagWinsOverEnvironment: --socket given on the command line
// wins over $WARDEN_SOCKET, for the hint's fast path and for the app.
func TestGlobalFlagWinsOverEnvironment(t *testing.T) {
	e := newTestEnv(t)
	flag := filepath.Join(e.dir, "flag.sock")
	env := []string{"WARDEN_SOCKET=" + filepath.Join(e.dir, "env.sock")}
	for _, args := range [][]string{
		{"hint", "--socket", flag, "--user", "root", "--host", "example.com"},
		{"hint", "--socket", flag, "--user", "root", "--host", "example.com", "extra"}, // the app
		{"status", "--socket", flag},
	} {
		r := e.run(env, wardenExe, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "not running on "+flag) {
			t.Errorf("warden-agent %s with WARDEN_SOCKET set: want a failure naming %s, got %s", strings.Join(args, " "), flag, r)
		}
	}
}
