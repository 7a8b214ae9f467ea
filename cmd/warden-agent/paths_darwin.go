package main

import "path/filepath"

// fallbackSocketPath on macOS, which has no $XDG_RUNTIME_DIR:
// ~/Library/Caches/warden/agent.sock. The agent creates the warden
// directory 0700. It is the same path in every session of the user (unlike
// $TMPDIR, which ssh logins into the Mac often lack), outside Time Machine
// backups, short enough for the 104-byte socket path limit, and without
// the space of "Application Support" that every SSH_AUTH_SOCK line would
// have to quote. The launchd plist names the same path.
func fallbackSocketPath() string {
	return filepath.Join(homeDir(), "Library", "Caches", "warden", "agent.sock")
}
