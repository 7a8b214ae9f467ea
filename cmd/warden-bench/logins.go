package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer"
)

// live are the client processes (ssh, ControlMasters) running now, killed
// when the bench is interrupted.
var live = &liveCmds{m: map[*exec.Cmd]bool{}}

type liveCmds struct {
	mu sync.Mutex
	m  map[*exec.Cmd]bool
}

func (l *liveCmds) start(cmd *exec.Cmd) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	l.m[cmd] = true
	return nil
}

func (l *liveCmds) wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	l.mu.Lock()
	delete(l.m, cmd)
	l.mu.Unlock()
	return err
}

func (l *liveCmds) run(cmd *exec.Cmd) error {
	if err := l.start(cmd); err != nil {
		return err
	}
	return l.wait(cmd)
}

func (l *liveCmds) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for cmd := range l.m {
		cmd.Process.Kill()
	}
}

// loginEnv is what the ssh phases share: a loopback sshd trusting a local
// CA and the user's plain key, and an ssh-agent holding that key.
type loginEnv struct {
	user   string
	caPath string
	d      *sshd
	sa     *proc
}

func (b *bench) loginSetup() (*loginEnv, error) {
	if b.login != nil {
		return b.login, nil
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	caPath := filepath.Join(b.dir, "login-ca", "ca_ed25519")
	ca, err := signer.OpenLocalCA(caPath, nil)
	if err != nil {
		return nil, err
	}
	caPub, err := ca.CAPublicKey(context.Background())
	if err != nil {
		return nil, err
	}
	d, err := startSSHD(filepath.Join(b.dir, "sshd"), caPub, b.userPub)
	if err != nil {
		return nil, err
	}
	b.addProc(d.p)
	sa, err := b.sshAgent("ssh-agent-login", 1)
	if err != nil {
		return nil, err
	}
	b.login = &loginEnv{user: u.Username, caPath: caPath, d: d, sa: sa}
	return b.login, nil
}

// loginTarget is one way to log in: through warden (the ssh config carries
// the block `warden-agent ssh-config` prints, so every ssh runs the hint)
// or through ssh-agent (the same config without that block).
type loginTarget struct {
	name  string // warden-cert, ssh-agent
	agent *proc
	cfg   string
	sock  string // SSH_AUTH_SOCK; "" for warden, so a refused hint is a failed login, not a silent ssh-agent one
	audit string // warden's audit log
	pace  *pacer // warden's hint rate limit
}

// loginTargets starts a warden named name (local CA, one route for the
// loopback sshd by host name and host key, audit log on disk) and returns
// it and ssh-agent as login targets, warden first.
func (b *bench) loginTargets(name string) ([]*loginTarget, error) {
	le, err := b.loginSetup()
	if err != nil {
		return nil, err
	}
	w, err := b.warden(name, "none", true, map[string]any{"kind": "local", "local": map[string]any{"ca_key": le.caPath}},
		[]route{{Name: "loopback", Hosts: []string{"127.0.0.1"}, HostKeys: []string{le.d.hostKeyLine}, Principals: []string{le.user}}})
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(b.o.warden, "--config", b.wardenConfig(name), "ssh-config", "--socket", w.socket).Output()
	if err != nil {
		return nil, fmt.Errorf("warden-agent ssh-config: %w", err)
	}
	if !bytes.Contains(out, []byte("Match ")) {
		return nil, fmt.Errorf("warden-agent ssh-config printed no Match block:\n%s", out)
	}
	base, err := os.ReadFile(le.d.config)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(le.d.dir, "ssh_config_"+name)
	if err := os.WriteFile(cfg, append(base, out...), 0o600); err != nil {
		return nil, err
	}
	return []*loginTarget{
		{name: "warden-cert", agent: w, cfg: cfg, audit: b.auditPath(name, true), pace: &pacer{}},
		{name: "ssh-agent", agent: le.sa, cfg: le.d.config, sock: le.sa.socket},
	}, nil
}

// sshCmd is `ssh -F cfg args...` with the environment a login of t has:
// SHELL=/bin/sh (ssh runs Match exec with $SHELL -c; the hint phase uses
// /bin/sh too) and SSH_AUTH_SOCK set only for ssh-agent.
func (t *loginTarget) sshCmd(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, "ssh", append([]string{"-F", t.cfg}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "SSH_AUTH_SOCK=") || strings.HasPrefix(e, "SHELL=")
	})
	cmd.Env = append(cmd.Env, "SHELL=/bin/sh")
	if t.sock != "" {
		cmd.Env = append(cmd.Env, "SSH_AUTH_SOCK="+t.sock)
	}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// sshRun is one ssh process: its wall time and its CPU (user+system from its
// rusage, which on Linux includes the children it waited for: the shell
// and the hint of Match exec).
type sshRun struct {
	wall, cpu time.Duration
	err       error
}

func childCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

func cmdErr(err error, out *bytes.Buffer) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
}

// ssh runs one `ssh ... user@127.0.0.1 args` to completion.
func (t *loginTarget) ssh(le *loginEnv, opts ...string) sshRun {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append([]string{"-p", strconv.Itoa(le.d.port)}, opts...), le.user+"@127.0.0.1", "true")
	cmd, out := t.sshCmd(ctx, argv...)
	t0 := time.Now()
	err := live.run(cmd)
	return sshRun{wall: time.Since(t0), cpu: childCPU(cmd.ProcessState), err: cmdErr(err, out)}
}

// loginStats collects the logins of one target in one measurement.
type loginStats struct {
	lat      []time.Duration
	cpu      time.Duration // client, successful logins
	agentCPU time.Duration
	errs     int
	firstErr string
}

func (s *loginStats) add(r sshRun) {
	if r.err != nil {
		s.errs++
		if s.firstErr == "" {
			s.firstErr = r.err.Error()
		}
		return
	}
	s.lat = append(s.lat, r.wall)
	s.cpu += r.cpu
}

// record turns s into a record: latency percentiles, client and agent CPU
// per successful login.
func (s *loginStats) record(rep *reporter, bench, target string) *record {
	slices.Sort(s.lat)
	smp := &sample{Ops: len(s.lat), Errors: s.errs, FirstErr: s.firstErr, Lat: s.lat}
	r := rep.fromSample(bench, target, smp, nil, nil)
	r.OpsPerSec = 0
	if n := len(s.lat); n > 0 {
		r.ClientCPU = us(s.cpu) / float64(n)
		r.AgentCPU = us(s.agentCPU) / float64(n)
	}
	return r
}

// loginPhase times full `ssh user@127.0.0.1 true` logins one at a time,
// alternating warden and ssh-agent: 2 warm-up logins each, then -logins.
func (b *bench) loginPhase() error {
	le, err := b.loginSetup()
	if err != nil {
		return err
	}
	targets, err := b.loginTargets("login")
	if err != nil {
		return err
	}
	defer b.stopProc(targets[0].agent)
	stats := map[string]*loginStats{}
	certs0, keys0 := le.d.accepted()
	for i := -2; i < b.o.logins; i++ {
		for j := range targets {
			t := targets[(i+j+2)%2] // alternate which goes first
			if t.pace != nil {
				t.pace.wait(1)
			}
			c0, err := cpuTime(t.agent.pid())
			if err != nil {
				return err
			}
			r := t.ssh(le)
			c1, err := cpuTime(t.agent.pid())
			if err != nil {
				return err
			}
			if i < 0 {
				if r.err != nil {
					return fmt.Errorf("%s warm-up login: %w", t.name, r.err)
				}
				continue
			}
			if stats[t.name] == nil {
				stats[t.name] = &loginStats{}
			}
			stats[t.name].add(r)
			if r.err == nil {
				stats[t.name].agentCPU += c1 - c0
			}
		}
	}
	certs1, keys1 := le.d.accepted()
	for _, t := range targets {
		r := stats[t.name].record(b.rep, "login", t.name)
		r.Clients = 1
		if t.audit != "" {
			r.Audit = auditDisk
			r.SSHDLogins = certs1 - certs0
			r.Note = "ssh config with the `warden-agent ssh-config` block (each login runs the hint); sshd accepted " + strconv.Itoa(r.SSHDLogins) + " certificate logins (warm-up included)"
		} else {
			r.SSHDLogins = keys1 - keys0
			r.Note = "same ssh config without the block; plain ed25519 key in authorized_keys"
		}
		b.rep.add(r)
	}
	return nil
}

// burstPhase starts -burst logins at once, a batch per target, alternating
// which goes first; one warm-up batch each (a quarter of the size: it
// only has to warm caches, and the full batches are most of the run's
// time), then -batches measured ones.
func (b *bench) burstPhase() error {
	le, err := b.loginSetup()
	if err != nil {
		return err
	}
	targets, err := b.loginTargets("burst")
	if err != nil {
		return err
	}
	defer b.stopProc(targets[0].agent)
	n := b.o.burst
	for batch := 0; batch <= b.o.batches; batch++ {
		order := slices.Clone(targets)
		if batch%2 == 1 {
			slices.Reverse(order)
		}
		size := n
		if batch == 0 {
			size = max(1, n/4)
		}
		for _, t := range order {
			if t.pace != nil {
				t.pace.wait(size)
			}
			certs0, keys0 := le.d.accepted()
			st, makespan, err := b.loginBatch(le, t, size)
			if err != nil {
				return err
			}
			certs1, keys1 := le.d.accepted()
			if batch == 0 {
				if len(st.lat) == 0 {
					return fmt.Errorf("%s warm-up batch: every login failed: %s", t.name, st.firstErr)
				}
				continue
			}
			r := st.record(b.rep, "login", t.name)
			r.Clients, r.Rep, r.MakespanMs = n, batch, float64(makespan.Microseconds())/1e3
			r.ElapsedS = makespan.Seconds()
			if t.audit != "" {
				r.Audit, r.SSHDLogins = auditDisk, certs1-certs0
				r.Note = fmt.Sprintf("%d concurrent logins, with the ssh-config block; sshd accepted %d certificate logins in this batch", n, r.SSHDLogins)
			} else {
				r.SSHDLogins = keys1 - keys0
				r.Note = fmt.Sprintf("%d concurrent logins, plain key; sshd accepted %d key logins in this batch", n, r.SSHDLogins)
			}
			b.rep.add(r)
		}
	}
	return nil
}

