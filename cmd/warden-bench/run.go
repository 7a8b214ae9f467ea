package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer"
	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// bench is one run: scratch directories, keys, the processes started and
// the records written.
type bench struct {
	o       *options
	dir     string // sockets, configs, state (on disk)
	shm     string // tmpfs audit logs
	meta    meta
	rep     *reporter
	procs   []*proc
	userKey ed25519.PrivateKey
	userPub ssh.PublicKey
	hosts   []ssh.Signer // hosts[0] is the signing route's; the rest are cold routes
}

const principal = "deploy"

func run(o *options) error {
	dir, err := os.MkdirTemp(o.diskDir, "warden-bench-")
	if err != nil {
		return err
	}
	shm, err := os.MkdirTemp(o.shmDir, "warden-bench-")
	if err != nil {
		return fmt.Errorf("tmpfs directory: %w", err)
	}
	b := &bench{o: o, dir: dir, shm: shm}
	defer func() {
		for _, p := range b.procs {
			p.stop()
		}
		if !o.keep {
			os.RemoveAll(dir)
			os.RemoveAll(shm)
		} else {
			fmt.Fprintf(os.Stderr, "kept %s and %s\n", dir, shm)
		}
	}()
	b.meta = collectMeta()
	if b.rep, err = newReporter(o.out, b.meta); err != nil {
		return err
	}
	defer b.rep.close()
	fmt.Fprintf(os.Stderr, "warden-bench: %s, %s, commit %s, %d CPUs\n", b.meta.Go, b.meta.OpenSSH, b.meta.Commit, b.meta.CPUs)

	_, b.userKey, _ = ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(b.userKey)
	b.userPub = signer.PublicKey()
	for range 1 + o.reps*o.coldN {
		_, hk, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(hk)
		b.hosts = append(b.hosts, s)
	}

	phases := []struct {
		name string
		fn   func() error
	}{{"sign", b.signPhase}, {"list", b.listPhase}, {"jit", b.jitPhase}, {"rss", b.rssPhase}, {"login", b.loginPhase}}
	for _, ph := range phases {
		if !o.phases[ph.name] {
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "== %s\n", ph.name)
		if err := ph.fn(); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		fmt.Fprintf(os.Stderr, "   %s took %s\n", ph.name, time.Since(t0).Round(time.Second))
	}
	return b.rep.writeTable()
}

func (b *bench) keep(p *proc, err error) (*proc, error) {
	if err == nil {
		b.procs = append(b.procs, p)
	}
	return p, err
}

func (b *bench) stopProc(p *proc) {
	p.stop()
	b.procs = slices.DeleteFunc(b.procs, func(q *proc) bool { return q == p })
}

func (b *bench) sshAgent(name string, nkeys int) (*proc, error) {
	keys := []ed25519.PrivateKey{b.userKey}
	for range nkeys - 1 {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys = append(keys, k)
	}
	return b.keep(startSSHAgent(name, b.dir, keys))
}

func (b *bench) keyring() (*proc, error) {
	blk, err := ssh.MarshalPrivateKey(b.userKey, "")
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(b.dir, "user_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, err
	}
	return b.keep(startKeyring(b.dir, keyFile))
}

// routes pins hosts[0:n] with principal, one route each.
func (b *bench) routes(n int, mount, role string) []route {
	var rs []route
	for i := range n {
		rs = append(rs, route{Name: fmt.Sprintf("r%d", i), HostKeys: []string{authorizedKey(b.hosts[i].PublicKey())},
			Principals: []string{principal}, Mount: mount, Role: role})
	}
	return rs
}

func (b *bench) warden(name, upstream string, auditOnDisk bool, sgn map[string]any, routes []route) (*proc, error) {
	audit := filepath.Join(b.dir, name, "state", "warden", "audit.log")
	if !auditOnDisk {
		audit = filepath.Join(b.shm, name, "audit.log")
	}
	return b.keep(startWarden(b.o.warden, b.dir, wardenSetup{name: name, upstream: upstream, audit: audit, signer: sgn, routes: routes}))
}

// signTarget is one way of getting an ed25519 signature for a login.
type signTarget struct {
	name     string
	audit    string
	kind     signKind
	agent    *proc
	upstream *proc // the ssh-agent warden proxies to, when it does
}

