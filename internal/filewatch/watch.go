// Package filewatch reloads a configuration file when it changes: it
// watches the file's directory with fsnotify (editors save by writing a new
// file and renaming it over the old one, which a watch on the file itself
// would lose), debounces bursts of events, and offers an explicit reload
// for SIGHUP. Store builds on it to keep the last good version of a parsed
// file in force while a broken one is refused.
//
// The catalog and the policy both use it; they may not import each other,
// so the shared machinery lives here.
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a Watcher waits after the last event before
// reloading: long enough to see an editor's write-rename-chmod burst as
// one change, short enough that a change is in force well within a second.
const DefaultDebounce = 100 * time.Millisecond

// Watcher calls a function when a file changes. Its one goroutine is
// started by Watch and stopped by Close or by cancelling the context given
// to Watch; OnChange runs on that goroutine, so calls never overlap.
type Watcher struct {
	path     string // cleaned, absolute
	base     string
	symlink  bool // path was a symlink at start: any event in dir may retarget it
	debounce time.Duration
	onChange func()
	logger   *slog.Logger

	fsw    *fsnotify.Watcher
	kick   chan struct{} // buffered(1): coalesced explicit reloads
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Options configures Watch.
type Options struct {
	// OnChange is called after the file (or its directory entry) changed
	// and no further event arrived for Debounce. Required.
	OnChange func()
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	// Logger receives watch errors; nil discards them.
	Logger *slog.Logger
}

// Watch starts watching path's directory. The directory must exist; the
// file itself may come and go.
func Watch(ctx context.Context, path string, opts Options) (*Watcher, error) {
	if opts.OnChange == nil {
		return nil, errors.New("filewatch: OnChange is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if err := fsw.Add(filepath.Dir(abs)); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watch %s: directory %s: %w", path, filepath.Dir(abs), err)
	}
	fi, err := os.Lstat(abs)
	w := &Watcher{
		path:     abs,
		base:     filepath.Base(abs),
		symlink:  err == nil && fi.Mode()&os.ModeSymlink != 0,
		debounce: opts.Debounce,
		onChange: opts.OnChange,
		logger:   opts.Logger,
		fsw:      fsw,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if w.debounce <= 0 {
		w.debounce = DefaultDebounce
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return w, nil
}

// Reload asks for OnChange to run now (on the watcher's goroutine), as
// SIGHUP does. Several requests before it runs count as one.
func (w *Watcher) Reload() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Close stops the watcher and waits for its goroutine (and any OnChange in
// progress) to return. It is safe to call more than once.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		w.cancel()
		<-w.done
		err = w.fsw.Close()
	})
	return err
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflow loses events: reload to be sure we are current.
			w.logger.Warn("file watch error", "path", w.path, "err", err)
			timer.Reset(w.debounce)
		case <-w.kick:
			timer.Stop()
			w.onChange()
		case <-timer.C:
			w.onChange()
		}
	}
}

// relevant reports whether an event in the directory may have changed the
// file. Kubernetes-style config mounts swap a symlinked directory, so for
// a symlinked path every event counts; the Store ignores reloads that find
// the same content.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if w.symlink {
		return true
	}
	return filepath.Base(ev.Name) == w.base && ev.Op != fsnotify.Chmod
}
