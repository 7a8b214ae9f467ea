package main

// The seed corpora of the fuzz targets, recorded from real traffic (issue
// 7): TestRecordSeeds drives real ssh, ssh-add and warden-agent programs
// against a real warden-agent, sshd and ssh-agent, through a recording
// proxy, and writes what it saw as Go fuzz corpus files into each
// package's testdata/fuzz/<FuzzTarget>/. It runs only on demand:
//
//	make fuzz-seeds      (WARDEN_RECORD_SEEDS=1 go test -run '^TestRecordSeeds$' ./cmd/warden-agent)
//
// `make test` then runs the recorded seeds with every fuzz target. Every
// private key in the recordings is a throw-away key made by this test.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

// seedPrefixes are the names the recorder writes; a run removes its old
// files (and only those) before writing new ones, so a fuzzer's crash
// file or a hand-written seed in the same directory stays.
var seedPrefixes = []string{"ssh-", "warden-", "audit-", "known-hosts-", "openbao-", "examples-", "docs-", "recorded-"}

// seedTargets are the corpus directories the recorder writes, relative to
// the module root.
var seedTargets = []string{
	"agentproxy/testdata/fuzz/FuzzServeConnection",
	"agentproxy/testdata/fuzz/FuzzParseSessionBind",
	"agentproxy/testdata/fuzz/FuzzParseUserauth",
	"audit/testdata/fuzz/FuzzVerify",
	"audit/testdata/fuzz/FuzzParseRecord",
	"catalog/testdata/fuzz/FuzzKnownHosts",
	"catalog/testdata/fuzz/FuzzLoadCatalog",
	"policy/testdata/fuzz/FuzzLoadPolicy",
	"signer/testdata/fuzz/FuzzParseSignResponse",
}

// maxSeed bounds one corpus file: the agent's frame limit is 256 KiB, and
// nothing recorded here comes near it.
const maxSeed = 256 << 10

// ---- the recording proxy ----

// seedConn is one recorded agent connection.
type seedConn struct {
	n        int    // accept order
	c2a, a2c []byte // client → agent, agent → client
}

// seedProxy listens on a unix socket and forwards every connection to the
// agent's socket, keeping a copy of the bytes each way. The agent sees the
// proxy (this test process) as its peer, so hints for logins recorded
// through it name this process's pid (see seedSSHConfig).
type seedProxy struct {
	t        *testing.T
	socket   string
	upstream string
	ln       *net.UnixListener

	mu     sync.Mutex // guards the fields below
	seq    int
	active int
	done   []seedConn
}

func startSeedProxy(t *testing.T, dir, upstream string) *seedProxy {
	t.Helper()
	p := &seedProxy{t: t, socket: filepath.Join(dir, "rec.sock"), upstream: upstream}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p.socket, 0o600)
	p.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.seq++
			p.active++
			n := p.seq
			p.mu.Unlock()
			go p.serve(c, n)
		}
	}()
	return p
}

func (p *seedProxy) serve(c *net.UnixConn, n int) {
	rec := seedConn{n: n}
	defer func() {
		p.mu.Lock()
		p.done = append(p.done, rec)
		p.active--
		p.mu.Unlock()
	}()
	defer c.Close()
	u, err := net.Dial("unix", p.upstream)
	if err != nil {
		return
	}
	defer u.Close()
	var c2a, a2c bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The copy first, so a frame the agent refuses to read is kept.
		io.Copy(io.MultiWriter(&c2a, u), c)
		u.(*net.UnixConn).CloseWrite()
	}()
	io.Copy(io.MultiWriter(&a2c, c), u)
	c.CloseWrite()
	wg.Wait()
	rec.c2a, rec.a2c = c2a.Bytes(), a2c.Bytes()
}

