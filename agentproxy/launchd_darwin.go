package agentproxy

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// launch_activate_socket(3) lives in libSystem. Go links libSystem on
// macOS without cgo (as golang.org/x/sys/unix does): the dynamic import
// below, a jump trampoline in launchd_darwin.s and the runtime's
// syscall.syscall, which calls a C function on the system stack.

//go:cgo_import_dynamic libc_launch_activate_socket launch_activate_socket "/usr/lib/libSystem.B.dylib"
//go:cgo_import_dynamic libc_free free "/usr/lib/libSystem.B.dylib"

var (
	libc_launch_activate_socket_trampoline_addr uintptr
	libc_free_trampoline_addr                   uintptr
)

//go:linkname syscall_syscall syscall.syscall
func syscall_syscall(fn, a1, a2, a3 uintptr) (r1, r2 uintptr, err syscall.Errno)

// LaunchdListener returns the socket launchd created for this job under
// the Sockets key name (the launchd.plist(5) Sockets dictionary), or nil
// when the agent was not started by launchd or the job has no such socket.
func LaunchdListener(name string) (*net.UnixListener, error) {
	cname, err := syscall.BytePtrFromString(name)
	if err != nil {
		return nil, err
	}
	var fds *int32
	var cnt uintptr
	r1, _, _ := syscall_syscall(libc_launch_activate_socket_trampoline_addr,
		uintptr(unsafe.Pointer(cname)), uintptr(unsafe.Pointer(&fds)), uintptr(unsafe.Pointer(&cnt)))
	runtime.KeepAlive(cname)
	switch e := syscall.Errno(int32(r1)); e {
	case 0:
	case syscall.ESRCH, syscall.ENOENT:
		// ESRCH: not a launchd job; ENOENT: no socket of that name.
		return nil, nil
	default:
		return nil, fmt.Errorf("launchd socket %q: launch_activate_socket: %w", name, e)
	}
	if fds == nil || cnt == 0 {
		return nil, nil
	}
	got := make([]int, cnt)
	for i, fd := range unsafe.Slice(fds, cnt) {
		got[i] = int(fd)
	}
	syscall_syscall(libc_free_trampoline_addr, uintptr(unsafe.Pointer(fds)), 0, 0)
	// A path socket has one descriptor; close any other.
	for _, fd := range got[1:] {
		syscall.Close(fd)
	}
	syscall.CloseOnExec(got[0])
	f := os.NewFile(uintptr(got[0]), "launchd-socket")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("launchd socket %q: %w", name, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("launchd socket %q is not a unix socket", name)
	}
	return ul, nil
}
