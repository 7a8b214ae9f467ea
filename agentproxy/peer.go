package agentproxy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Peer is the process at the other end of a connection, read best effort
// from /proc: pid and uid come from the kernel (SO_PEERCRED) and are
// reliable; exe and the parent chain are for the audit record.
type Peer struct {
	Pid int
	Uid int
	Exe string
	// Chain is the process and its ancestors, nearest first.
	Chain []Process
}

// Process is one link of a parent chain.
type Process struct {
	Pid  int
	Name string // comm
	Exe  string
}

// maxChain bounds how far up the parent chain we walk.
const maxChain = 8

// readPeer fills a Peer from /proc.
func readPeer(procRoot string, pid, uid int) Peer {
	p := Peer{Pid: pid, Uid: uid}
	p.Chain = processChain(procRoot, pid)
	if len(p.Chain) > 0 {
		p.Exe = p.Chain[0].Exe
	}
	return p
}

// processChain returns pid and its ancestors up to init, nearest first.
func processChain(procRoot string, pid int) []Process {
	var chain []Process
	for i := 0; i < maxChain && pid > 1; i++ {
		name, ppid, err := statOf(procRoot, pid)
		if err != nil {
			break
		}
		exe, _ := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
		chain = append(chain, Process{Pid: pid, Name: name, Exe: exe})
		pid = ppid
	}
	return chain
}

// statOf parses /proc/PID/stat for the command name and parent pid. The
// name is in parentheses and may itself contain spaces or parentheses, so
// the fields after it are found from the last ')'.
func statOf(procRoot string, pid int) (name string, ppid int, err error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, err
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("malformed stat for pid %d", pid)
	}
	name = string(data[open+1 : end])
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 2 {
		return "", 0, fmt.Errorf("malformed stat for pid %d", pid)
	}
	ppid, err = strconv.Atoi(fields[1])
	return name, ppid, err
}

// startTime returns a process's start time in clock ticks (field 22 of
// /proc/PID/stat); with the pid it identifies a process even after the
// pid is reused.
func startTime(procRoot string, pid int) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed stat for pid %d", pid)
	}
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed stat for pid %d", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// cmdline returns a process's argv.
func cmdline(procRoot string, pid int) []string {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
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
