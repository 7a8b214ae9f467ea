// Package harden keeps other processes, including ones of the same user,
// out of the agent's memory: no debugger attach, no /proc/PID/mem, no core
// file. It is what ssh-agent does at start (platform_disable_tracing and
// a zero RLIMIT_CORE in OpenSSH's ssh-agent.c).
package harden

import (
	"fmt"
	"syscall"
)

// Process hardens the running process. Call it first thing in a process
// that holds keys; an error means the protection is not in place.
func Process() error {
	// Soft and hard limit 0: no core file, and the process cannot raise it
	// again.
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("harden: RLIMIT_CORE 0: %w", err)
	}
	return disableTracing()
}
