package agentproxy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
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
	data, err := readStat(t.path(pid, "stat"))
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

// readBounded reads at most maxProcRecord bytes of a /proc file. It uses
// the system calls directly: os.Open would also try to register the file
// with the network poller, which doubled the cost of the /proc reads made
// for every connection.
func readBounded(path string) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for len(buf) < maxProcRecord {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), maxProcRecord-len(buf)))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}

// readStat reads a /proc/PID/stat file. The kernel produces it whole in
// one read (a single seq_file record of a few hundred bytes), so a read
// that does not fill the buffer is all of it: three system calls, not
// four, for each process of every connection's parent chain. A file that
// fills the buffer is read on by readBounded.
func readStat(path string) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	buf := make([]byte, 1024)
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	switch {
	case err == unix.EINTR || (err == nil && n == len(buf)):
		return readBounded(path)
	case err != nil:
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return buf[:n], nil
}

func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
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