// take waits until every connection made so far has ended and returns
// them in accept order.
func (p *seedProxy) take() []seedConn {
	p.t.Helper()
	if !waitFor(15*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.active == 0
	}) {
		p.t.Fatalf("recording proxy: connections still open after 15 s")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.done
	p.done = nil
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out
}

// ---- agent protocol frames ----

type seedMsg struct {
	typ     byte
	payload []byte // without the type byte
}

// seedFrames splits a client → agent stream into its messages.
func seedFrames(stream []byte) []seedMsg {
	var out []seedMsg
	for len(stream) >= 4 {
		n := binary.BigEndian.Uint32(stream)
		if n == 0 || uint64(n) > uint64(len(stream)-4) {
			break
		}
		m := stream[4 : 4+n]
		out = append(out, seedMsg{typ: m[0], payload: m[1:]})
		stream = stream[4+n:]
	}
	return out
}

// seedString reads one SSH string.
func seedString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// extension returns an SSH_AGENTC_EXTENSION's name and contents.
func (m seedMsg) extension() (name string, contents []byte, ok bool) {
	if m.typ != 27 {
		return "", nil, false
	}
	n, rest, ok := seedString(m.payload)
	return string(n), rest, ok
}

// signData returns an SSH_AGENTC_SIGN_REQUEST's data.
func (m seedMsg) signData() ([]byte, bool) {
	if m.typ != 13 {
		return nil, false
	}
	_, rest, ok := seedString(m.payload)
	if !ok {
		return nil, false
	}
	data, _, ok := seedString(rest)
	return data, ok
}

// ---- corpus files ----

// seedWriter collects corpus files by target and writes them at the end.
type seedWriter struct {
	t     *testing.T
	root  string
	files map[string][]byte // target dir/name → value
}

func (w *seedWriter) add(target, name string, value []byte) {
	w.t.Helper()
	if len(value) == 0 {
		return
	}
	if len(value) > maxSeed {
		w.t.Fatalf("seed %s/%s is %d bytes, over %d", target, name, len(value), maxSeed)
	}
	key := target + "/" + name
	for i := 2; w.files[key] != nil; i++ {
		key = fmt.Sprintf("%s/%s-%d", target, name, i)
	}
	w.files[key] = value
}

func (w *seedWriter) write() {
	w.t.Helper()
	for _, dir := range seedTargets {
		ents, _ := os.ReadDir(filepath.Join(w.root, dir))
		for _, e := range ents {
			for _, p := range seedPrefixes {
				if strings.HasPrefix(e.Name(), p) {
					os.Remove(filepath.Join(w.root, dir, e.Name()))
				}
			}
		}
	}
	keys := make([]string, 0, len(w.files))
	for k := range w.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := filepath.Join(w.root, k)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(path, fuzzseed.Encode(w.files[k]), 0o644); err != nil {
			w.t.Fatal(err)
		}
		w.t.Logf("wrote %s (%d bytes of input)", k, len(w.files[k]))
	}
}

// addConns turns the connections of one recorded step into seeds: each
// client → agent stream for FuzzServeConnection, each session-bind's
// contents for FuzzParseSessionBind, each sign request's data for
// FuzzParseUserauth.
func (w *seedWriter) addConns(step string, conns []seedConn) {
	w.t.Helper()
	if len(conns) == 0 {
		w.t.Errorf("step %s: no agent connection recorded", step)
	}
	names := map[string]int{}
	for _, c := range conns {
		msgs := seedFrames(c.c2a)
		name := step
		if len(msgs) > 0 {
			if ext, _, ok := msgs[0].extension(); ok && strings.HasPrefix(ext, "hint@") && !strings.HasPrefix(step, "warden-hint") {
				name = step + "-hint"
			}
		}
		for _, m := range msgs {
			if ext, contents, ok := m.extension(); ok && ext == "session-bind@openssh.com" && len(contents) > 0 {
				var b struct {
					HostKey, SessionID, Signature []byte
					Forwarding                    bool
				}
				if ssh.Unmarshal(contents, &b) == nil && b.Forwarding && !strings.HasSuffix(name, "-forwarded") {
					name += "-forwarded"
				}
			}
		}
		if names[name]++; names[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, names[name])
		}
		w.add("agentproxy/testdata/fuzz/FuzzServeConnection", name, c.c2a)
		nb, ns := 0, 0
		for _, m := range msgs {
			if ext, contents, ok := m.extension(); ok && ext == "session-bind@openssh.com" {
				nb++
				w.add("agentproxy/testdata/fuzz/FuzzParseSessionBind", fmt.Sprintf("%s-bind%d", name, nb), contents)
			}
			if data, ok := m.signData(); ok {
				ns++
				w.add("agentproxy/testdata/fuzz/FuzzParseUserauth", fmt.Sprintf("%s-sign%d", name, ns), data)
			}
		}
	}
}

