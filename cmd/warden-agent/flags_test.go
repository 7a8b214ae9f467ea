package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestGlobalFlagsBeforeOrAfterCommand pins a bug: --socket and --config
// given before the command name were ignored, because the command's own
// unset copy of the flag shadowed the app's.
func TestGlobalFlagsBeforeOrAfterCommand(t *testing.T) {
	e := newTestEnv(t)
	sock := filepath.Join(t.TempDir(), "x.sock")
	for _, args := range [][]string{
		{"--socket", sock, "env", "--path"},
		{"env", "--path", "--socket", sock},
	} {
		if got := strings.TrimSpace(e.mustWarden(args...)); got != sock {
			t.Errorf("warden-agent %s: %q, want %q", strings.Join(args, " "), got, sock)
		}
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, args := range [][]string{
		{"--config", missing, "env"},
		{"env", "--config", missing},
	} {
		if r := e.warden(args...); r.code == 0 || !strings.Contains(r.stderr, "none.yaml") {
			t.Errorf("warden-agent %s with a missing config: %s", strings.Join(args, " "), r)
		}
	}
}
