package main

import "golang.org/x/sys/unix"

// disableTracing makes the agent process not dumpable, as ssh-agent does
// (platform_disable_tracing): no core file, and no other process of the
// same user may ptrace it or read its memory, which holds the ephemeral
// signing keys.
func disableTracing() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