func (b *bench) signPhase() error {
	sa, err := b.sshAgent("ssh-agent", 1)
	if err != nil {
		return err
	}
	kr, err := b.keyring()
	if err != nil {
		return err
	}
	wDisk, err := b.warden("sign-disk", sa.socket, true, nil, b.routes(1, "", ""))
	if err != nil {
		return err
	}
	wShm, err := b.warden("sign-tmpfs", sa.socket, false, nil, b.routes(1, "", ""))
	if err != nil {
		return err
	}
	targets := []signTarget{
		{name: "ssh-agent", kind: plainKey, agent: sa},
		{name: "keyring", kind: plainKey, agent: kr},
		{name: "warden-cert", audit: auditDisk, kind: wardenCert, agent: wDisk},
		{name: "warden-cert", audit: auditTmpfs, kind: wardenCert, agent: wShm},
		{name: "warden-proxy", audit: auditDisk, kind: proxiedKey, agent: wDisk, upstream: sa},
		{name: "warden-proxy", audit: auditTmpfs, kind: proxiedKey, agent: wShm, upstream: sa},
	}
	type cell struct {
		t       signTarget
		clients int
	}
	var cells []cell
	for _, t := range targets {
		for _, n := range b.o.clients {
			cells = append(cells, cell{t, n})
		}
	}
	for rep := 1; rep <= b.o.reps; rep++ {
		mrand.Shuffle(len(cells), func(i, j int) { cells[i], cells[j] = cells[j], cells[i] })
		for _, c := range cells {
			watch := []*proc{c.t.agent}
			if c.t.upstream != nil {
				watch = append(watch, c.t.upstream)
			}
			s, err := runWindow(c.clients, b.o.warmup, b.o.window, func(int) (worker, error) {
				return newSignWorker(c.t.agent.socket, c.t.kind, b.userPub, b.hosts[0], principal)
			}, watch)
			if err != nil {
				return fmt.Errorf("%s %s %d clients: %w", c.t.name, c.t.audit, c.clients, err)
			}
			r := b.rep.fromSample("sign", c.t.name, s, c.t.agent, c.t.upstream)
			r.Audit, r.Clients, r.Rep, r.Key = c.t.audit, c.clients, rep, "ssh-ed25519"
			if c.t.kind == wardenCert {
				r.Key = "ssh-ed25519-cert-v01 (ephemeral ed25519)"
			}
			b.rep.add(r)
		}
	}
	for _, p := range []*proc{wDisk, wShm, kr} {
		b.stopProc(p)
	}
	return nil
}

func (b *bench) listPhase() error {
	type cell struct {
		name  string
		agent *proc
		up    *proc
		keys  int
	}
	var cells []cell
	for _, n := range b.o.listKeys {
		sa, err := b.sshAgent(fmt.Sprintf("ssh-agent-%dkeys", n), n)
		if err != nil {
			return err
		}
		w, err := b.warden(fmt.Sprintf("list-%d", n), sa.socket, true, nil, b.routes(1, "", ""))
		if err != nil {
			return err
		}
		cells = append(cells, cell{"ssh-agent", sa, nil, n}, cell{"warden-proxy", w, sa, n})
	}
	for rep := 1; rep <= b.o.reps; rep++ {
		mrand.Shuffle(len(cells), func(i, j int) { cells[i], cells[j] = cells[j], cells[i] })
		for _, c := range cells {
			watch := []*proc{c.agent}
			if c.up != nil {
				watch = append(watch, c.up)
			}
			s, err := runWindow(1, b.o.warmup/2, b.o.listWindow, func(int) (worker, error) {
				return newListWorker(c.agent.socket, c.keys)
			}, watch)
			if err != nil {
				return fmt.Errorf("list %s %d keys: %w", c.name, c.keys, err)
			}
			r := b.rep.fromSample("list", c.name, s, c.agent, c.up)
			r.Keys, r.Clients, r.Rep = c.keys, 1, rep
			r.Note = "ssh-add -l style: no session-bind, one connection"
			b.rep.add(r)
		}
	}
	return nil
}