// ---- the recording ----

// seedHost is one ssh_config alias of a recording.
type seedHost struct {
	alias, hostName string
	s               *sshdProc
	agent           string // IdentityAgent and the hint's socket
	hintPid         string // the hint's --ssh-pid: "$PPID" for warden's own socket, this pid through the proxy
	knownHosts      string
	strict          string // StrictHostKeyChecking
	hashKnownHosts  bool
}

// seedSSHConfig writes an ssh_config with one Host block per alias and,
// for each, the Match block of `warden-agent ssh-config`. Through the
// proxy the agent sees this process as its peer, so the hint names this
// process's pid instead of ssh's ($PPID).
func seedSSHConfig(t *testing.T, e *testEnv, name string, hosts ...seedHost) string {
	t.Helper()
	var cfg strings.Builder
	for _, h := range hosts {
		host := h.hostName
		if host == "" {
			host = h.s.addr
		}
		strict := h.strict
		if strict == "" {
			strict = "yes"
		}
		hash := "no"
		if h.hashKnownHosts {
			hash = "yes"
		}
		fmt.Fprintf(&cfg, `Host %s
    HostName %s
    Port %d
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking %s
    HashKnownHosts %s
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 10
    IdentityFile %s/no-such-key
    ControlMaster no
    ControlPath none
    IdentityAgent %s
`, h.alias, host, h.s.port, h.knownHosts, strict, hash, e.dir, h.agent)
	}
	for _, h := range hosts {
		fmt.Fprintf(&cfg, "Match final originalhost %s exec \"%s hint --socket %s --ssh-pid %s --user %%r --host %%h --port %%p\"\n    IdentityAgent %s\n",
			h.alias, wardenExe, h.agent, h.hintPid, h.agent)
	}
	path := filepath.Join(e.dir, name)
	writeFile(t, path, cfg.String())
	return path
}

