package agentproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// Parsers of the process records the platforms hand out. They live in a
// portable file so that every one of them is tested and fuzzed on Linux.
// The bytes come from the kernel, but argv and the command name are chosen
// by the peer process: every parser is bounded and never trusts a length.

const (
	// maxProcRecord bounds what is read of one process record (stat,
	// cmdline, kern.procargs2); longer input is cut there.
	maxProcRecord = 1 << 20
	// maxArgs bounds the argv kept; isNoLogin needs only the options.
	maxArgs = 4096
)

var errMalformedProc = errors.New("malformed process record")

// parseStat parses Linux /proc/PID/stat (proc(5)): the command name
// (field 2), the parent pid (field 4) and the start time in clock ticks
// (field 22). The name is in parentheses and may itself contain spaces
// or parentheses, so the fields after it are found from the last ')'.
func parseStat(data []byte) (name string, ppid int, start uint64, err error) {
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", 0, 0, errMalformedProc
	}
	name = string(data[open+1 : end])
	fields := strings.Fields(string(data[end+1:]))
	// fields[0] is field 3 (state).
	if len(fields) < 20 {
		return "", 0, 0, errMalformedProc
	}
	if ppid, err = strconv.Atoi(fields[1]); err != nil {
		return "", 0, 0, errMalformedProc
	}
	if start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return "", 0, 0, errMalformedProc
	}
	return name, ppid, start, nil
}

// nulStrings splits NUL-terminated strings (Linux /proc/PID/cmdline,
// FreeBSD kern.proc.args), keeping at most maxArgs.
func nulStrings(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.SplitN(b, []byte{0}, maxArgs+1)
	if len(parts) > maxArgs {
		parts = parts[:maxArgs]
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// parseProcArgs2 parses macOS sysctl kern.procargs2: a native int argc,
// the executable path NUL-terminated, NUL padding, then argc NUL-terminated
// arguments (the environment follows and is not read).
func parseProcArgs2(b []byte) (exe string, argv []string, err error) {
	if len(b) < 4 {
		return "", nil, errMalformedProc
	}
	argc := int(int32(binary.NativeEndian.Uint32(b)))
	if argc < 0 {
		return "", nil, errMalformedProc
	}
	rest := b[4:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return "", nil, errMalformedProc
	}
	exe, rest = string(rest[:i]), rest[i:]
	for len(rest) > 0 && rest[0] == 0 {
		rest = rest[1:]
	}
	for len(argv) < argc && len(argv) < maxArgs && len(rest) > 0 {
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			argv = append(argv, string(rest))
			break
		}
		argv = append(argv, string(rest[:j]))
		rest = rest[j+1:]
	}
	return exe, argv, nil
}

// FreeBSD's struct kinfo_proc (sys/user.h) on 64-bit platforms:
// KINFO_PROC_SIZE and the offsets of the fields read here. ki_structsize
// is checked, so a layout change is an error, never a misread.
const (
	kinfoProcSize64 = 1088
	kiPidOff        = 72
	kiPpidOff       = 76
	kiStartOff      = 336 // struct timeval ki_start
	kiCommOff       = 447 // char ki_comm[COMMLEN+1]
	kiCommLen       = 20
)

// parseKinfoProcFreeBSD reads pid, parent, start time (microseconds since
// the epoch) and command name from one FreeBSD kinfo_proc (sysctl
// kern.proc.pid.PID), 64-bit layout.
func parseKinfoProcFreeBSD(b []byte) (pid int, p procInfo, err error) {
	if len(b) < kinfoProcSize64 || binary.NativeEndian.Uint32(b) != kinfoProcSize64 {
		return 0, procInfo{}, errMalformedProc
	}
	ne := binary.NativeEndian
	pid = int(int32(ne.Uint32(b[kiPidOff:])))
	p.Ppid = int(int32(ne.Uint32(b[kiPpidOff:])))
	sec, usec := ne.Uint64(b[kiStartOff:]), ne.Uint64(b[kiStartOff+8:])
	p.Start = sec*1_000_000 + usec
	p.Name = cString(b[kiCommOff : kiCommOff+kiCommLen])
	return pid, p, nil
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
