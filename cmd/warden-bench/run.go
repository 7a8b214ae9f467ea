package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

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
	mu      sync.Mutex
	procs   []*proc // stopped at the end, or on SIGINT/SIGTERM
	userKey ed25519.PrivateKey
	userPub ssh.PublicKey
	hosts   []ssh.Signer // hosts[0] is the signing route's; the rest are cold routes
	login   *loginEnv    // the loopback sshd and ssh-agent of the ssh phases, once started
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
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			live.killAll()
			b.mu.Lock()
			procs := slices.Clone(b.procs)
			b.mu.Unlock()
			for _, p := range procs {
				p.stop()
			}
			if !o.keep {
				os.RemoveAll(dir)
				os.RemoveAll(shm)
			} else {
				fmt.Fprintf(os.Stderr, "kept %s and %s\n", dir, shm)
			}
		})
	}
	defer cleanup()
	// Interrupted, stop every process the bench started before exiting.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "warden-bench: %v: stopping the processes it started\n", s)
		cleanup()
		os.Exit(130)
	}()
	b.meta = collectMeta(o)
	if b.rep, err = newReporter(o.out, b.meta); err != nil {
		return err
	}
	defer b.rep.close()
	fmt.Fprintf(os.Stderr, "warden-bench: %s, %s, commit %s, %d CPUs\n", b.meta.Go, b.meta.OpenSSH, b.meta.Commit, b.meta.CPUs)

	_, b.userKey, _ = ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(b.userKey)
	b.userPub = signer.PublicKey()
	b.needHosts(1 + o.reps*o.coldN)

	phases := []struct {
		name string
		fn   func() error
	}{{"sign", b.signPhase}, {"list", b.listPhase}, {"jit", b.jitPhase}, {"rss", b.rssPhase},
		{"hint", b.hintPhase}, {"login", b.loginPhase}, {"burst", b.burstPhase}, {"master", b.masterPhase}}
	for _, ph := range phases {
		if !o.phases[ph.name] {
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "== %s\n", ph.name)
		if err := ph.fn(); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		took := time.Since(t0)
		b.rep.took(ph.name, took)
		fmt.Fprintf(os.Stderr, "   %s took %s\n", ph.name, took.Round(time.Second))
	}
	return b.rep.writeTable()
}

// needHosts makes sure there are at least n host keys.
func (b *bench) needHosts(n int) {
	for len(b.hosts) < n {
		_, hk, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(hk)
		b.hosts = append(b.hosts, s)
	}
}

func (b *bench) keep(p *proc, err error) (*proc, error) {
	if err == nil {
		b.addProc(p)
	}
	return p, err
}

func (b *bench) addProc(p *proc) {
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
}

func (b *bench) stopProc(p *proc) {
	p.stop()
	b.mu.Lock()
	b.procs = slices.DeleteFunc(b.procs, func(q *proc) bool { return q == p })
	b.mu.Unlock()
}

func (b *bench) sshAgent(name string, nkeys int) (*proc, error) {
	keys := []ed25519.PrivateKey{b.userKey}
	for range nkeys - 1 {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys = append(keys, k)
	}
	return b.keep(startSSHAgent(b.o.sshAgent, name, b.dir, keys))
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
	audit := b.auditPath(name, auditOnDisk)
	return b.keep(startWarden(b.o.warden, b.dir, wardenSetup{name: name, upstream: upstream, audit: audit, signer: sgn, routes: routes}))
}

// auditPath is where the warden named name writes its audit log.
func (b *bench) auditPath(name string, onDisk bool) string {
	if onDisk {
		return filepath.Join(b.dir, name, "state", "warden", "audit.log")
	}
	return filepath.Join(b.shm, name, "audit.log")
}

// wardenConfig is the agent.yaml of the warden named name.
func (b *bench) wardenConfig(name string) string {
	return filepath.Join(b.dir, name, "config", "agent.yaml")
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
		held, release, err := holdIdle(t.p.socket, b.o.idle)
		if err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		after, err := rssKiB(t.p.pid())
		release()
		if err != nil {
			return err
		}
		r := b.rep.base("rss", t.name)
		r.Clients, r.RSSBefore, r.RSSAfter = held.ok, before, after
		r.Errors, r.FirstErr = b.o.idle-held.ok, held.firstErr
		if held.ok > 0 {
			r.PerConnKiB = float64(after-before) / float64(held.ok)
		}
		r.Note = fmt.Sprintf("each connection answered one query extension, then idle; held by processes of %d connections each (warden caps connections per peer process)", idlePerProc)
		b.rep.add(r)
	}
	b.stopProc(w)
	b.stopProc(kr)
	b.stopProc(sa)
	return b.rssRoutes()
}

// rssRoutes reads the resident memory of an agent with -rss-routes routes
// (local CA) before and after it issued every route's certificate: one
// login (session-bind to the route's pinned host key, then List) each.
func (b *bench) rssRoutes() error {
	n := b.o.rssRoutes
	b.needHosts(n)
	w, err := b.warden("rss-routes", "none", false, nil, b.routes(n, "", ""))
	if err != nil {
		return err
	}
	defer b.stopProc(w)
	time.Sleep(200 * time.Millisecond)
	before, err := rssKiB(w.pid())
	if err != nil {
		return err
	}
	r := b.rep.base("rss", "warden-routes")
	for i := range n {
		if err := login(w.socket, b.hosts[i]); err != nil {
			r.Errors++
			if r.FirstErr == "" {
				r.FirstErr = fmt.Sprintf("route %d: %v", i, err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	after, err := rssKiB(w.pid())
	if err != nil {
		return err
	}
	r.Routes, r.Ops, r.RSSBefore, r.RSSAfter = n, n-r.Errors, before, after
	r.Note = "VmRSS after issuing one certificate per route (local CA, audit on tmpfs); ops = certificates held"
	b.rep.add(r)
	return nil
}
