package main

import (
	"os"
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

// TestGlobalFlagsAfterPositional: --config and --socket after a positional
// argument (configuration.md: they work anywhere) are not ignored.
func TestGlobalFlagsAfterPositional(t *testing.T) {
	e := newTestEnv(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("routes:\n  - name: only-here\n    hosts: [\"*.example.org\"]\n    principals: [deploy]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"route", "ssh://deploy@web.example.org", "--config", cfg},
		{"route", "ssh://deploy@web.example.org", "--config=" + cfg},
		{"--config", cfg, "route", "ssh://deploy@web.example.org"},
	} {
		if r := e.warden(args...); r.code != 0 || !strings.Contains(r.stdout, "only-here") {
			t.Errorf("warden-agent %s: %s", strings.Join(args, " "), r)
		}
	}
	sock := filepath.Join(t.TempDir(), "x.sock")
	if r := e.warden("activity", "show", "abc", "--socket", sock, "--config", filepath.Join(t.TempDir(), "none.yaml")); !strings.Contains(r.stderr, "none.yaml") {
		t.Errorf("--config after activity show's serial was ignored: %s", r)
	}
}
