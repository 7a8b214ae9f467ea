package agentproxy

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// peerCred reads SO_PEERCRED: the pid and uid of the process at the other
// end, as the kernel recorded them at connect time. The pid is 0 when the
// peer is in another pid namespace.
func peerCred(c *net.UnixConn) (pid, uid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, credErr
	}
	return int(cred.Pid), int(cred.Uid), nil
}

// procfs is the Linux process table: /proc (or another mount of it).
type procfs struct{ root string }

func systemProcs(procRoot string) procTable {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return procfs{root: procRoot}
}

func (t procfs) path(pid int, name string) string {
	return filepath.Join(t.root, strconv.Itoa(pid), name)
}

func (t procfs) proc(pid int) (procInfo, error) {
	data, err := readBounded(t.path(pid, "stat"))
	if err != nil {
		return procInfo{}, err
	}
	name, ppid, start, err := parseStat(data)
	if err != nil {
		return procInfo{}, err
	}
	// Another user's exe link is unreadable: the name stays, exe is "".
	exe, _ := os.Readlink(t.path(pid, "exe"))
	return procInfo{Name: name, Exe: exe, Ppid: ppid, Start: start}, nil
}

func (t procfs) args(pid int) ([]string, error) {
	data, err := readBounded(t.path(pid, "cmdline"))
	if err != nil {
		return nil, err
	}
	return nulStrings(data), nil
}

// readBounded reads at most maxProcRecord bytes of a /proc file.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxProcRecord))
}

// statExecutable stats the file process pid maps as its program: the
// kernel resolves /proc/PID/exe even after a rename or a replacement.
func statExecutable(procRoot string, pid int) (os.FileInfo, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return os.Stat(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
}

// selfExecutable is the file this program runs from, read once: through
// /proc/self/exe, so an upgrade that replaces the binary on disk does not
// change the answer.
var selfExecutable = sync.OnceValues(func() (os.FileInfo, error) {
	return os.Stat("/proc/self/exe")
})

// peerIdentitySource is reported in status.
const peerIdentitySource = "SO_PEERCRED uid and pid (pid 0 from another pid namespace), /proc for exe and parents"
