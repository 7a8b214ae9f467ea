package policy

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcessChain returns pid's process chain, nearest first, up to max
// processes, from Linux /proc: the executable (/proc/PID/exe) and name
// (/proc/PID/comm) of each, following the parent pid from /proc/PID/stat.
// Entries that cannot be read (another user's process, another OS) end
// the chain. It is the Callers of an Input for a process the agent or CLI
// can see.
func ProcessChain(pid, max int) []Caller {
	var out []Caller
	for pid > 0 && len(out) < max {
		c := Caller{Pid: pid}
		c.Exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			c.Name = strings.TrimSpace(string(b))
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		out = append(out, c)
		pid = parentPid(string(stat))
	}
	return out
}

// parentPid reads field 4 of /proc/PID/stat. The command name (field 2)
// is in parentheses and may itself contain spaces and ')', so parsing
// starts after the last ')' (proc(5)).
func parentPid(stat string) int {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
