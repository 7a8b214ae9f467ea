package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// disableTracing calls ptrace(PT_DENY_ATTACH): later attach attempts
// (lldb, dtrace's pid provider, task_for_pid by a debugger) fail, and a
// process that is already being traced exits.
func disableTracing() error {
	if err := unix.PtraceDenyAttach(); err != nil {
		return fmt.Errorf("harden: ptrace(PT_DENY_ATTACH): %w", err)
	}
	return nil
}
