package harden

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procctl(2) constants from sys/procctl.h and sys/wait.h.
const (
	pPID                = 0 // P_PID
	procTraceCtl        = 7 // PROC_TRACE_CTL
	procTraceCtlDisable = 2 // PROC_TRACE_CTL_DISABLE
)

// disableTracing calls procctl(P_PID, getpid(), PROC_TRACE_CTL,
// PROC_TRACE_CTL_DISABLE): ptrace attach, ktrace and core dumps of this
// process are refused, also to its own user.
func disableTracing() error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		// id_t is 64 bits; how it is split into argument words differs
		// between the 32-bit ABIs, and none of them is tested.
		return errors.New("harden: procctl is only wired for 64-bit FreeBSD")
	}
	arg := int32(procTraceCtlDisable)
	_, _, errno := unix.Syscall6(unix.SYS_PROCCTL, pPID, uintptr(os.Getpid()), procTraceCtl, uintptr(unsafe.Pointer(&arg)), 0, 0)
	if errno != 0 {
		return fmt.Errorf("harden: procctl(PROC_TRACE_CTL, DISABLE): %w", errno)
	}
	return nil
}
