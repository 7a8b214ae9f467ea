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
