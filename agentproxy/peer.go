package agentproxy

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Peer is the process at the other end of a connection. Pid and uid come
// from the kernel at connect time (SO_PEERCRED on Linux, LOCAL_PEERCRED and
// LOCAL_PEERPID on macOS, LOCAL_PEERCRED on FreeBSD); exe and the parent
// chain are read from the process table afterwards, best effort. A Pid of
// 0 means the platform could not say: every rule that needs the pid (hint
// correlation, descendant and executable checks) then fails closed.
type Peer struct {
	Pid int
	Uid int
	Exe string
	// Chain is the process and its ancestors, nearest first.
	Chain []Process
	// start is the peer process's start time read at connect time (0 when
	// unknown): with Pid it names the process that connected, so a hint
	// is matched without reading the process table on every request.
	start uint64
}

// Process is one link of a parent chain.
type Process struct {
	Pid  int
	Name string // the kernel's short command name (comm)
	Exe  string
}

// procInfo is what a process table tells about one running process.
type procInfo struct {
	Name string
	Exe  string // "" when the platform does not say (another user's process)
	Ppid int
	// Start identifies this process among all that ever had its pid: equal
	// for the same process, different after the pid is reused. Its unit is
	// the platform's (clock ticks on Linux, microseconds on the BSDs).
	Start uint64
}

// procTable looks running processes up by pid. The platform files provide
// systemProcs (/proc on Linux, sysctl kern.proc on macOS and FreeBSD);
// tests use a map. A Windows table (process snapshot APIs) fits the same
// two methods.
type procTable interface {
	proc(pid int) (procInfo, error)
	args(pid int) ([]string, error)
}

// errNoProcInfo is the answer of a platform that has no process table.
var errNoProcInfo = errors.New("process information is not available on this platform")

// maxChain bounds how far up the parent chain we walk for the audit
// record; maxAncestry bounds the descendant check.
const (
	maxChain    = 8
	maxAncestry = 64
)

// readPeer fills a Peer from the system's process table. procRoot is the
// /proc mount on Linux and is ignored elsewhere.
func readPeer(procRoot string, pid, uid int) Peer {
	p := Peer{Pid: pid, Uid: uid}
	p.Chain, p.start = walkChain(systemProcs(procRoot), pid)
	if len(p.Chain) > 0 {
		p.Exe = p.Chain[0].Exe
	}
	return p
}

// processChain returns pid and its ancestors up to init, nearest first.
func processChain(procRoot string, pid int) []Process {
	return chainOf(systemProcs(procRoot), pid)
}

// chainOf walks the parent pids in t from pid, nearest first; a process
// it cannot read ends the chain.
func chainOf(t procTable, pid int) []Process {
	chain, _ := walkChain(t, pid)
	return chain
}

// walkChain is chainOf that also returns the first process's start time.
func walkChain(t procTable, pid int) (chain []Process, start uint64) {
	for i := 0; i < maxChain && pid > 1; i++ {
		p, err := t.proc(pid)
		if err != nil {
			break
		}
		if i == 0 {
			start = p.Start
		}
		chain = append(chain, Process{Pid: pid, Name: p.Name, Exe: p.Exe})
		pid = p.Ppid
	}
	return chain, start
}

// startTime returns a process's start time; with the pid it identifies a
// process even after the pid is reused.
func startTime(procRoot string, pid int) (uint64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("no pid")
	}
	p, err := systemProcs(procRoot).proc(pid)
	if err != nil {
		return 0, err
	}
	return p.Start, nil
}

// cmdline returns a process's argv, or nil when it cannot be read.
func cmdline(procRoot string, pid int) []string {
	if pid <= 0 {
		return nil
	}
	argv, err := systemProcs(procRoot).args(pid)
	if err != nil {
		return nil
	}
	return argv
}

// isDescendant reports whether pid is a child, grandchild, … of ancestor
// in t. A process that cannot be read, a chain longer than maxAncestry,
// an unknown pid (0) or init as the ancestor all answer false: the
// check fails closed.
func isDescendant(t procTable, pid, ancestor int) bool {
	if pid <= 1 || ancestor <= 1 || pid == ancestor {
		return false
	}
	for i := 0; i < maxAncestry && pid > 1; i++ {
		p, err := t.proc(pid)
		if err != nil {
			return false
		}
		if p.Ppid == ancestor {
			return true
		}
		if p.Ppid == pid {
			return false // a table that loops
		}
		pid = p.Ppid
	}
	return false
}

// descendantOf is isDescendant on the system's process table.
func descendantOf(procRoot string, pid, ancestor int) bool {
	return isDescendant(systemProcs(procRoot), pid, ancestor)
}

// sameExecutable reports whether peerExe is the file this program runs
// from, compared by device and inode (so a symlink or a second path to
// the same file counts, a copy does not). An empty or unreadable path
// answers false.
//
// The path is resolved when this is called, after the peer connected: on
// Linux prefer runsThisExecutable, which asks the kernel for the file the
// peer process maps.
func sameExecutable(peerExe string) bool {
	if peerExe == "" {
		return false
	}
	self, err := selfExecutable()
	if err != nil {
		return false
	}
	fi, err := os.Stat(peerExe)
	if err != nil {
		return false
	}
	return os.SameFile(self, fi)
}

// runsThisExecutable reports whether process pid runs from the same file
// as this program. On Linux it stats /proc/PID/exe, which the kernel
// resolves to the mapped file even if its path was renamed or replaced;
// elsewhere it compares the path the process table gives.
func runsThisExecutable(procRoot string, pid int) bool {
	if pid <= 1 {
		return false
	}
	self, err := selfExecutable()
	if err != nil {
		return false
	}
	return runsFile(procRoot, pid, self)
}

// runsFile reports whether process pid runs the file want (device and
// inode), as runsThisExecutable does for this program's own.
func runsFile(procRoot string, pid int, want os.FileInfo) bool {
	if pid <= 1 || want == nil {
		return false
	}
	fi, err := statExecutable(procRoot, pid)
	if err != nil {
		return false
	}
	return os.SameFile(want, fi)
}

// ChainString renders the chain as `ssh(4242) ← git(4240) ← zsh(100)`.
func (p Peer) ChainString() string {
	parts := make([]string, len(p.Chain))
	for i, c := range p.Chain {
		parts[i] = fmt.Sprintf("%s(%d)", c.Name, c.Pid)
	}
	return strings.Join(parts, " ← ")
}

// isNoLogin reports whether an ssh argv will not log in. ssh evaluates Match
// exec also for -G (print the configuration) and -O (a control command to
// a multiplexing master); neither logs in, so their hint must not mint a
// certificate. It follows ssh.c's option parsing: flags that take an
// argument end a cluster (ssh's getopt string), and options are parsed
// again after the destination, until the command begins.
func isNoLogin(argv []string) bool {
	const withArg = "BbcDEeFIiJLlmOoPpQRSWw"
	words := 0
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			return false
		}
		if len(a) < 2 || a[0] != '-' {
			if words++; words > 1 {
				return false // the remote command begins
			}
			continue
		}
		for j := 1; j < len(a); j++ {
			if a[j] == 'G' || a[j] == 'O' {
				return true
			}
			if strings.IndexByte(withArg, a[j]) >= 0 {
				if j == len(a)-1 {
					i++ // the argument is the next word
				}
				break
			}
		}
	}
	return false
}
