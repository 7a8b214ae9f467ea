package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	os.WriteFile(path, []byte("rules:\n  - {name: v1, effect: allow}\n"), 0o644)
	events := make(chan Event, 10)
	s, err := NewStore(path, nil, func(ev Event) { events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := Input{Principal: "deploy", Host: "h"}
	if d := s.Current().Evaluate(in); d.Effect != EffectAllow {
		t.Fatalf("v1: %+v", d)
	}

	// Rename-on-save changes the next decision within a second.
	start := time.Now()
	os.WriteFile(path+".new", []byte("rules:\n  - {name: v2, effect: deny}\n"), 0o644)
	os.Rename(path+".new", path)
	ev := wait(t, events)
	if ev.Kind != EventReloaded || len(ev.Hash) != 64 {
		t.Fatalf("event %+v", ev)
	}
	if d := s.Current().Evaluate(in); d.Effect != EffectDeny || d.Rule != "v2" {
		t.Fatalf("v2: %+v", d)
	}
	if time.Since(start) > time.Second {
		t.Errorf("reload took %v", time.Since(start))
	}

	// A broken file keeps the previous decision; reload_failed names the line.
	os.WriteFile(path+".new", []byte("rules:\n  - name: v3\n    effect: alow\n"), 0o644)
	os.Rename(path+".new", path)
	ev = wait(t, events)
	if ev.Kind != EventReloadFailed || ev.Err == nil || !strings.Contains(ev.Err.Error(), "policy.yaml:3:13:") {
		t.Fatalf("event %+v", ev)
	}
	if d := s.Current().Evaluate(in); d.Rule != "v2" {
		t.Fatalf("broken file changed the decision: %+v", d)
	}
	if err := s.LastError(); err == nil || !strings.Contains(err.Error(), ":3:13:") {
		t.Errorf("LastError = %v", err)
	}
	// Writing in place (no rename) is seen too.
	os.WriteFile(path, []byte("rules:\n  - {name: v4, effect: allow}\n"), 0o644)
	if ev := wait(t, events); ev.Kind != EventReloaded || s.Current().Rules[0].Name != "v4" || s.LastError() != nil {
		t.Fatalf("v4: %+v", ev)
	}
}

func wait(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(2 * time.Second):
		t.Fatal("no reload event within 2s")
		return Event{}
	}
}

// TestOptionalStore: the default policy path is followed while absent:
// the built-in allow-all policy is in force and re-reading the missing
// file is not an error; a file that appears is loaded by Reload (SIGHUP)
// at once, before the watcher's debounce, and a later removal keeps the
// last good policy.
func TestOptionalStore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	events := make(chan Event, 10)
	s, err := NewOptionalStore(path, nil, func(ev Event) { events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Current().IsAllowAll() || s.Hash() != "" {
		t.Fatalf("missing file: allow-all %v, hash %q", s.Current().IsAllowAll(), s.Hash())
	}
	if err := s.Reload(); err != nil || s.LastError() != nil {
		t.Fatalf("Reload of a still missing optional file: %v / %v", err, s.LastError())
	}
	os.WriteFile(path, []byte("rules:\n  - {name: late, effect: deny}\n"), 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := s.Current().Evaluate(Input{Principal: "u"}); d.Rule != "late" {
		t.Fatalf("after Reload: %+v", d)
	}
	if ev := wait(t, events); ev.Kind != EventReloaded || ev.Path != path {
		t.Fatalf("event %+v", ev)
	}
	os.Remove(path)
	if err := s.Reload(); err == nil {
		t.Error("removing the policy file was accepted silently")
	}
	if d := s.Current().Evaluate(Input{Principal: "u"}); d.Rule != "late" {
		t.Errorf("after removal the policy in force changed: %+v", d)
	}
}
