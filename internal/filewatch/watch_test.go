package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatcherDebouncesAndReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yaml")
	os.WriteFile(path, []byte("1"), 0o644)
	var n atomic.Int32
	changed := make(chan struct{}, 10)
	w, err := Watch(context.Background(), path, Options{OnChange: func() { n.Add(1); changed <- struct{}{} }, Debounce: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// A burst of writes is one change.
	for i := range 5 {
		os.WriteFile(path, []byte{byte('a' + i)}, 0o644)
	}
	waitChange(t, changed)
	time.Sleep(150 * time.Millisecond) // let any stray second call surface
	if got := n.Load(); got != 1 {
		t.Errorf("burst gave %d calls, want 1", got)
	}

	// Other files in the directory do not count.
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644)
	select {
	case <-changed:
		t.Error("change reported for another file")
	case <-time.After(150 * time.Millisecond):
	}

	// Explicit reload (SIGHUP).
	w.Reload()
	waitChange(t, changed)

	// Close is idempotent and stops the goroutine.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.WriteFile(path, []byte("after"), 0o644)
	select {
	case <-changed:
		t.Error("change after Close")
	case <-time.After(150 * time.Millisecond):
	}
}

func TestWatcherStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, filepath.Join(t.TempDir(), "f"), Options{OnChange: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-w.done:
	case <-time.After(time.Second):
		t.Fatal("goroutine did not stop on cancel")
	}
	w.Close()
}

func waitChange(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no change within 2s")
	}
}

func TestStoreKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path, []byte("good-1"), 0o644)
	parse := func(_ string, b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			return "", errors.New("f:1:1: bad content")
		}
		return string(b), nil
	}
	var events []Event
	s, err := NewStore(context.Background(), StoreOptions[string]{Path: path, Parse: parse, MaxSize: 16, OnEvent: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.w.Close() // drive reloads by hand: this test is about the store

	os.WriteFile(path, []byte("bad"), 0o644)
	if err := s.Reload(); err == nil || s.Current() != "good-1" {
		t.Fatalf("bad: %v %q", err, s.Current())
	}
	s.Reload() // same broken content: not reported twice
	os.WriteFile(path, []byte("much too large for the limit"), 0o644)
	s.Reload()
	os.Remove(path)
	s.Reload()
	s.Reload()
	os.WriteFile(path, []byte("good-2"), 0o644)
	if err := s.Reload(); err != nil || s.Current() != "good-2" || s.LastError() != nil {
		t.Fatalf("good-2: %v %q", err, s.Current())
	}
	s.Reload() // unchanged: no event
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	want := "reload_failed reload_failed reload_failed reloaded"
	if strings.Join(kinds, " ") != want {
		t.Errorf("events %v, want %s", kinds, want)
	}
}

func TestNewStoreErrors(t *testing.T) {
	parse := func(_ string, b []byte) (string, error) { return "", errors.New("bad") }
	dir := t.TempDir()
	if _, err := NewStore(context.Background(), StoreOptions[string]{Path: filepath.Join(dir, "missing"), Parse: parse, MaxSize: 10}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	if _, err := NewStore(context.Background(), StoreOptions[string]{Path: filepath.Join(dir, "f"), Parse: parse, MaxSize: 10}); err == nil {
		t.Error("invalid file at start must be an error")
	}
}
