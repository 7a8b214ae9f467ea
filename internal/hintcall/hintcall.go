// Package hintcall is the client side of the hint: what ssh's Match exec
// runs before each connection, `warden-agent hint` and the small
// `warden-hint` program alike. It needs nothing but the standard library,
// so warden-hint starts as fast as a Go program can: ssh waits for it on
// every connection.
package hintcall

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ExtName is the agent protocol extension a hint is sent as.
const ExtName = "hint@ops-warden.netkingdom"

// Request is what a hint tells the agent.
type Request struct {
	SSHPid int    `json:"ssh_pid"`
	User   string `json:"user"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
}

// Reply says whether the agent will serve a certificate for the hint.
type Reply struct {
	// OK is false when the target is refused; Error then says why and how
	// to fix it.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Route is the catalog route chosen, empty when none matches.
	Route     string `json:"route,omitempty"`
	Principal string `json:"principal,omitempty"`
	// Serial is the certificate ready for the login, when one was issued.
	Serial string `json:"serial,omitempty"`
	// Note explains an OK reply that issues nothing (no route, ssh -G).
	Note string `json:"note,omitempty"`
}

// ErrNoAgent means nothing answers on the socket.
var ErrNoAgent = errors.New("no agent is running")

// MaxReply bounds an extension reply the client reads.
const MaxReply = 256 << 10 // agentproxy.MaxMessageSize

// Agent protocol message numbers (PROTOCOL.agent).
const (
	msgFailure   = 5
	msgSuccess   = 6
	msgExtension = 27
)

// Call sends a hint to the agent on socket and returns its reply.
func Call(socket string, req Request, timeout time.Duration) (Reply, error) {
	var reply Reply
	err := CallExtension(socket, ExtName, req, &reply, timeout)
	return reply, err
}

// CallExtension sends one warden extension request over the agent socket
// and decodes the JSON reply (SSH_AGENT_SUCCESS, then JSON) into reply,
// unless reply is nil. It is the client half of every warden extension.
func CallExtension(socket, name string, req, reply any, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return fmt.Errorf("%w on %s: %v", ErrNoAgent, socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 9+len(name)+len(body))
	msg = binary.BigEndian.AppendUint32(msg, uint32(1+4+len(name)+len(body)))
	msg = append(msg, msgExtension)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(name)))
	msg = append(append(msg, name...), body...)
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxReply {
		return fmt.Errorf("agent on %s: reply of %d bytes", socket, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	switch buf[0] {
	case msgSuccess:
	case msgFailure:
		return fmt.Errorf("agent on %s does not support %s (is it warden-agent?)", socket, name)
	default:
		return fmt.Errorf("agent on %s refused %s", socket, name)
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(buf[1:], reply); err != nil {
		return fmt.Errorf("agent on %s: bad reply: %w", socket, err)
	}
	return nil
}

// Args are the hint command's flags; Socket is --socket (or
// $WARDEN_SOCKET), empty for the default.
type Args struct {
	Socket, User, Host string
	SSHPid, Port       int
	Timeout            time.Duration
}

// Run sends the hint and returns what to print on stderr (empty when
// the agent accepted the target) and the exit status. socket is the
// agent's socket (Args.Socket or the default).
func Run(a Args, socket string) (msg string, code int) {
	sshPid := a.SSHPid
	if sshPid == 0 {
		sshPid = MatchExecSSHPid("/proc", os.Getppid())
	}
	reply, err := Call(socket, Request{SSHPid: sshPid, User: a.User, Host: a.Host, Port: a.Port}, a.Timeout)
	if errors.Is(err, ErrNoAgent) {
		return "warden-agent: not running on " + socket + "; " + Fallback(socket, os.Getenv("SSH_AUTH_SOCK")), 1
	}
	if err != nil {
		return "warden-agent: " + err.Error(), 1
	}
	if !reply.OK {
		return fmt.Sprintf("warden-agent: no certificate for %s@%s: %s", a.User, a.Host, reply.Error), 1
	}
	return "", 0
}

// Parse reads a hint command line: warden-agent's fast path (ssh runs
// the hint before every connection, and building the whole urfave/cli app
// costs more than the hint itself) and warden-hint's flags. It accepts
// only a plain, complete hint command line (args after warden-agent's
// hoistGlobalFlags): the program, global --socket/--config, then "hint"
// and its flags (--socket among them), each once, as -name, --name, with the value as the next
// word or after '=', parsed as urfave/cli (Go's flag package) parses
// them. Anything else (help, an unknown or repeated flag, a bad value, a
// missing --user or --host, a positional argument) returns false, and the
// full app handles it with its own messages and exit codes.
func Parse(args []string) (Args, bool) {
	a := Args{Port: 22, Timeout: 15 * time.Second}
	seen := map[string]bool{}
	i := 1
	// flag returns the name and value of the flag at args[i] and moves i
	// past it.
	flag := func() (name, value string, ok bool) {
		w := args[i]
		if len(w) < 2 || w[0] != '-' || w == "--" {
			return "", "", false
		}
		name = strings.TrimPrefix(w[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			return "", "", false
		}
		name, value, hasValue := strings.Cut(name, "=")
		if seen[name] {
			return "", "", false
		}
		seen[name] = true
		i++
		if !hasValue {
			if i >= len(args) {
				return "", "", false
			}
			value = args[i]
			i++
		}
		return name, value, true
	}
	for i < len(args) && args[i] != "hint" {
		name, value, ok := flag()
		if !ok {
			return a, false
		}
		switch name {
		case "socket":
			a.Socket = value
		case "config": // not read by the hint
		default:
			return a, false
		}
	}
	if i >= len(args) {
		return a, false
	}
	for i++; i < len(args); {
		name, value, ok := flag()
		if !ok {
			return a, false
		}
		var err error
		switch name {
		case "socket": // warden-hint's flags have no "global" part
			a.Socket = value
		case "user":
			a.User = value
		case "host":
			a.Host = value
		case "ssh-pid":
			a.SSHPid, err = parseFlagInt(value)
		case "port":
			a.Port, err = parseFlagInt(value)
		case "timeout":
			a.Timeout, err = time.ParseDuration(value)
		default:
			return a, false
		}
		if err != nil {
			return a, false
		}
	}
	if !seen["user"] || !seen["host"] {
		return a, false
	}
	if !seen["socket"] {
		// urfave/cli reads the flag's EnvVars.
		a.Socket = os.Getenv("WARDEN_SOCKET")
	}
	return a, true
}

// parseFlagInt parses an int flag value as Go's flag package does.
func parseFlagInt(s string) (int, error) {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	return int(n), err
}

// MatchExecSSHPid finds the ssh process a hint runs for, from the hint's
// parent pid. ssh runs a Match exec line as `$SHELL -c LINE` (readconf.c
// execute_in_shell). bash, dash and zsh exec a single command in place,
// so ssh is the hint's parent; fish forks it, so the parent is that shell
// and ssh is its parent. fish also has no $PPID, which is why the block
// does not pass one.
func MatchExecSSHPid(procRoot string, parent int) int {
	if procName(procRoot, parent) == "ssh" {
		return parent
	}
	argv := procCmdline(procRoot, parent)
	if len(argv) == 3 && argv[1] == "-c" {
		if gp := procParent(procRoot, parent); gp > 1 {
			return gp
		}
	}
	return parent
}

// procStat returns the command name and the fields after it of
// /proc/PID/stat; the name is in parentheses and may hold anything, so the
// fields start after the last ')'.
func procStat(procRoot string, pid int) (name string, fields []string) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", nil
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", nil
	}
	return string(data[open+1 : end]), strings.Fields(string(data[end+1:]))
}

func procName(procRoot string, pid int) string {
	name, _ := procStat(procRoot, pid)
	return name
}

// procParent is field 4 of /proc/PID/stat, or 0.
func procParent(procRoot string, pid int) int {
	_, f := procStat(procRoot, pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func procCmdline(procRoot string, pid int) []string {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// Fallback says truthfully what ssh does when warden is down: ssh runs
// the hint with its own environment, so SSH_AUTH_SOCK here is the agent ssh
// falls back to. Pointing it at warden's own socket leaves ssh no agent.
func Fallback(socket, authSock string) string {
	switch {
	case authSock == "":
		return "SSH_AUTH_SOCK is not set, so ssh falls back to your key files (~/.ssh/id_*) only; start warden-agent (`systemctl --user start warden-agent` or `warden-agent run`)"
	case samePath(authSock, socket):
		return "SSH_AUTH_SOCK points at it too, so ssh has no agent to fall back to: start warden-agent (`systemctl --user start warden-agent` or `warden-agent run`), or keep SSH_AUTH_SOCK on your own agent and let the ssh-config block route to warden (docs/ssh-config.md, break-glass)"
	case !answers(authSock):
		return fmt.Sprintf("your usual agent (SSH_AUTH_SOCK=%s) does not answer either, so ssh falls back to your key files (~/.ssh/id_*) only", authSock)
	}
	return fmt.Sprintf("ssh falls back to your usual agent (SSH_AUTH_SOCK=%s)", authSock)
}

func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// answers reports whether something accepts connections on socket.
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
