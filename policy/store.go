package policy

import (
	"context"
	"log/slog"
	"time"

	"github.com/netkingdom/ops-warden/internal/filewatch"
)

// Event kinds.
const (
	EventReloaded     = filewatch.KindReloaded
	EventReloadFailed = filewatch.KindReloadFailed
)

// Event reports a reload of the policy file; the agent writes it to the
// audit log as policy.reloaded or policy.reload_failed.
type Event struct {
	// Kind is EventReloaded or EventReloadFailed.
	Kind string
	// Path is the policy file.
	Path string
	// Hash is the hex SHA-256 of the content read.
	Hash string
	// Err is why the version was refused (file:line:col: …).
	Err error
	// At is when the reload happened.
	At time.Time
}

// Store holds the policy in force and follows its file: a change (also a
// rename-on-save) is loaded within a second, and an invalid version is
// refused while the last good one stays in force. Current is safe for
// concurrent use and lock-free.
type Store struct {
	s *filewatch.Store[*Policy]
}

// NewStore loads path and watches it until Close. A missing or invalid
// file is an error (errors.Is(err, fs.ErrNotExist) for a missing one, so
// a caller using the default path can fall back to AllowAll). onEvent, if
// set, is called for every reload that found new content.
func NewStore(path string, logger *slog.Logger, onEvent func(Event)) (*Store, error) {
	s, err := filewatch.NewStore(context.Background(), filewatch.StoreOptions[*Policy]{
		Path:    path,
		Parse:   Parse,
		MaxSize: MaxFileSize,
		Logger:  logger,
		OnEvent: func(ev filewatch.Event) {
			if onEvent != nil {
				onEvent(Event{Kind: ev.Kind, Path: ev.Path, Hash: ev.Hash, Err: ev.Err, At: ev.At})
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &Store{s: s}, nil
}

// Current returns the policy in force. Callers must not modify it.
func (s *Store) Current() *Policy { return s.s.Current() }

// Hash returns the hex SHA-256 of the policy in force.
func (s *Store) Hash() string { return s.s.Hash() }

// LoadedAt returns when the policy in force was loaded.
func (s *Store) LoadedAt() time.Time { return s.s.LoadedAt() }

// LastError returns why the newest version of the file was refused, nil
// when the policy in force is the newest.
func (s *Store) LastError() error { return s.s.LastError() }

// Path returns the policy file.
func (s *Store) Path() string { return s.s.Path() }

// Reload loads the file now (SIGHUP); a refused version is returned as
// the error and the policy in force stays.
func (s *Store) Reload() error { return s.s.Reload() }

// Close stops watching the file.
func (s *Store) Close() error { return s.s.Close() }
