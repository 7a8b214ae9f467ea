//go:build !darwin

package agentproxy

import "net"

// LaunchdListener is nil outside macOS: only launchd passes sockets this
// way.
func LaunchdListener(string) (*net.UnixListener, error) { return nil, nil }
