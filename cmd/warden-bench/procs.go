package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// proc is an agent process under test.
type proc struct {
	name   string
	socket string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedBuffer
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and kills the process if it has not exited in 5s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// lockedBuffer collects a child's output from its own goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the head only
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs cmd and waits until socket accepts connections.
func start(name, socket string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, socket: socket, cmd: cmd, exited: make(chan struct{}), log: &lockedBuffer{}}
	if cmd.Stdout == nil {
		cmd.Stdout = p.log
	}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited at start:\n%s", name, p.log.String())
		default:
		}
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s: socket %s did not appear:\n%s", name, socket, p.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cpuTime is the user+system CPU time of pid and all its threads so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'. utime and stime are fields 14 and 15 of proc(5).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// rssKiB is VmRSS of pid.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// startSSHAgent runs OpenSSH's ssh-agent (bin) in the foreground with keys.
func startSSHAgent(bin, name, dir string, keys []ed25519.PrivateKey) (*proc, error) {
	socket := filepath.Join(dir, name+".sock")
	p, err := start(name, socket, exec.Command(bin, "-D", "-a", socket))
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("unix", socket)
	if err != nil {
		p.stop()
		return nil, err
	}
	defer c.Close()
	a := agent.NewClient(c)
	for i, k := range keys {
		if err := a.Add(agent.AddedKey{PrivateKey: k, Comment: fmt.Sprintf("bench-key-%d", i)}); err != nil {
			p.stop()
			return nil, fmt.Errorf("%s: add key: %w", name, err)
		}
	}
	return p, nil
}

// startKeyring runs this program's keyring-server mode: x/crypto's
// agent.NewKeyring served over a Unix socket, the Go floor.
func startKeyring(dir, keyFile string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(dir, "keyring.sock")
	return start("keyring", socket, exec.Command(self, "keyring-server", "-key", keyFile, socket))
}

// wardenSetup is one warden-agent instance's configuration.
type wardenSetup struct {
	name     string
	upstream string // socket or "none"
	audit    string // audit log path
	signer   map[string]any
	routes   []route
}

// route mirrors catalog.Route's YAML form (the fields used here).
type route struct {
	Name       string   `yaml:"name"`
	Hosts      []string `yaml:"hosts,omitempty"`
	HostKeys   []string `yaml:"host_keys"`
	Principals []string `yaml:"principals"`
	Mount      string   `yaml:"mount,omitempty"`
	Role       string   `yaml:"role,omitempty"`
}

// startWarden writes an agent.yaml and runs `warden-agent run` with its
// own HOME and XDG directories under dir.
func startWarden(bin, dir string, w wardenSetup) (*proc, error) {
	home := filepath.Join(dir, w.name)
	for _, d := range []string{"config", "state", "run"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			return nil, err
		}
	}
	socket := filepath.Join(home, "run", "agent.sock")
	empty := filepath.Join(home, "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"socket":      socket,
		"upstream":    w.upstream,
		"known_hosts": []string{empty},
		"audit":       map[string]any{"path": w.audit, "max_size": int64(1) << 40},
		"routes":      w.routes,
		"log":         map[string]any{"level": "error"},
	}
	if w.signer != nil {
		cfg["signer"] = w.signer
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(home, "config", "agent.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfgPath, "run")
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_STATE_HOME="+filepath.Join(home, "state"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "run"),
		"SSH_AUTH_SOCK=",
	)
	cmd.Stdout = &lockedBuffer{} // the banner
	return start("warden-"+w.name, socket, cmd)
}

// authorizedKey is k in authorized_keys form without the newline.
func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// idlePerProc is how many idle connections one holder process opens:
// below warden's cap of 128 per peer process, as many ssh processes with
// one connection each would be.
const idlePerProc = 100

// heldConns is what the holder processes opened.
type heldConns struct {
	ok       int
	firstErr string
}

// holdIdle opens n connections to socket from holder processes
// (`warden-bench idle-client`), each answered one query extension and
// then left idle, until release.
func holdIdle(socket string, n int) (heldConns, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return heldConns{}, nil, err
	}
	var h heldConns
	var stops []func()
	release := func() {
		for _, stop := range stops {
			stop()
		}
	}
	for left := n; left > 0; left -= idlePerProc {
		cmd := exec.Command(self, "idle-client", "-n", strconv.Itoa(min(left, idlePerProc)), socket)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			release()
			return h, nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			release()
			return h, nil, err
		}
		if err := cmd.Start(); err != nil {
			release()
			return h, nil, err
		}
		stops = append(stops, func() { in.Close(); cmd.Wait() })
		line, err := bufio.NewReader(io.LimitReader(out, 4096)).ReadString('\n')
		var ok int
		var first string
		if err == nil {
			_, err = fmt.Sscanf(line, "ok %d", &ok)
			_, first, _ = strings.Cut(strings.TrimSpace(line), " first ")
		}
		if err != nil {
			release()
			return h, nil, fmt.Errorf("idle-client: %v (%q)", err, line)
		}
		h.ok += ok
		if h.firstErr == "" {
			h.firstErr = first
		}
	}
	return h, release, nil
}

// idleClient is the holder process: it opens -n connections to SOCKET,
// sends each one query extension, prints "ok N [first ERROR]" and keeps
// them open until its stdin closes.
func idleClient(args []string) error {
	fs := flag.NewFlagSet("idle-client", flag.ContinueOnError)
	n := fs.Int("n", 100, "connections to open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: warden-bench idle-client -n N SOCKET")
	}
	var conns []net.Conn
	var first string
	for range *n {
		c, err := net.Dial("unix", fs.Arg(0))
		if err == nil {
			if err = rawQuery(c); err != nil {
				c.Close()
			}
		}
		if err != nil {
			if first == "" {
				first = strings.ReplaceAll(err.Error(), "\n", " ")
			}
			continue
		}
		conns = append(conns, c)
	}
	if first != "" {
		fmt.Printf("ok %d first %s\n", len(conns), first)
	} else {
		fmt.Printf("ok %d\n", len(conns))
	}
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}
