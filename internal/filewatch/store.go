package filewatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Event kinds passed to StoreOptions.OnEvent.
const (
	KindReloaded     = "reloaded"
	KindReloadFailed = "reload_failed"
)

// Event reports one reload: a new version in force, or a refused one.
type Event struct {
	// Kind is KindReloaded or KindReloadFailed.
	Kind string
	// Path is the file.
	Path string
	// Hash is the hex SHA-256 of the file content read (empty when the
	// file could not be read).
	Hash string
	// Err is why a version was refused (positioned file:line:col when the
	// parser knows where); nil for KindReloaded.
	Err error
	// At is when the reload happened.
	At time.Time
}

// StoreOptions configures NewStore.
type StoreOptions[T any] struct {
	// Path is the file to load and watch.
	Path string
	// Parse turns the file's content into a validated value; an error
	// refuses the version. path is for messages.
	Parse func(path string, data []byte) (T, error)
	// MaxSize bounds how much of the file is read; larger files are
	// refused. Required.
	MaxSize int64
	// OnEvent, if set, is called after every reload that found new
	// content (on the goroutine that reloaded; keep it short).
	OnEvent func(Event)
	// Logger receives reload results; nil discards them.
	Logger *slog.Logger
	// Debounce is passed to Watch.
	Debounce time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Missing, if set, makes the file optional: while it has never
	// existed the value in force is Missing() (with an empty Hash), and
	// once it appears it is loaded like any change. A file that existed
	// and is removed still keeps its last good version in force.
	Missing func() T
}

// version is one loaded file.
type version[T any] struct {
	value    T
	hash     string
	loadedAt time.Time
}

// Store holds the last good version of a file and replaces it when the
// file changes and the new content parses. Current is lock-free (an atomic
// pointer) because the agent reads it on every connection; loads are
// serialised by loadMu.
type Store[T any] struct {
	opts   StoreOptions[T]
	logger *slog.Logger
	cur    atomic.Pointer[version[T]]
	w      *Watcher

	loadMu sync.Mutex // serialises reload; guards the fields below
	// lastErr is the error of the newest refused version, nil once a good
	// version loads again.
	lastErr error
	// failedHash is the content lastErr was about: the same broken content
	// seen again is not reported twice.
	failedHash string
}

// NewStore loads the file (an error if it is missing or invalid: the
// caller configured this path and should hear about it), then watches it.
// Close stops the watch.
func NewStore[T any](ctx context.Context, opts StoreOptions[T]) (*Store[T], error) {
	if opts.Parse == nil || opts.MaxSize <= 0 {
		return nil, errors.New("filewatch: Parse and MaxSize are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store[T]{opts: opts, logger: opts.Logger}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	data, hash, err := s.read()
	switch {
	case err != nil && opts.Missing != nil && errors.Is(err, fs.ErrNotExist):
		s.cur.Store(&version[T]{value: opts.Missing(), loadedAt: opts.Now()})
	case err != nil:
		return nil, err
	default:
		v, err := opts.Parse(opts.Path, data)
		if err != nil {
			return nil, err
		}
		s.cur.Store(&version[T]{value: v, hash: hash, loadedAt: opts.Now()})
	}
	s.w, err = Watch(ctx, opts.Path, Options{
		OnChange: func() { _ = s.Reload() },
		Debounce: opts.Debounce,
		Logger:   s.logger,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the version in force.
func (s *Store[T]) Current() T { return s.cur.Load().value }

// Hash returns the hex SHA-256 of the version in force; "" while an
// optional file has not appeared.
func (s *Store[T]) Hash() string { return s.cur.Load().hash }

// LoadedAt returns when the version in force was loaded.
func (s *Store[T]) LoadedAt() time.Time { return s.cur.Load().loadedAt }

// Path returns the watched file.
func (s *Store[T]) Path() string { return s.opts.Path }

// LastError returns why the newest version of the file was refused, or nil
// when the version in force is the newest.
func (s *Store[T]) LastError() error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	return s.lastErr
}

// Reload reads the file now (SIGHUP). Unchanged content is a no-op; a
// refused version leaves the one in force and is returned as the error.
func (s *Store[T]) Reload() error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	return s.reloadLocked()
}

func (s *Store[T]) reloadLocked() error {
	data, hash, err := s.read()
	if err != nil && s.cur.Load().hash == "" && errors.Is(err, fs.ErrNotExist) {
		// An optional file that still does not exist: nothing changed.
		s.lastErr, s.failedHash = nil, ""
		return nil
	}
	if err == nil && hash == s.cur.Load().hash {
		// Back to the content in force (or an event that changed nothing).
		s.lastErr, s.failedHash = nil, ""
		return nil
	}
	// The same refused state again (same broken content, or the same
	// missing file) was already reported: do not log and audit it twice.
	if s.lastErr != nil && hash == s.failedHash && (hash != "" || err != nil && err.Error() == s.lastErr.Error()) {
		return s.lastErr
	}
	if err == nil {
		var v T
		if v, err = s.opts.Parse(s.opts.Path, data); err == nil {
			now := s.opts.Now()
			s.cur.Store(&version[T]{value: v, hash: hash, loadedAt: now})
			s.lastErr, s.failedHash = nil, ""
			s.logger.Info("configuration reloaded", "path", s.opts.Path, "sha256", hash)
			s.emit(Event{Kind: KindReloaded, Path: s.opts.Path, Hash: hash, At: now})
			return nil
		}
	}
	s.lastErr, s.failedHash = err, hash
	s.logger.Warn("configuration reload refused; previous version stays in force",
		"path", s.opts.Path, "sha256", hash, "err", err)
	s.emit(Event{Kind: KindReloadFailed, Path: s.opts.Path, Hash: hash, Err: err, At: s.opts.Now()})
	return err
}

func (s *Store[T]) emit(ev Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

// read returns the file's content and hash, bounded by MaxSize.
func (s *Store[T]) read() ([]byte, string, error) {
	f, err := os.Open(s.opts.Path)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", s.opts.Path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, s.opts.MaxSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", s.opts.Path, err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if int64(len(data)) > s.opts.MaxSize {
		return nil, hash, fmt.Errorf("read %s: larger than %d bytes", s.opts.Path, s.opts.MaxSize)
	}
	return data, hash, nil
}

// Close stops watching. Current stays usable.
func (s *Store[T]) Close() error { return s.w.Close() }
