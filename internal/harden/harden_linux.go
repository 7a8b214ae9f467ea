package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// disableTracing clears the dumpable flag (prctl(2) PR_SET_DUMPABLE): the
// kernel then refuses ptrace attach and /proc/PID/mem, maps, environ and
// fd to every process without CAP_SYS_PTRACE, same uid included, and
// writes no core file. execve resets the flag for programs the agent runs.
func disableTracing() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("harden: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