// loginBatch starts n logins of t as fast as it can fork them and waits
// for all; each login's wall time runs from its own start.
func (b *bench) loginBatch(le *loginEnv, t *loginTarget, n int) (*loginStats, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c0, err := cpuTime(t.agent.pid())
	if err != nil {
		return nil, 0, err
	}
	runs := make([]sshRun, n)
	var wg sync.WaitGroup
	first := time.Now()
	var mu sync.Mutex
	last := first
	for i := range n {
		cmd, out := t.sshCmd(ctx, "-p", strconv.Itoa(le.d.port), le.user+"@127.0.0.1", "true")
		t0 := time.Now()
		if err := live.start(cmd); err != nil {
			runs[i].err = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := live.wait(cmd)
			end := time.Now()
			runs[i] = sshRun{wall: end.Sub(t0), cpu: childCPU(cmd.ProcessState), err: cmdErr(err, out)}
			mu.Lock()
			if end.After(last) {
				last = end
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	c1, err := cpuTime(t.agent.pid())
	if err != nil {
		return nil, 0, err
	}
	st := &loginStats{}
	for _, r := range runs {
		st.add(r)
	}
	st.agentCPU = c1 - c0
	return st, last.Sub(first), nil
}

// masterPhase keeps a ControlMaster per target open to the loopback sshd
// and times -riders sessions `ssh ... true` riding it, alternating between
// the targets, and counts the audit records warden wrote meanwhile.
func (b *bench) masterPhase() error {
	le, err := b.loginSetup()
	if err != nil {
		return err
	}
	targets, err := b.loginTargets("master")
	if err != nil {
		return err
	}
	defer b.stopProc(targets[0].agent)
	ctls := map[string]string{}
	for _, t := range targets {
		ctl := filepath.Join(le.d.dir, "cm-"+t.name)
		ctls[t.name] = ctl
		stop, err := startMaster(le, t, ctl)
		if err != nil {
			return err
		}
		defer stop()
	}
	time.Sleep(300 * time.Millisecond) // the masters' own records are written
	w := targets[0]
	ev0, err := auditEvents(w.audit)
	if err != nil {
		return err
	}
	certs0, keys0 := le.d.accepted()
	stats := map[string]*loginStats{}
	for i := range b.o.riders {
		for j := range targets {
			t := targets[(i+j)%2]
			if t.pace != nil {
				t.pace.wait(1)
			}
			c0, err := cpuTime(t.agent.pid())
			if err != nil {
				return err
			}
			r := t.ssh(le, "-o", "ControlMaster=no", "-o", "ControlPath="+ctls[t.name])
			c1, err := cpuTime(t.agent.pid())
			if err != nil {
				return err
			}
			if stats[t.name] == nil {
				stats[t.name] = &loginStats{}
			}
			stats[t.name].add(r)
			if r.err == nil {
				stats[t.name].agentCPU += c1 - c0
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	ev1, err := auditEvents(w.audit)
	if err != nil {
		return err
	}
	certs1, keys1 := le.d.accepted()
	for _, t := range targets {
		r := stats[t.name].record(b.rep, "master", t.name)
		r.Clients = 1
		if t.audit != "" {
			r.Audit = auditDisk
			r.Events = map[string]int{}
			for e, n := range ev1 {
				if d := n - ev0[e]; d > 0 {
					r.Events[e] = d
				}
			}
			r.SSHDLogins = certs1 - certs0
			r.Note = "sessions riding a live ControlMaster, ssh config with the ssh-config block; audit_events = records warden wrote during them; sshd_logins = new logins (0 when every session rode the master)"
		} else {
			r.SSHDLogins = keys1 - keys0
			r.Note = "sessions riding a live ControlMaster, ssh config without the block"
		}
		b.rep.add(r)
	}
	return nil
}

// startMaster runs `ssh -M -N` for t with its control socket at ctl, as a
// child of the bench (ControlPersist=no: it does not fork away), and
// waits until the socket is there. stop ends it.
func startMaster(le *loginEnv, t *loginTarget, ctl string) (stop func(), err error) {
	if t.pace != nil {
		t.pace.wait(1)
	}
	cmd, out := t.sshCmd(context.Background(), "-p", strconv.Itoa(le.d.port), "-o", "ControlMaster=yes", "-o", "ControlPath="+ctl,
		"-o", "ControlPersist=no", "-N", le.user+"@127.0.0.1")
	if err := live.start(cmd); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- live.wait(cmd) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(ctl); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return stop, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%s ControlMaster exited: %v: %s", t.name, err, strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s ControlMaster: no control socket after 20 s: %s", t.name, strings.TrimSpace(out.String()))
		}
	}
}

// sshd is a loopback OpenSSH server trusting one user CA and one key.
type sshd struct {
	p           *proc
	port        int
	dir         string
	config      string // ssh client config for it (no warden block)
	hostKeyLine string
	logFile     string
	log         *lockedBuffer
}

func (d *sshd) stop() { d.p.stop() }

// accepted counts the certificate and plain-key logins sshd accepted so far.
func (d *sshd) accepted() (certs, keys int) {
	data, _ := os.ReadFile(d.logFile)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte("Accepted publickey")) {
			continue
		}
		if bytes.Contains(line, []byte("-CERT ")) {
			certs++
		} else {
			keys++
		}
	}
	return certs, keys
}

// startSSHD starts sshd on a free loopback port. MaxStartups and
// MaxSessions are raised so the burst phase's concurrent logins are not
// dropped by sshd's defaults (10:30:100).
func startSSHD(dir string, userCA, userKey ssh.PublicKey) (*sshd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if os.Getuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	}
	hk := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(hk + ".pub")
	if err != nil {
		return nil, err
	}
	ca, ak := filepath.Join(dir, "user_ca.pub"), filepath.Join(dir, "authorized_keys")
	os.WriteFile(ca, ssh.MarshalAuthorizedKey(userCA), 0o644)
	os.WriteFile(ak, ssh.MarshalAuthorizedKey(userKey), 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	sshdBin := sshdPath()
	cfg := filepath.Join(dir, "sshd_config")
	lines := []string{
		"Port " + strconv.Itoa(port), "ListenAddress 127.0.0.1", "HostKey " + hk, "PidFile none",
		"TrustedUserCAKeys " + ca, "AuthorizedKeysFile " + ak, "AuthorizedPrincipalsFile none",
		"UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel INFO",
		"MaxStartups 1000", "MaxSessions 1000",
	}
	// SHLVL=1: bash started by sshd sources ~/.bashrc only at shell level
	// 1, and a .bashrc (here root's, running `pyenv init`) can cost more
	// than the whole login and serialise concurrent ones on a lock; it is
	// the same for every agent, so it is left out. OpenSSH 9.8+
	// penalises sources that cause many connections. Each option is kept
	// only if this sshd knows it (SetEnv needs 8.7).
	for _, opt := range []string{"SetEnv SHLVL=1", "PerSourcePenalties no"} {
		try := append(slices.Clone(lines), opt, "")
		if err := os.WriteFile(cfg, []byte(strings.Join(try, "\n")), 0o600); err != nil {
			return nil, err
		}
		if exec.Command(sshdBin, "-t", "-f", cfg).Run() == nil {
			lines = append(lines, opt)
		}
	}
	if err := os.WriteFile(cfg, []byte(strings.Join(append(lines, ""), "\n")), 0o600); err != nil {
		return nil, err
	}
	d := &sshd{port: port, dir: dir, hostKeyLine: strings.TrimSpace(string(pub)), logFile: filepath.Join(dir, "sshd.log")}
	cmd := exec.Command(sshdBin, "-D", "-E", d.logFile, "-f", cfg)
	d.p = &proc{name: "sshd", cmd: cmd, exited: make(chan struct{}), log: &lockedBuffer{}}
	d.log = d.p.log
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(d.p.exited) }()
	logs := func() string { data, _ := os.ReadFile(d.logFile); return d.log.String() + string(data) }
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			break
		}
		select {
		case <-d.p.exited:
			return nil, fmt.Errorf("sshd exited:\n%s", logs())
		default:
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("sshd did not listen:\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", port, d.hostKeyLine)), 0o600)
	sc := strings.Join([]string{
		"Host *", "  IdentityFile " + filepath.Join(dir, "no-such-key"), "  UserKnownHostsFile " + kh,
		"  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes", "  UpdateHostKeys no", "  BatchMode yes",
		"  PasswordAuthentication no", "  KbdInteractiveAuthentication no", "  ControlMaster no", "  ControlPath none",
		"  ConnectTimeout 30", "  LogLevel ERROR", "",
	}, "\n")
	d.config = filepath.Join(dir, "ssh_config")
	return d, os.WriteFile(d.config, []byte(sc), 0o600)
}
