package main

import (
	"os"
	"path/filepath"
)

// Paths follow the XDG base directory specification; each falls back to
// a directory under $HOME when its variable is unset.

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}

func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" && filepath.IsAbs(d) {
		return d
	}
	return filepath.Join(homeDir(), fallback)
}

// defaultSocketPath is $XDG_RUNTIME_DIR/warden/agent.sock, else the
// platform's per-user directory (fallbackSocketPath): ~/.warden/agent.sock
// on Linux and FreeBSD, ~/Library/Caches/warden/agent.sock on macOS.
func defaultSocketPath() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "warden", "agent.sock")
	}
	return fallbackSocketPath()
}

// stateDir holds the local CA key and the audit log.
func stateDir() string { return filepath.Join(xdgDir("XDG_STATE_HOME", ".local/state"), "warden") }

// configDir holds agent.yaml, catalog.yaml and policy.yaml.
func configDir() string { return filepath.Join(xdgDir("XDG_CONFIG_HOME", ".config"), "warden") }
