package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// saveByRename writes content the way editors do: a new file renamed over
// the old one, so a watch on the old inode would see nothing.
func saveByRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "catalog.yaml")
	os.WriteFile(path, []byte("routes:\n"+route("old", "['*']")), 0o644)

	events := make(chan Event, 10)
	s, err := NewStore(path, nil, func(ev Event) { events <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Current().Routes[0].Name != "old" || s.Hash() == "" {
		t.Fatalf("initial %+v", s.Current())
	}

	start := time.Now()
	saveByRename(t, path, "routes:\n"+route("new", "['*']"))
	ev := waitEvent(t, events)
	if ev.Kind != EventReloaded || s.Current().Routes[0].Name != "new" {
		t.Fatalf("event %+v, current %s", ev, s.Current().Routes[0].Name)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reload took %v, want < 1s", d)
	}
	good := s.Hash()

	// A broken file is refused: the last good catalog stays in force and
	// the event carries the line and column.
	saveByRename(t, path, "routes:\n  - name: broken\n    hosts: ['*']\n    principle: deploy\n")
	ev = waitEvent(t, events)
	if ev.Kind != EventReloadFailed || ev.Err == nil || !strings.Contains(ev.Err.Error(), "catalog.yaml:4:5: unknown field \"principle\"") {
		t.Fatalf("event %+v", ev)
	}
	if s.Current().Routes[0].Name != "new" || s.Hash() != good {
		t.Fatalf("broken file replaced the catalog: %+v", s.Current())
	}
	if s.LastError() == nil {
		t.Error("LastError nil after a refused reload")
	}

	// SIGHUP path: explicit Reload after a fix.
	os.WriteFile(path+".tmp", []byte("routes:\n"+route("fixed", "['*']")), 0o644)
	os.Rename(path+".tmp", path)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Current().Routes[0].Name != "fixed" || s.LastError() != nil {
		t.Fatalf("after Reload: %s, %v", s.Current().Routes[0].Name, s.LastError())
	}
}

func TestStoreMissingFile(t *testing.T) {
	if _, err := NewStore(filepath.Join(t.TempDir(), "catalog.yaml"), nil, nil); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func waitEvent(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(2 * time.Second):
		t.Fatal("no reload event within 2s")
		return Event{}
	}
}
