package agentproxy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerCred reads LOCAL_PEERCRED on FreeBSD: the uid from struct xucred and
// the pid from its cr_pid, which FreeBSD 13 and later fill in (the union
// that ends the struct, x/sys's unnamed last field). On an older kernel
// the pid is 0 and every rule that needs it fails closed.
func peerCred(c *net.UnixConn) (pid, uid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Xucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, fmt.Errorf("LOCAL_PEERCRED: %w", credErr)
	}
	if cred.Version != 0 { // XUCRED_VERSION
		return 0, 0, fmt.Errorf("LOCAL_PEERCRED: unknown xucred version %d", cred.Version)
	}
	// cr_pid is the first member of the pointer-sized union at the end.
	off := unsafe.Sizeof(*cred) - unsafe.Sizeof(uintptr(0))
	pid = int(*(*int32)(unsafe.Add(unsafe.Pointer(cred), off)))
	if pid < 0 {
		pid = 0
	}
	return pid, int(cred.Uid), nil
}

// sysctlProcs is the FreeBSD process table: sysctl kern.proc.pid (struct
// kinfo_proc) for name, parent and start time, kern.proc.pathname for the
// executable, kern.proc.args for argv. procRoot has no meaning here
// (procfs is rarely mounted on FreeBSD).
type sysctlProcs struct{}

func systemProcs(string) procTable { return sysctlProcs{} }

func (sysctlProcs) proc(pid int) (procInfo, error) {
	if pid <= 0 {
		return procInfo{}, fmt.Errorf("no pid")
	}
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return procInfo{}, errNoProcInfo // only the 64-bit kinfo_proc layout is known
	}
	b, err := unix.SysctlRaw("kern.proc.pid", pid)
	if err != nil {
		return procInfo{}, fmt.Errorf("kern.proc.pid.%d: %w", pid, err)
	}
	got, p, err := parseKinfoProcFreeBSD(b)
	if err != nil {
		return procInfo{}, fmt.Errorf("kern.proc.pid.%d: %w", pid, err)
	}
	if got != pid {
		return procInfo{}, fmt.Errorf("kern.proc.pid.%d: no such process", pid)
	}
	if path, err := unix.SysctlRaw("kern.proc.pathname", pid); err == nil {
		p.Exe = cString(path)
	}
	return p, nil
}

func (sysctlProcs) args(pid int) ([]string, error) {
	b, err := unix.SysctlRaw("kern.proc.args", pid)
	if err != nil {
		return nil, fmt.Errorf("kern.proc.args.%d: %w", pid, err)
	}
	if len(b) > maxProcRecord {
		b = b[:maxProcRecord]
	}
	return nulStrings(b), nil
}

// statExecutable stats the path kern.proc.pathname gives for pid's
// program (the kernel's name cache: a path, looked up again now).
func statExecutable(_ string, pid int) (os.FileInfo, error) {
	path, err := unix.SysctlRaw("kern.proc.pathname", pid)
	if err != nil {
		return nil, err
	}
	return os.Stat(cString(path))
}

// selfExecutable is the file this program runs from, read once at first
// use.
var selfExecutable = sync.OnceValues(func() (os.FileInfo, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, err
	}
	return os.Stat(exe)
})

// peerIdentitySource is reported in status.
const peerIdentitySource = "LOCAL_PEERCRED uid and cr_pid (pid 0 before FreeBSD 13), sysctl kern.proc for exe and parents"
