package agentproxy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// peerCred reads the peer's credentials on macOS: the uid from
// LOCAL_PEERCRED (struct xucred), the pid from LOCAL_PEERPID, both as the
// kernel recorded them at connect time. A pid the kernel does not give is
// returned as 0, and every rule that needs it fails closed.
func peerCred(c *net.UnixConn) (pid, uid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Xucred
	var credErr, pidErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		pid, pidErr = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	}); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, fmt.Errorf("LOCAL_PEERCRED: %w", credErr)
	}
	if cred.Version != 0 { // XUCRED_VERSION
		return 0, 0, fmt.Errorf("LOCAL_PEERCRED: unknown xucred version %d", cred.Version)
	}
	if pidErr != nil || pid < 0 {
		pid = 0
	}
	return pid, int(cred.Uid), nil
}

// sysctlProcs is the macOS process table: sysctl kern.proc.pid for name,
// parent and start time, kern.procargs2 for the executable and argv (the
// latter only for the user's own processes, as ps shows them). procRoot
// has no meaning here.
type sysctlProcs struct{}

func systemProcs(string) procTable { return sysctlProcs{} }

func (sysctlProcs) proc(pid int) (procInfo, error) {
	if pid <= 0 {
		return procInfo{}, fmt.Errorf("no pid")
	}
	k, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return procInfo{}, fmt.Errorf("kern.proc.pid.%d: %w", pid, err)
	}
	if int(k.Proc.P_pid) != pid {
		return procInfo{}, fmt.Errorf("kern.proc.pid.%d: no such process", pid)
	}
	p := procInfo{
		Name:  cString(k.Proc.P_comm[:]),
		Ppid:  int(k.Eproc.Ppid),
		Start: uint64(k.Proc.P_starttime.Sec)*1_000_000 + uint64(k.Proc.P_starttime.Usec),
	}
	if b, err := unix.SysctlRaw("kern.procargs2", pid); err == nil {
		p.Exe, _, _ = parseProcArgs2(bound(b))
	}
	return p, nil
}

func (sysctlProcs) args(pid int) ([]string, error) {
	b, err := unix.SysctlRaw("kern.procargs2", pid)
	if err != nil {
		return nil, fmt.Errorf("kern.procargs2.%d: %w", pid, err)
	}
	_, argv, err := parseProcArgs2(bound(b))
	return argv, err
}

func bound(b []byte) []byte {
	if len(b) > maxProcRecord {
		return b[:maxProcRecord]
	}
	return b
}

// statExecutable stats the path the process table gives for pid's
// program. Unlike Linux's /proc/PID/exe this is a path, looked up again
// now: a file renamed into its place since exec answers for it.
func statExecutable(_ string, pid int) (os.FileInfo, error) {
	p, err := sysctlProcs{}.proc(pid)
	if err != nil {
		return nil, err
	}
	if p.Exe == "" {
		return nil, fmt.Errorf("pid %d: executable unknown", pid)
	}
	return os.Stat(p.Exe)
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
const peerIdentitySource = "LOCAL_PEERCRED uid, LOCAL_PEERPID pid, sysctl kern.proc and kern.procargs2 for exe and parents"
