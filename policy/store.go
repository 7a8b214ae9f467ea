package policy

import (
	"context"
	"log/slog"

	"github.com/netkingdom/ops-warden/internal/filewatch"
)

// Event kinds.
const (
	EventReloaded     = filewatch.KindReloaded
	EventReloadFailed = filewatch.KindReloadFailed
)

// Event reports a reload of the policy file; the agent writes it to the
// audit log as policy.reloaded or policy.reload_failed.
type Event = filewatch.Event

// Store holds the policy in force and follows its file: a change (also a
// rename-on-save) is loaded within a second, and an invalid version is
// refused while the last good one stays in force (see filewatch.Store).
type Store = filewatch.Store[*Policy]

// NewStore loads path and watches it until Close. A missing or invalid
// file is an error (errors.Is(err, fs.ErrNotExist) for a missing one).
// onEvent, if set, is called for every reload that found new content.
func NewStore(path string, logger *slog.Logger, onEvent func(Event)) (*Store, error) {
	return filewatch.NewStore(context.Background(), filewatch.StoreOptions[*Policy]{
		Path:    path,
		Parse:   Parse,
		MaxSize: MaxFileSize,
		Logger:  logger,
		OnEvent: onEvent,
	})
}

// NewOptionalStore is NewStore for the default policy path, which need not
// exist: until a file appears there the built-in AllowAll policy is in
// force (Hash ""); a file created later is loaded within a second, or on
// Reload (SIGHUP). The directory must exist.
func NewOptionalStore(path string, logger *slog.Logger, onEvent func(Event)) (*Store, error) {
	return filewatch.NewStore(context.Background(), filewatch.StoreOptions[*Policy]{
		Path:    path,
		Parse:   Parse,
		MaxSize: MaxFileSize,
		Logger:  logger,
		OnEvent: onEvent,
		Missing: AllowAll,
	})
}
