//go:build !darwin

package main

import "path/filepath"

// fallbackSocketPath when $XDG_RUNTIME_DIR is unset: ~/.warden/agent.sock
// (the agent creates ~/.warden 0700).
func fallbackSocketPath() string { return filepath.Join(homeDir(), ".warden", "agent.sock") }
