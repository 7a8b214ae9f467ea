package agentproxy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listen creates the agent socket at path (mode 0600 from its creation).
// Its directory must be private to us: a directory Listen creates is made
// 0700; one that exists must belong to us and allow nobody else in (no
// group or other permission bits). Listen never changes the mode of a
// directory it did not create: a socket placed in a shared directory
// such as /tmp is refused with an error naming the fix, rather than
// locking every other user out of that directory. It refuses to start
// over a socket a live agent answers on and removes a stale one.
func Listen(path string) (*net.UnixListener, error) {
	if err := privateDir(path); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("an agent is already listening on %s; stop it first or choose another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The umask makes the socket 0600 from its creation: no window in which
	// another user could connect before the chmod.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// SystemdListener returns the socket passed by systemd socket activation
// (LISTEN_PID/LISTEN_FDS, sd_listen_fds(3)), or nil when there is none.
func SystemdListener() (*net.UnixListener, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, nil
	}
	// Children must not inherit the activation variables.
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	const firstFD = 3 // SD_LISTEN_FDS_START
	unix.CloseOnExec(firstFD)
	f := os.NewFile(firstFD, "systemd-socket")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("systemd socket: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("systemd socket is not a unix socket")
	}
	return ul, nil
}

// privateDir makes the socket's directory (0700) when it is missing, or
// checks that the existing one is ours and closed to everyone else.
func privateDir(socket string) error {
	dir := filepath.Dir(socket)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		// Ours: the umask (0177 under the systemd unit) must not leave it
		// without the search bit.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("socket directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory; choose another --socket", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("socket directory %s belongs to uid %d, not to us (uid %d); choose another --socket", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("socket directory %s has mode %04o: other users could reach the socket, and warden-agent does not change a directory it did not create;"+
			" put the socket in a directory of its own (--socket %s) or run `chmod 700 %s` if the directory is yours alone",
			dir, unixMode(fi.Mode()), filepath.Join(dir, "warden", filepath.Base(socket)), dir)
	}
	return nil
}

// unixMode is m as chmod(1) writes it (sticky bit included).
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	return u
}