// jitPhase times what a login costs the agent before the first signature
// (new connection, session-bind, List) when the certificate must be issued
// (cold: each login goes to a host whose route has no certificate yet)
// and when it is cached (warm: the same host again).
func (b *bench) jitPhase() error {
	nroutes := len(b.hosts)
	local, err := b.warden("jit-local", "none", true, nil, b.routes(nroutes, "", ""))
	if err != nil {
		return err
	}
	type issuer struct {
		name  string
		delay time.Duration
		w     *proc
		next  int // next cold route
	}
	issuers := []*issuer{{name: "local", w: local, next: 1}}
	for _, d := range []time.Duration{0, 50 * time.Millisecond} {
		srv, err := openbaotest.New(openbaotest.Options{})
		if err != nil {
			return err
		}
		defer srv.Close()
		name := fmt.Sprintf("openbao-%dms", d.Milliseconds())
		w, err := b.warden("jit-"+name, "none", true, map[string]any{
			"kind": "openbao", "openbao": map[string]any{"address": srv.URL, "token": srv.RootToken()},
		}, b.routes(nroutes, srv.Mount(), "eng"))
		if err != nil {
			return err
		}
		srv.SetDelay(d)
		issuers = append(issuers, &issuer{name: name, delay: d, w: w, next: 1})
	}
	// Issue route 0's certificate: the warm target.
	for _, is := range issuers {
		if err := login(is.w.socket, b.hosts[0]); err != nil {
			return fmt.Errorf("%s: first issuance: %w", is.name, err)
		}
	}
	for rep := 1; rep <= b.o.reps; rep++ {
		order := slices.Clone(issuers)
		mrand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, is := range order {
			modes := []string{"cold", "warm"}
			if rep%2 == 0 {
				modes = []string{"warm", "cold"}
			}
			for _, mode := range modes {
				n := b.o.warmN
				op := func() error { return login(is.w.socket, b.hosts[0]) }
				if mode == "cold" {
					n = b.o.coldN
					if is.delay > 0 {
						n = max(b.o.coldN/3, 5) // 50 ms each: keep the run short
					}
					op = func() error {
						h := b.hosts[is.next]
						is.next++
						return login(is.w.socket, h)
					}
				}
				s, err := runCount(n, op, []*proc{is.w})
				if err != nil {
					return err
				}
				r := b.rep.fromSample("jit", "warden", s, is.w, nil)
				r.Issuer, r.Mode, r.Clients, r.Rep, r.Audit = is.name, mode, 1, rep, auditDisk
				r.Note = "op = new connection + session-bind + List; cold = a route with no certificate yet (issuance), warm = cached"
				b.rep.add(r)
			}
		}
	}
	return nil
}

