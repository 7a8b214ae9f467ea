package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Lock is an exclusive advisory lock (flock) on a file, held until Unlock
// or until the process exits: the kernel drops it with the last
// descriptor, so a crashed holder never leaves a stale lock behind. The
// file holds the holder's pid, for the message another process gets.
type Lock struct {
	f    *os.File
	path string
}

// LockedError is LockFile's error when another process holds the lock.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid as the file names it; 0 if unknown
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is held by process %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is held by another process", e.Path)
}

// maxLockFileSize bounds how much of a lock file is read for the pid.
const maxLockFileSize = 64

// LockFile takes the lock on path without waiting, creating the file (0600)
// and its directory (0700) if needed, and writes this process's pid into
// it. When another process holds it, the error is a *LockedError naming
// that process.
func LockFile(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Path: path, PID: holderPID(f)}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// holderPID reads the pid the holder wrote. The holder writes it right
// after taking the lock, so an empty file is read again for a moment.
func holderPID(f *os.File) int {
	for try := 0; try < 20; try++ {
		b := make([]byte, maxLockFileSize)
		n, err := f.ReadAt(b, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0
		}
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:n]))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(25 * time.Millisecond)
	}
	return 0
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// Unlock releases the lock. The file stays: removing it would let a
// process that opened it just before lock a file nobody else sees.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