// TestRecordSeeds records the fuzz targets' seed corpora from real
// traffic. Run it with `make fuzz-seeds`.
func TestRecordSeeds(t *testing.T) {
	if os.Getenv("WARDEN_RECORD_SEEDS") != "1" {
		t.Skip("records the fuzz seed corpora; run with WARDEN_RECORD_SEEDS=1 (make fuzz-seeds)")
	}
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add", "ssh-keyscan")
	sshdPath(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	w := &seedWriter{t: t, root: root, files: map[string][]byte{}}
	user := loginUser(t)
	e := newTestEnv(t)
	self := strconv.Itoa(os.Getpid())

	// Throw-away keys: the upstream agent's, the ones ssh-add adds
	// through warden, a user CA and a certificate for ssh-add.
	keys := map[string]string{}
	for _, k := range []struct{ name, typ, bits string }{
		{"id_ed25519", "ed25519", ""}, {"id_ecdsa", "ecdsa", "256"}, {"id_rsa", "rsa", "2048"},
		{"id_certkey", "ed25519", ""}, {"user_ca", "ed25519", ""},
	} {
		args := []string{"-q", "-t", k.typ, "-N", "", "-C", "seed-" + k.name, "-f", filepath.Join(e.dir, k.name)}
		if k.bits != "" {
			args = append(args, "-b", k.bits)
		}
		if r := e.run(nil, "ssh-keygen", args...); r.code != 0 {
			t.Fatalf("ssh-keygen %s: %s", k.name, r)
		}
		pub, err := os.ReadFile(filepath.Join(e.dir, k.name+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		keys[k.name] = strings.TrimSpace(string(pub))
	}
	if r := e.run(nil, "ssh-keygen", "-q", "-s", filepath.Join(e.dir, "user_ca"), "-I", "seed-cert", "-n", user, "-V", "+1h",
		filepath.Join(e.dir, "id_certkey.pub")); r.code != 0 {
		t.Fatalf("ssh-keygen -s: %s", r)
	}

	// Two sshd's: "lab" on 127.0.0.1 (route by host name; the upstream RSA
	// and ECDSA keys are authorized there for route-less logins through
	// "plain") and "second" on 127.0.0.2 (route pinned by its host key,
	// for ssh -J and ssh -A). Both start with a placeholder CA; ca.pub is
	// rewritten once the agent printed its CA.
	placeholder := keygen(t, filepath.Join(e.dir, "placeholder-ca"), "placeholder-ca")
	lab := startSSHDOn(t, "127.0.0.1", placeholder, keys["id_rsa"], keys["id_ecdsa"])
	second := startSSHDOn(t, "127.0.0.2", placeholder)

	routesYAML := fmt.Sprintf(`# recorded by TestRecordSeeds
routes:
  - name: lab
    hosts: ["127.0.0.1"]
    principals: [%[1]q]
    ttl: 5m
    extensions:
      permit-pty: ""
      permit-port-forwarding: ""
      permit-agent-forwarding: ""
  - name: second
    hosts: ["127.0.0.2"]
    host_keys: [%[2]q]
    principals: [%[1]q]
    ttl: 5m
`, user, fwdKeyField(second.hostPub))
	e.writeConfig(routesYAML + fmt.Sprintf("known_hosts: [%q]\n", filepath.Join(e.dir, "no-such-known-hosts")))
	w.add("catalog/testdata/fuzz/FuzzLoadCatalog", "recorded-routes", []byte(routesYAML))

	up := startSSHAgent(t, e)
	a := startAgent(t, e, nil, "--upstream", up.socket)
	for _, s := range []*sshdProc{lab, second} {
		writeFile(t, filepath.Join(s.dir, "ca.pub"), a.ca+"\n")
	}
	p := startSeedProxy(t, e.dir, a.socket)

	kh := filepath.Join(e.dir, "known_hosts")
	writeFile(t, kh, fmt.Sprintf("[%s]:%d %s\n[localhost]:%d %s\n[%s]:%d %s\n",
		lab.addr, lab.port, lab.hostPub, lab.port, lab.hostPub, second.addr, second.port, second.hostPub))
	cfg := seedSSHConfig(t, e, "ssh_config",
		seedHost{alias: "target", s: lab, agent: p.socket, hintPid: self, knownHosts: kh},
		seedHost{alias: "plain", hostName: "localhost", s: lab, agent: p.socket, hintPid: self, knownHosts: kh},
		seedHost{alias: "second", s: second, agent: p.socket, hintPid: self, knownHosts: kh})

	step := func(name string, f func()) {
		t.Helper()
		p.take() // nothing from before
		f()
		w.addConns(name, p.take())
	}
	login := func(cfg, host string, extra ...string) result {
		t.Helper()
		word := habitsWord("seed")
		args := append([]string{"-F", cfg}, extra...)
		args = append(args, user+"@"+host, "echo", word)
		r := e.run(nil, "ssh", args...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != word {
			t.Errorf("ssh %s: want %q and exit 0, got %s", strings.Join(args, " "), word, r)
		}
		return r
	}
	add := func(args ...string) {
		t.Helper()
		if r := e.sshAdd(p.socket, nil, args...); r.code != 0 {
			t.Errorf("ssh-add %s through the proxy: %s", strings.Join(args, " "), r)
		}
	}
	askpass := filepath.Join(e.dir, "askpass.sh")
	writeFile(t, askpass, "#!/bin/sh\necho lock-passphrase\n")
	os.Chmod(askpass, 0o700)
	askEnv := []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}

	// ssh logins: hint, then session-bind, list, sign.
	step("ssh-login-ed25519-cert", func() { login(cfg, "target") })
	step("ssh-login-cached-cert", func() { login(cfg, "target") })
	step("ssh-login-pinned-host-key", func() { login(cfg, "second") })

	// StrictHostKeyChecking=accept-new: ssh writes known_hosts itself,
	// plain and hashed; those files are FuzzKnownHosts seeds.
	for _, hashed := range []bool{false, true} {
		name, file := "ssh-login-accept-new", filepath.Join(e.dir, "kh_accept_new")
		if hashed {
			name, file = name+"-hashed", file+"_hashed"
		}
		c := seedSSHConfig(t, e, "ssh_config_"+filepath.Base(file),
			seedHost{alias: "target", s: lab, agent: p.socket, hintPid: self, knownHosts: file, strict: "accept-new", hashKnownHosts: hashed},
			seedHost{alias: "second", s: second, agent: p.socket, hintPid: self, knownHosts: file, strict: "accept-new", hashKnownHosts: hashed})
		step(name, func() { login(c, "target") })
		step(name+"-pinned-host-key", func() { login(c, "second") })
		data, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("ssh with accept-new wrote no known_hosts: %v", err)
		}
		w.add("catalog/testdata/fuzz/FuzzKnownHosts", "known-hosts-"+strings.TrimPrefix(name, "ssh-login-"), data)
	}
	for _, hashed := range []bool{false, true} {
		args := []string{"-T", "5"}
		name := "known-hosts-keyscan"
		if hashed {
			args, name = append(args, "-H"), name+"-hashed"
		}
		var out []byte
		for _, s := range []*sshdProc{lab, second} {
			r := e.run(nil, "ssh-keyscan", append(args, "-p", strconv.Itoa(s.port), s.addr)...)
			if r.code != 0 || r.stdout == "" {
				t.Errorf("ssh-keyscan %s: %s", s.addr, r)
			}
			out = append(out, r.stdout...)
		}
		w.add("catalog/testdata/fuzz/FuzzKnownHosts", name, out)
	}

	// ssh -J: the jump ssh uses warden's own socket (its hint names its
	// own pid), the final hop goes through the proxy.
	jcfg := seedSSHConfig(t, e, "ssh_config_jump",
		seedHost{alias: "bastion", s: lab, agent: a.socket, hintPid: "$PPID", knownHosts: kh},
		seedHost{alias: "second", s: second, agent: p.socket, hintPid: self, knownHosts: kh})
	step("ssh-J-second-hop", func() { login(jcfg, "second", "-J", user+"@bastion") })

	// ssh -A: the inner ssh on the "bastion" (this machine) uses the
	// forwarded agent; its requests reach warden on a connection that
	// starts with the outer session's forwarding bind.
	innerKH := filepath.Join(e.dir, "inner_known_hosts")
	writeFile(t, innerKH, fmt.Sprintf("[%s]:%d %s\n", second.addr, second.port, second.hostPub))
	inner := filepath.Join(e.dir, "inner_ssh_config")
	writeFile(t, inner, fmt.Sprintf(`Host second
    HostName %s
    Port %d
    User %s
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    IdentityFile %s/no-such-inner-key
`, second.addr, second.port, user, innerKH, e.dir))
	step("ssh-A", func() {
		r := e.run(nil, "ssh", "-A", "-F", cfg, user+"@target", "ssh", "-F", inner, "second", "echo", "forwarded-ok")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "forwarded-ok" {
			t.Errorf("ssh -A target ssh second: %s", r)
		}
	})

	// ssh-add through warden to the upstream ssh-agent.
	step("ssh-add-l-cert-only", func() { add("-l") })
	step("ssh-add-ed25519", func() { add(filepath.Join(e.dir, "id_ed25519")) })
	step("ssh-add-ecdsa", func() { add(filepath.Join(e.dir, "id_ecdsa")) })
	step("ssh-add-rsa", func() { add(filepath.Join(e.dir, "id_rsa")) })
	step("ssh-add-cert", func() { add(filepath.Join(e.dir, "id_certkey")) })
	step("ssh-add-l", func() { add("-l") })
	step("ssh-add-L", func() { add("-L") })
	step("ssh-add-T-rsa", func() { add("-T", filepath.Join(e.dir, "id_rsa.pub")) })
	step("ssh-add-T-ecdsa", func() { add("-T", filepath.Join(e.dir, "id_ecdsa.pub")) })

	// A login where no route applies: the upstream keys sign (RSA with
	// rsa-sha2-512 flags, or ECDSA).
	step("ssh-login-upstream-key", func() { login(cfg, "plain") })

	step("ssh-add-c-ecdsa", func() { add("-c", filepath.Join(e.dir, "id_ecdsa")) })
	step("ssh-add-t-ed25519", func() { add("-t", "300", filepath.Join(e.dir, "id_ed25519")) })
	destKH := filepath.Join(e.dir, "dest_known_hosts")
	writeFile(t, destKH, fmt.Sprintf("%s %s\nbastion %s\n", second.addr, second.hostPub, lab.hostPub))
	step("ssh-add-h-ed25519", func() {
		// ssh-add -h sends restrict-destination-v00@openssh.com; warden may
		// refuse it, and the attempt is still a seed.
		r := e.sshAdd(p.socket, nil, "-H", destKH, "-h", user+"@"+second.addr, "-h", "bastion>"+user+"@"+second.addr,
			filepath.Join(e.dir, "id_ed25519"))
		t.Logf("ssh-add -h: %s", r)
	})
	step("ssh-add-d-ecdsa", func() { add("-d", filepath.Join(e.dir, "id_ecdsa.pub")) })
	step("ssh-add-x", func() {
		if r := e.sshAdd(p.socket, askEnv, "-x"); r.code != 0 {
			t.Errorf("ssh-add -x: %s", r)
		}
	})
	step("ssh-add-l-locked", func() { e.sshAdd(p.socket, nil, "-l") })
	step("ssh-add-X", func() {
		if r := e.sshAdd(p.socket, askEnv, "-X"); r.code != 0 {
			t.Errorf("ssh-add -X: %s", r)
		}
	})
	step("ssh-add-D", func() { add("-D") })

	// warden-agent's own extensions.
	step("warden-status", func() {
		if r := e.warden("status", "--socket", p.socket); r.code > 1 {
			t.Errorf("warden-agent status: %s", r)
		}
	})
	step("warden-status-json", func() { e.warden("status", "--json", "--socket", p.socket) })
	step("warden-hint", func() {
		e.warden("hint", "--socket", p.socket, "--ssh-pid", self, "--user", user, "--host", "127.0.0.1", "--port", strconv.Itoa(lab.port))
	})
	step("warden-hint-no-route", func() {
		e.warden("hint", "--socket", p.socket, "--ssh-pid", self, "--user", user, "--host", "unrouted.example.com", "--port", "22")
	})

	// The audit log of this run, once every record is written.
	time.Sleep(500 * time.Millisecond)
	seedAudit(t, w, e.auditPath())
	seedExamples(t, w, root)
	seedOpenBao(t, w, root)
	if t.Failed() {
		t.Fatal("not writing the corpora of a failed recording")
	}
	w.write()
}

// seedAudit: the whole log for FuzzVerify (and its second half, whose
// first record does not start the chain), one line per event for
// FuzzParseRecord.
func seedAudit(t *testing.T, w *seedWriter, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for len(strings.Join(lines, "")) > 128<<10 {
		lines = lines[:len(lines)*3/4]
	}
	w.add("audit/testdata/fuzz/FuzzVerify", "audit-log-recorded", []byte(strings.Join(lines, "")))
	w.add("audit/testdata/fuzz/FuzzVerify", "audit-log-tail", []byte(strings.Join(lines[len(lines)/2:], "")))
	seen := map[string]bool{}
	for _, l := range lines {
		var rec struct {
			Event string `json:"event"`
		}
		line := []byte(strings.TrimSuffix(l, "\n"))
		if err := json.Unmarshal(line, &rec); err != nil || seen[rec.Event] {
			continue
		}
		seen[rec.Event] = true
		w.add("audit/testdata/fuzz/FuzzParseRecord", "audit-"+seedSlug(rec.Event), line)
	}
}

// seedExamples: the example files and the YAML blocks of the docs for
// FuzzLoadCatalog (agent.yaml holds the catalog) and FuzzLoadPolicy.
func seedExamples(t *testing.T, w *seedWriter, root string) {
	t.Helper()
	for _, f := range []struct{ file, target string }{
		{"examples/catalog.yaml", "catalog/testdata/fuzz/FuzzLoadCatalog"},
		{"examples/policy.yaml", "policy/testdata/fuzz/FuzzLoadPolicy"},
	} {
		data, err := os.ReadFile(filepath.Join(root, f.file))
		if err != nil {
			t.Fatal(err)
		}
		w.add(f.target, seedSlug(f.file), data)
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, d := range docs {
		data, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, block := range yamlBlocks(string(data)) {
			n++
			name := fmt.Sprintf("docs-%s-%d", seedSlug(strings.TrimSuffix(filepath.Base(d), ".md")), n)
			target := "catalog/testdata/fuzz/FuzzLoadCatalog"
			if regexp.MustCompile(`(?m)^rules:`).MatchString(block) {
				target = "policy/testdata/fuzz/FuzzLoadPolicy"
			}
			w.add(target, name, []byte(block))
		}
	}
}

func yamlBlocks(md string) []string {
	var out []string
	var cur *strings.Builder
	for _, l := range strings.SplitAfter(md, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```yaml"):
			cur = &strings.Builder{}
		case cur != nil && strings.HasPrefix(l, "```"):
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l)
		}
	}
	return out
}

// seedOpenBao: every response body of the real OpenBao 2.6.2 transcript,
// as recorded, for FuzzParseSignResponse (which also runs the parsers of
// the login, lookup and CA key answers).
func seedOpenBao(t *testing.T, w *seedWriter, root string) {
	t.Helper()
	path := os.Getenv("WARDEN_OPENBAO_TRANSCRIPT")
	if path == "" {
		path = filepath.Join(root, "..", "shared", "openbao", "transcript-2.6.2.md")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("OpenBao transcript (set WARDEN_OPENBAO_TRANSCRIPT): %v", err)
	}
	var section string
	var body *strings.Builder
	flush := func() {
		if body != nil {
			w.add("signer/testdata/fuzz/FuzzParseSignResponse", "openbao-"+seedSlug(section), []byte(strings.TrimRight(body.String(), "\n")+"\n"))
		}
		body = nil
	}
	for _, l := range strings.SplitAfter(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "### "):
			flush()
			section = strings.TrimSpace(strings.TrimPrefix(l, "### "))
		case body == nil && strings.TrimSpace(l) == "response:":
			body = &strings.Builder{}
		case body != nil:
			body.WriteString(l)
		}
	}
	flush()
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

func seedSlug(s string) string {
	return strings.Trim(slugRE.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