// rssPhase holds idle connections open against fresh agents and reads
// their resident memory before and after.
func (b *bench) rssPhase() error {
	sa, err := b.sshAgent("ssh-agent-rss", 1)
	if err != nil {
		return err
	}
	kr, err := b.keyring()
	if err != nil {
		return err
	}
	w, err := b.warden("rss", sa.socket, false, nil, b.routes(1, "", ""))
	if err != nil {
		return err
	}
	for _, t := range []struct {
		name string
		p    *proc
	}{{"ssh-agent", sa}, {"keyring", kr}, {"warden", w}} {
		time.Sleep(200 * time.Millisecond)
		before, err := rssKiB(t.p.pid())
		if err != nil {
			return err
		}
		var conns []net.Conn
		var firstErr error
		for range b.o.idle {
			c, err := net.Dial("unix", t.p.socket)
			if err == nil {
				err = rawQuery(c)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			conns = append(conns, c)
		}
		time.Sleep(300 * time.Millisecond)
		after, err := rssKiB(t.p.pid())
		for _, c := range conns {
			c.Close()
		}
		if err != nil {
			return err
		}
		r := b.rep.base("rss", t.name)
		r.Clients, r.RSSBefore, r.RSSAfter = len(conns), before, after
		r.Errors = b.o.idle - len(conns)
		if firstErr != nil {
			r.FirstErr = firstErr.Error()
		}
		if len(conns) > 0 {
			r.PerConnKiB = float64(after-before) / float64(len(conns))
		}
		r.Note = "each connection answered one query extension, then idle"
		b.rep.add(r)
	}
	b.stopProc(w)
	b.stopProc(kr)
	b.stopProc(sa)
	return nil
}

// loginPhase times full `ssh host true` logins to a loopback sshd, through
// warden (its cached certificate) and through ssh-agent (a plain key in
// authorized_keys), alternating.
func (b *bench) loginPhase() error {
	u, err := user.Current()
	if err != nil {
		return err
	}
	caPath := filepath.Join(b.dir, "login-ca", "ca_ed25519")
	ca, err := signer.OpenLocalCA(caPath, nil)
	if err != nil {
		return err
	}
	caPub, err := ca.CAPublicKey(context.Background())
	if err != nil {
		return err
	}
	d, err := startSSHD(filepath.Join(b.dir, "sshd"), caPub, b.userPub)
	if err != nil {
		return err
	}
	defer d.stop()
	sa, err := b.sshAgent("ssh-agent-login", 1)
	if err != nil {
		return err
	}
	w, err := b.warden("login", "none", true, map[string]any{"kind": "local", "local": map[string]any{"ca_key": caPath}},
		[]route{{Name: "loopback", HostKeys: []string{d.hostKeyLine}, Principals: []string{u.Username}}})
	if err != nil {
		return err
	}
	targets := []struct {
		name string
		p    *proc
		lat  []time.Duration
		errs int
		err  string
	}{{name: "warden-cert", p: w}, {name: "ssh-agent", p: sa}}
	for i := -2; i < b.o.logins; i++ { // two warm-up logins each
		for j := range targets {
			t := &targets[(i+j+2)%2] // alternate which goes first
			t0 := time.Now()
			err := d.login(u.Username, t.p.socket)
			lat := time.Since(t0)
			if i < 0 {
				if err != nil {
					return fmt.Errorf("%s warm-up login: %w", t.name, err)
				}
				continue
			}
			if err != nil {
				t.errs++
				if t.err == "" {
					t.err = err.Error()
				}
				continue
			}
			t.lat = append(t.lat, lat)
		}
	}
	certLogins := strings.Count(d.log.String(), "ED25519-CERT")
	for _, t := range targets {
		slices.Sort(t.lat)
		s := &sample{Ops: len(t.lat), Errors: t.errs, FirstErr: t.err, Lat: t.lat}
		r := b.rep.fromSample("login", t.name, s, nil, nil)
		r.OpsPerSec = 0
		r.Clients = 1
		if t.name == "warden-cert" {
			r.Note = "sshd accepted " + strconv.Itoa(certLogins) + " certificate logins in all (warm-up included)"
			r.Audit = auditDisk
		} else {
			r.Note = "plain ed25519 key in authorized_keys"
		}
		b.rep.add(r)
	}
	b.stopProc(w)
	b.stopProc(sa)
	return nil
}

// sshd is a loopback OpenSSH server trusting one user CA and one key.
type sshd struct {
	p           *proc
	port        int
	dir         string
	hostKeyLine string
	log         *lockedBuffer
}

func (d *sshd) stop() { d.p.stop() }

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
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"Port " + strconv.Itoa(port), "ListenAddress 127.0.0.1", "HostKey " + hk, "PidFile none",
		"TrustedUserCAKeys " + ca, "AuthorizedKeysFile " + ak, "AuthorizedPrincipalsFile none",
		"UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel VERBOSE", "",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	sshdBin := "/usr/sbin/sshd"
	if p, err := exec.LookPath("sshd"); err == nil {
		sshdBin, _ = filepath.Abs(p)
	}
	d := &sshd{port: port, dir: dir, hostKeyLine: strings.TrimSpace(string(pub))}
	cmd := exec.Command(sshdBin, "-D", "-e", "-f", cfg)
	d.p = &proc{name: "sshd", cmd: cmd, exited: make(chan struct{}), log: &lockedBuffer{}}
	d.log = d.p.log
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(d.p.exited) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			break
		}
		select {
		case <-d.p.exited:
			return nil, fmt.Errorf("sshd exited:\n%s", d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("sshd did not listen:\n%s", d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", port, d.hostKeyLine)), 0o600)
	sc := strings.Join([]string{
		"Host *", "  IdentityFile " + filepath.Join(dir, "no-such-key"), "  UserKnownHostsFile " + kh,
		"  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes", "  UpdateHostKeys no", "  BatchMode yes",
		"  PasswordAuthentication no", "  KbdInteractiveAuthentication no", "  ControlMaster no", "  ControlPath none",
		"  ConnectTimeout 10", "  LogLevel ERROR", "",
	}, "\n")
	return d, os.WriteFile(filepath.Join(dir, "ssh_config"), []byte(sc), 0o600)
}

// login runs `ssh user@127.0.0.1 true` with agentSocket as the only source
// of keys.
func (d *sshd) login(user, agentSocket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", filepath.Join(d.dir, "ssh_config"), "-o", "IdentityAgent="+agentSocket,
		"-p", strconv.Itoa(d.port), user+"@127.0.0.1", "true")
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+agentSocket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
