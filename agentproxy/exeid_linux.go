package agentproxy

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// fileID identifies a file by device and inode.
type fileID struct{ Dev, Ino uint64 }

// executableID is the file a process runs, from /proc/PID/exe (stat
// follows the kernel's link to the mapped file, even a deleted one).
func executableID(procRoot string, pid int) (fileID, error) {
	fi, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	if err != nil {
		return fileID{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}
