package main

// OpenSSH's own agent regression tests (regress/agent.sh,
// agent-restrict.sh and the confirm part of ssh-agent), re-expressed
// through warden (issue 7): real ssh, ssh-add, ssh-keygen and sshd talk to
// warden-agent's socket, and warden proxies to a real ssh-agent. Every
// scenario runs twice, once directly against an ssh-agent and once
// through warden in front of a second ssh-agent, and the two transcripts
// (exit codes and output of every command) must be equal: behaviour that
// differs is a warden bug. Warden runs with a catalog route for a host
// that never appears, so it holds and lists no certificate of its own and
// must behave exactly as the ssh-agent behind it.
//
// Covered elsewhere and not repeated here: `ssh-add -t` expiry and `-x`/
// `-X` lock (TestE2EUpstreamAgent), a wrong unlock passphrase
// (agentproxy), peer uid refusal (TestE2EOtherUIDRefused).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// regressNoRoutes is an agent.yaml whose only route matches no host in
// these tests: warden issues nothing and lists only the upstream keys.
const regressNoRoutes = `routes:
  - name: elsewhere
    hosts: ["no-such-host.invalid"]
    principals: ["nobody"]
    ttl: 5m
`

// regressSide is one way of reaching an ssh-agent: directly, or through
// warden.
type regressSide struct {
	name   string
	socket string         // what ssh-add and ssh talk to
	agent  *upstreamAgent // the ssh-agent holding the keys
	warden *agentProc     // nil when direct
	tr     []string       // the transcript of this side
}

// regressSides starts the two sides: an ssh-agent used directly, and
// warden in front of a second ssh-agent. envFor gives each ssh-agent its
// extra environment (nil for none).
func regressSides(t *testing.T, e *testEnv, envFor func(sock string) []string) []*regressSide {
	t.Helper()
	env := func(sock string) []string {
		if envFor == nil {
			return nil
		}
		return envFor(sock)
	}
	direct := startSSHAgentAt(t, e, "direct.sock", env("direct.sock")...)
	up := startSSHAgentAt(t, e, "up.sock", env("up.sock")...)
	e.writeConfig(regressNoRoutes)
	a := startAgent(t, e, nil, "--upstream", up.socket)
	return []*regressSide{
		{name: "ssh-agent", socket: direct.socket, agent: direct},
		{name: "warden", socket: a.socket, agent: up, warden: a},
	}
}

// note appends a step to the side's transcript: its label, exit code and
// the output that matters, with the side's socket path neutralised.
func (s *regressSide) note(label string, r result, outputs ...string) {
	entry := fmt.Sprintf("%s: exit %d", label, r.code)
	for _, o := range outputs {
		entry += "\n" + strings.ReplaceAll(strings.TrimRight(o, "\n"), s.socket, "$SOCK")
	}
	s.tr = append(s.tr, entry)
}

// regressCompare fails when the transcripts of the sides differ, naming
// the first step that does.
func regressCompare(t *testing.T, sides []*regressSide) {
	t.Helper()
	a, b := sides[0], sides[1]
	for i := 0; i < max(len(a.tr), len(b.tr)); i++ {
		var x, y string
		if i < len(a.tr) {
			x = a.tr[i]
		}
		if i < len(b.tr) {
			y = b.tr[i]
		}
		if x != y {
			t.Errorf("%s and %s differ at step %d:\n--- %s\n%s\n--- %s\n%s", a.name, b.name, i+1, a.name, x, b.name, y)
			return
		}
	}
}

// add runs ssh-add on the side's socket and records it.
func (s *regressSide) add(e *testEnv, label string, args ...string) result {
	e.t.Helper()
	r := e.sshAdd(s.socket, nil, args...)
	s.note(label, r, r.stdout, r.stderr)
	return r
}

// mustAdd is add that must exit 0.
func (s *regressSide) mustAdd(e *testEnv, label string, args ...string) {
	e.t.Helper()
	if r := s.add(e, label, args...); r.code != 0 {
		e.t.Fatalf("%s: ssh-add %s: %s", s.name, strings.Join(args, " "), r)
	}
}

// list runs ssh-add -l and returns its lines; an empty agent must answer
// exit 1 and "The agent has no identities.", as ssh-agent does.
func (s *regressSide) list(e *testEnv, label string) []string {
	e.t.Helper()
	r := s.add(e, label+" (ssh-add -l)", "-l")
	return s.checkList(e, "-l", r)
}

// listPub is list for ssh-add -L, returning "type blob" of each line.
func (s *regressSide) listPub(e *testEnv, label string) []string {
	e.t.Helper()
	r := s.add(e, label+" (ssh-add -L)", "-L")
	var out []string
	for _, l := range s.checkList(e, "-L", r) {
		out = append(out, regressKeyField(l))
	}
	return out
}

func (s *regressSide) checkList(e *testEnv, flag string, r result) []string {
	e.t.Helper()
	switch {
	case r.code == 1 && strings.TrimSpace(r.stdout) == "The agent has no identities.":
		return nil
	case r.code == 0 && r.stdout != "":
		return nonEmptyLines(r.stdout)
	}
	e.t.Fatalf("%s: ssh-add %s: want exit 0 with keys or exit 1 and \"The agent has no identities.\": %s", s.name, flag, r)
	return nil
}

// regressKeyField is a public key line without its comment.
func regressKeyField(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}

// regressKeygen makes a key pair at path with ssh-keygen args and returns
// the public line.
func regressKeygen(t *testing.T, path, comment string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-C", comment, "-f", path}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pub))
}

// regressKeygenL is `ssh-keygen -l -f file`: the line ssh-add -l must
// print for that key.
func regressKeygenL(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -l -f %s: %v\n%s", file, err, out)
	}
	return strings.TrimSpace(string(out))
}

func regressReadPub(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// regressHost is one ssh_config alias for a test sshd; the alias is its
// HostKeyAlias, so known_hosts (and ssh-add -h) name it by the alias.
type regressHost struct {
	alias string
	s     *sshdProc
}

// regressSSHConfig writes known_hosts (one line per alias, plus extra
// lines) and an ssh_config with one Host block per alias. Nothing points
// at an agent: ssh uses SSH_AUTH_SOCK, and forwarded ssh on the "remote"
// side uses the forwarded agent. There is no warden Match block: the
// logins use the agent's keys only.
func regressSSHConfig(t *testing.T, e *testEnv, extraKnownHosts []string, hosts ...regressHost) (cfg, knownHosts string) {
	t.Helper()
	knownHosts = filepath.Join(e.dir, "regress_known_hosts")
	var kh, c strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&kh, "%s %s\n", h.alias, h.s.hostPub)
		fmt.Fprintf(&c, `Host %s
    HostName %s
    Port %d
    HostKeyAlias %[1]s
`, h.alias, h.s.addr, h.s.port)
	}
	for _, l := range extraKnownHosts {
		kh.WriteString(l + "\n")
	}
	fmt.Fprintf(&c, `Host *
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 20
    ServerAliveInterval 0
    IdentityFile %s/no-such-key
    ControlMaster no
    ControlPath none
    LogLevel ERROR
`, knownHosts, e.dir)
	if err := os.WriteFile(knownHosts, []byte(kh.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(e.dir, "regress_ssh_config")
	if err := os.WriteFile(cfg, []byte(c.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, knownHosts
}

// ssh runs `ssh -F cfg args...` with the side's socket as SSH_AUTH_SOCK.
func (s *regressSide) ssh(e *testEnv, cfg string, args ...string) result {
	e.t.Helper()
	return e.run([]string{"SSH_AUTH_SOCK=" + s.socket}, "ssh", append([]string{"-F", cfg}, args...)...)
}

// login logs in to host as user with exactly the agent key whose public
// half is pubFile (IdentitiesOnly; the private key is never read: ssh
// finds the key in the agent), runs echo and records whether it worked.
func (s *regressSide) login(e *testEnv, cfg, label, user, host, pubFile string, extra ...string) bool {
	e.t.Helper()
	word := fmt.Sprintf("regress-%d", time.Now().UnixNano())
	args := append([]string{"-o", "IdentitiesOnly=yes", "-o", "IdentityFile=" + pubFile}, extra...)
	args = append(args, user+"@"+host, "echo", word)
	r := s.ssh(e, cfg, args...)
	ok := r.code == 0 && strings.TrimSpace(r.stdout) == word
	s.note(fmt.Sprintf("%s: login %s with %s", label, host, filepath.Base(pubFile)), result{code: okCode(ok)})
	if !ok && testing.Verbose() {
		e.t.Logf("%s: %s: ssh to %s with %s: %s", s.name, label, host, filepath.Base(pubFile), r)
	}
	return ok
}

// okCode is the exit code a transcript records for a step that worked
// or not.
func okCode(ok bool) int {
	if ok {
		return 0
	}
	return 1
}

// regressAccepted counts the "Accepted publickey" lines of an sshd log
// that contain every one of parts.
func regressAccepted(log string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "Accepted publickey for ") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			n++
		}
	}
	return n
}

// regressWaitAccepted waits until sshd logged want logins matching parts
// (its log arrives through a pipe, possibly after ssh exited).
func regressWaitAccepted(s *sshdProc, want int, parts ...string) bool {
	return waitFor(10*time.Second, func() bool { return regressAccepted(s.log.String(), parts...) >= want }) &&
		regressAccepted(s.log.String(), parts...) == want
}

// regressKeyType is one key type of agent.sh's SSH_KEYTYPES loop.
type regressKeyType struct {
	name     string   // the file name
	args     []string // ssh-keygen arguments
	listType string   // the type ssh-add -l shows
}

var regressKeyTypes = []regressKeyType{
	{"rsa", []string{"-t", "rsa"}, "RSA"},
	{"rsa2048", []string{"-t", "rsa", "-b", "2048"}, "RSA"},
	{"ecdsa256", []string{"-t", "ecdsa", "-b", "256"}, "ECDSA"},
	{"ecdsa384", []string{"-t", "ecdsa", "-b", "384"}, "ECDSA"},
	{"ecdsa521", []string{"-t", "ecdsa", "-b", "521"}, "ECDSA"},
	{"ed25519", []string{"-t", "ed25519"}, "ED25519"},
}

// TestRegressListExitCodes is agent.sh's exit codes of ssh-add -l and -L:
// 1 and "The agent has no identities." on an empty agent, 0 with keys, 2
// when no agent answers on the socket. Warden with no upstream keys and
// no certificates is an empty agent; warden stopped is no agent.
func TestRegressListExitCodes(t *testing.T) {
	needPrograms(t, "ssh-keygen", "ssh-agent", "ssh-add")
	e := newTestEnv(t)
	sides := regressSides(t, e, nil)
	key := filepath.Join(e.dir, "key")
	pub := regressKeygen(t, key, "regress-key", "-t", "ed25519")

	for _, s := range sides {
		for _, flag := range []string{"-l", "-L"} {
			r := s.add(e, "empty "+flag, flag)
			if r.code != 1 || strings.TrimSpace(r.stdout) != "The agent has no identities." {
				t.Errorf("%s: empty agent: ssh-add %s: want exit 1 and \"The agent has no identities.\", got %s", s.name, flag, r)
			}
		}
		s.mustAdd(e, "add", key)
		if r := s.add(e, "one key -l", "-l"); r.code != 0 || !strings.Contains(r.stdout, fingerprint(t, pub)) {
			t.Errorf("%s: ssh-add -l with one key: want exit 0 and its fingerprint, got %s", s.name, r)
		}
		if r := s.add(e, "one key -L", "-L"); r.code != 0 || regressKeyField(r.stdout) != regressKeyField(pub) {
			t.Errorf("%s: ssh-add -L with one key: want exit 0 and %q, got %s", s.name, pub, r)
		}
		s.mustAdd(e, "delete all", "-D")
		if r := s.add(e, "emptied -l", "-l"); r.code != 1 {
			t.Errorf("%s: ssh-add -l after -D: want exit 1, got %s", s.name, r)
		}
	}

	// Nothing answers: a socket that never existed, and each side's
	// socket once its agent is gone. ssh-agent removes its socket on
	// SIGTERM, warden on stop.
	if r := e.sshAdd(filepath.Join(e.dir, "nonexistent"), nil, "-l"); r.code != 2 {
		t.Errorf("SSH_AUTH_SOCK=nonexistent ssh-add -l: want exit 2, got %s", r)
	}
	sides[1].warden.stop(t)
	sides[0].agent.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sides[0].agent.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("ssh-agent did not exit within 10 s of SIGTERM")
	}
	for _, s := range sides {
		for _, flag := range []string{"-l", "-L"} {
			r := s.add(e, "gone "+flag, flag)
			if r.code != 2 || !strings.Contains(r.stderr, "Error connecting to agent") {
				t.Errorf("%s gone: ssh-add %s: want exit 2 and \"Error connecting to agent\", got %s", s.name, flag, r)
			}
		}
	}
	regressCompare(t, sides)
}

// TestRegressKeyTypes is agent.sh's key type loop, plain keys and
// certificates: for rsa (3072 and 2048 bits), ecdsa (256, 384, 521) and
// ed25519, ssh-add adds, -l shows ssh-keygen -l's line, -L the public
// key, ssh logs in with each key (to an sshd with authorized_keys) and
// each certificate (to an sshd that trusts only the CA), ssh-add -d
// removes exactly what it names (a key file takes its certificate along,
// a certificate file only the certificate), and -D removes everything.
// The transcript through warden equals ssh-agent's.
func TestRegressKeyTypes(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	sides := regressSides(t, e, nil)

	kd := filepath.Join(e.dir, "keys")
	if err := os.MkdirAll(kd, 0o700); err != nil {
		t.Fatal(err)
	}
	type key struct {
		regressKeyType
		path, pub, fp, listLine string
		certLine, certList      string // once signed
	}
	var keys []*key
	var authorized []string
	for _, kt := range regressKeyTypes {
		k := &key{regressKeyType: kt, path: filepath.Join(kd, kt.name)}
		k.pub = regressKeygen(t, k.path, "regress-"+kt.name, kt.args...)
		k.fp = fingerprint(t, k.pub)
		k.listLine = regressKeygenL(t, k.path+".pub")
		if !strings.HasSuffix(k.listLine, "("+kt.listType+")") {
			t.Fatalf("ssh-keygen -l of %s: %q, want type %s", kt.name, k.listLine, kt.listType)
		}
		keys = append(keys, k)
		authorized = append(authorized, k.pub)
	}
	caPub := regressKeygen(t, filepath.Join(kd, "ca"), "regress-ca", "-t", "ed25519")
	plainSSHD := startSSHD(t, caPub, authorized...)
	certSSHD := startSSHD(t, caPub) // trusts the CA only
	cfg, _ := regressSSHConfig(t, e, nil, regressHost{"plain", plainSSHD}, regressHost{"certs", certSSHD})

	// Plain keys.
	for _, s := range sides {
		for _, k := range keys {
			s.mustAdd(e, "add "+k.name, k.path)
		}
		var want []string
		for _, k := range keys {
			want = append(want, k.listLine)
		}
		if got := s.list(e, "all keys"); !slices.Equal(got, want) {
			t.Errorf("%s: ssh-add -l:\n got %q\nwant %q", s.name, got, want)
		}
		var wantPub []string
		for _, k := range keys {
			wantPub = append(wantPub, regressKeyField(k.pub))
		}
		if got := s.listPub(e, "all keys"); !slices.Equal(got, wantPub) {
			t.Errorf("%s: ssh-add -L:\n got %q\nwant %q", s.name, got, wantPub)
		}
		for _, k := range keys {
			before := regressAccepted(plainSSHD.log.String(), " "+k.fp)
			if !s.login(e, cfg, "key", user, "plain", k.path+".pub") {
				t.Errorf("%s: login with the agent's %s key failed", s.name, k.name)
			} else if !regressWaitAccepted(plainSSHD, before+1, " "+k.fp) {
				t.Errorf("%s: sshd did not log a login with the %s key %s", s.name, k.name, k.fp)
			}
		}
		// ssh-add -d removes exactly the one key.
		gone := keys[2]
		s.mustAdd(e, "delete "+gone.name, "-d", gone.path)
		want = slices.DeleteFunc(slices.Clone(want), func(l string) bool { return l == gone.listLine })
		if got := s.list(e, "after -d"); !slices.Equal(got, want) {
			t.Errorf("%s: after ssh-add -d %s, ssh-add -l:\n got %q\nwant %q", s.name, gone.name, got, want)
		}
		if s.login(e, cfg, "deleted key", user, "plain", gone.path+".pub") {
			t.Errorf("%s: login with the deleted %s key succeeded", s.name, gone.name)
		}
		if r := s.add(e, "delete again", "-d", gone.path); r.code != 1 {
			t.Errorf("%s: ssh-add -d of a key not in the agent: want exit 1, got %s", s.name, r)
		}
		s.mustAdd(e, "delete all", "-D")
		if got := s.list(e, "after -D"); len(got) != 0 {
			t.Errorf("%s: after ssh-add -D, ssh-add -l shows %q", s.name, got)
		}
	}

	// Certificates: sign every key; ssh-add key then loads key and
	// key-cert.pub.
	for _, k := range keys {
		out, err := exec.Command("ssh-keygen", "-q", "-s", filepath.Join(kd, "ca"), "-I", "id-"+k.name, "-n", user, k.path+".pub").CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -s for %s: %v\n%s", k.name, err, out)
		}
		k.certLine = regressReadPub(t, k.path+"-cert.pub")
		k.certList = regressKeygenL(t, k.path+"-cert.pub")
		if !strings.HasSuffix(k.certList, "("+k.listType+"-CERT)") {
			t.Fatalf("ssh-keygen -l of the %s certificate: %q", k.name, k.certList)
		}
	}
	for _, s := range sides {
		var want, wantPub []string
		for _, k := range keys {
			r := s.add(e, "add "+k.name+" with certificate", k.path)
			if r.code != 0 || !strings.Contains(r.stderr, "Certificate added: "+k.path+"-cert.pub") {
				t.Errorf("%s: ssh-add %s: want the key and its certificate added: %s", s.name, k.name, r)
			}
			want = append(want, k.listLine, k.certList)
			wantPub = append(wantPub, regressKeyField(k.pub), regressKeyField(k.certLine))
		}
		if got := s.list(e, "keys and certificates"); !slices.Equal(got, want) {
			t.Errorf("%s: ssh-add -l:\n got %q\nwant %q", s.name, got, want)
		}
		if got := s.listPub(e, "keys and certificates"); !slices.Equal(got, wantPub) {
			t.Errorf("%s: ssh-add -L:\n got %q\nwant %q", s.name, got, wantPub)
		}
		for _, k := range keys {
			id := "ID id-" + k.name + " "
			before := regressAccepted(certSSHD.log.String(), k.listType+"-CERT "+k.fp, id)
			if !s.login(e, cfg, "certificate", user, "certs", k.path+"-cert.pub") {
				t.Errorf("%s: login with the agent's %s certificate failed", s.name, k.name)
			} else if !regressWaitAccepted(certSSHD, before+1, k.listType+"-CERT "+k.fp, id) {
				t.Errorf("%s: sshd did not log a certificate login with %s", s.name, id)
			}
		}

		// ssh-add -d key-cert.pub removes the certificate alone; the key
		// stays and still logs in where it is authorized.
		certOnly := keys[5]
		s.mustAdd(e, "delete the "+certOnly.name+" certificate", "-d", certOnly.path+"-cert.pub")
		want = slices.DeleteFunc(want, func(l string) bool { return l == certOnly.certList })
		if got := s.list(e, "after -d cert"); !slices.Equal(got, want) {
			t.Errorf("%s: after ssh-add -d %s-cert.pub, ssh-add -l:\n got %q\nwant %q", s.name, certOnly.name, got, want)
		}
		if s.login(e, cfg, "deleted certificate", user, "certs", certOnly.path+"-cert.pub") {
			t.Errorf("%s: login with the deleted %s certificate succeeded", s.name, certOnly.name)
		}
		if !s.login(e, cfg, "key of the deleted certificate", user, "plain", certOnly.path+".pub") {
			t.Errorf("%s: the %s key no longer logs in after its certificate was deleted", s.name, certOnly.name)
		}

		// ssh-add -d key removes the key and its certificate.
		both := keys[3]
		r := s.add(e, "delete "+both.name+" and its certificate", "-d", both.path)
		if r.code != 0 || !strings.Contains(r.stderr, "Identity removed: "+both.path+" ") || !strings.Contains(r.stderr, "Identity removed: "+both.path+"-cert.pub ") {
			t.Errorf("%s: ssh-add -d %s: want the key and its certificate removed: %s", s.name, both.name, r)
		}
		want = slices.DeleteFunc(want, func(l string) bool { return l == both.listLine || l == both.certList })
		if got := s.list(e, "after -d key"); !slices.Equal(got, want) {
			t.Errorf("%s: after ssh-add -d %s, ssh-add -l:\n got %q\nwant %q", s.name, both.name, got, want)
		}

		s.mustAdd(e, "delete all", "-D")
		if got := s.list(e, "after -D"); len(got) != 0 {
			t.Errorf("%s: after ssh-add -D, ssh-add -l shows %q", s.name, got)
		}
	}
	regressCompare(t, sides)

	// Warden proxied every use of the keys, and made no certificate.
	recs := sides[1].warden.audit(t)
	if n := len(events(recs, "cert.issued")); n != 0 {
		t.Errorf("warden issued %d certificates; the catalog has no route for these hosts", n)
	}
	// 13 signatures: six keys, six certificates, one key after its
	// certificate was deleted. upstream.used is written off the reply path.
	waitFor(10*time.Second, func() bool { return len(events(sides[1].warden.audit(t), "upstream.used")) >= 13 })
	recs = sides[1].warden.audit(t)
	if n := len(events(recs, "upstream.used", "user", user)); n != 13 {
		t.Errorf("want 13 upstream.used records for user %s (one per login), got %d", user, n)
	}
	// Per side: six keys, then six keys with their certificates.
	if n := len(events(recs, "key.added")); n != 18 {
		t.Errorf("want 18 key.added records (6 keys, then 6 keys and 6 certificates), got %d", n)
	}
}

// regressAskpass writes the askpass program the upstream ssh-agents run
// to confirm a key's use (ssh-add -c): it appends one "prompt=" line and
// its prompt to the marker file named by $REGRESS_MARKER and exits with
// the number in $REGRESS_DECISION's file: 0 allows, 1 denies.
func regressAskpass(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "confirm-askpass.sh")
	script := `#!/bin/sh
{ echo "prompt=$SSH_ASKPASS_PROMPT"; echo "$1"; } >> "$REGRESS_MARKER"
exit "$(cat "$REGRESS_DECISION")"
`
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// regressAskpassCalls counts the confirmations asked in a marker file.
func regressAskpassCalls(marker string) int {
	b, _ := os.ReadFile(marker)
	return strings.Count(string(b), "prompt=")
}

// TestRegressConfirm is ssh-add -c: the upstream ssh-agent asks its
// SSH_ASKPASS before every use of the key; allowed, the login works;
// denied, it fails; listing asks nothing. Through warden the confirm
// constraint reaches the upstream agent (audit key.added confirm=true).
// A denied confirmation leaves the connection's session binding in
// place: the next key, restricted to this host, still signs (ssh-agent
// refuses a destination-restricted key on an unbound connection).
func TestRegressConfirm(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	askpass := regressAskpass(t, e.dir)
	decision := filepath.Join(e.dir, "decision")
	setDecision := func(code int) {
		if err := os.WriteFile(decision, []byte(fmt.Sprintln(code)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setDecision(0)
	marker := func(sock string) string { return filepath.Join(e.dir, sock+".askpass") }
	sides := regressSides(t, e, func(sock string) []string {
		return []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=regress:0",
			"REGRESS_MARKER=" + marker(sock), "REGRESS_DECISION=" + decision}
	})
	confirmKey := filepath.Join(e.dir, "confirm")
	confirmPub := keygen(t, confirmKey, "regress-confirm")
	boundKey := filepath.Join(e.dir, "bound")
	boundPub := keygen(t, boundKey, "regress-bound")
	s1 := startSSHD(t, keygen(t, filepath.Join(e.dir, "unused-ca"), "unused-ca"), confirmPub, boundPub)
	cfg, kh := regressSSHConfig(t, e, nil, regressHost{"host_a", s1})

	for _, s := range sides {
		mk := marker(filepath.Base(s.agent.socket))
		s.mustAdd(e, "add with -c", "-c", confirmKey)
		if r := s.add(e, "list", "-l"); r.code != 0 || regressAskpassCalls(mk) != 0 {
			t.Errorf("%s: ssh-add -l: want exit 0 and no confirmation asked, got %s and %d asks", s.name, r, regressAskpassCalls(mk))
		}

		setDecision(0)
		if !s.login(e, cfg, "confirm allowed", user, "host_a", confirmKey+".pub") {
			t.Errorf("%s: login with a confirmed key failed although askpass allowed it", s.name)
		}
		if n := regressAskpassCalls(mk); n != 1 {
			t.Errorf("%s: askpass asked %d times for one allowed login, want 1", s.name, n)
		}
		if b, _ := os.ReadFile(mk); !strings.Contains(string(b), "prompt=confirm") || !strings.Contains(string(b), fingerprint(t, confirmPub)) {
			t.Errorf("%s: askpass was not asked to confirm the key %s:\n%s", s.name, fingerprint(t, confirmPub), b)
		}

		setDecision(1)
		if s.login(e, cfg, "confirm denied", user, "host_a", confirmKey+".pub") {
			t.Errorf("%s: login with a confirmed key succeeded although askpass denied it", s.name)
		}
		if n := regressAskpassCalls(mk); n != 2 {
			t.Errorf("%s: askpass asked %d times after the denied login, want 2", s.name, n)
		}

		// Denied first, then a key restricted to this host on the same
		// connection: the refusal must not unbind the connection.
		s.mustAdd(e, "add restricted", "-h", "host_a", "-H", kh, boundKey)
		ok := s.login(e, cfg, "denied then restricted", user, "host_a", confirmKey+".pub", "-o", "IdentityFile="+boundKey+".pub")
		if !ok {
			t.Errorf("%s: after the denied confirmation, the key restricted to host_a did not log in to host_a", s.name)
		}
		if n := regressAskpassCalls(mk); n != 3 {
			t.Errorf("%s: askpass asked %d times after three logins, want 3", s.name, n)
		}
		s.mustAdd(e, "delete all", "-D")
	}
	regressCompare(t, sides)

	added := events(sides[1].warden.audit(t), "key.added", "key_fingerprint", fingerprint(t, confirmPub))
	if len(added) != 1 || fmt.Sprint(added[0]["confirm"]) != "true" {
		t.Errorf("want one key.added with confirm=true for the confirmed key, got %v", added)
	}
}

// TestRegressDestinationRestrict is agent-restrict.sh with three loopback
// sshd's (host_a, host_b, host_c, distinct host keys, named by
// HostKeyAlias in known_hosts): keys added with ssh-add -h are usable
// only where the restriction allows, by host, by user@host and, through
// agent forwarding, hop by hop ("host_a>host_b"); a forwarded agent lists
// only the keys usable from that host on. ProxyJump is no forwarding:
// each hop is a direct destination. Through warden this depends on
// warden passing each session-bind to the upstream agent on the same
// connection.
func TestRegressDestinationRestrict(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	sides := regressSides(t, e, nil)
	sshPath, _ := exec.LookPath("ssh")
	addPath, _ := exec.LookPath("ssh-add")

	kd := filepath.Join(e.dir, "keys")
	if err := os.MkdirAll(kd, 0o755); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{} // name → path
	pubs := map[string]string{}
	var authorized []string
	for _, n := range []string{"user_a", "user_b", "user_x"} {
		keys[n] = filepath.Join(kd, n)
		pubs[n] = keygen(t, keys[n], n)
		authorized = append(authorized, pubs[n])
	}
	placeholderCA := keygen(t, filepath.Join(kd, "ca"), "unused-ca")
	ha := startSSHD(t, placeholderCA, authorized...)
	hb := startSSHD(t, placeholderCA, authorized...)
	hc := startSSHD(t, placeholderCA, authorized...)
	// host_x is known but never served: keys bound to it are unusable.
	hostX := keygen(t, filepath.Join(kd, "host_x"), "host_x")
	cfg, kh := regressSSHConfig(t, e, []string{"host_x " + hostX},
		regressHost{"host_a", ha}, regressHost{"host_b", hb}, regressHost{"host_c", hc})
	for _, f := range []string{kd, cfg, kh} {
		os.Chmod(f, 0o755) // the "remote" ssh runs as the login user
	}
	pubFile := func(n string) string { return keys[n] + ".pub" }
	// remote is the command line that runs on the first host, with the
	// forwarded agent.
	remoteSSH := func(host, key string) []string {
		return []string{sshPath, "-F", cfg, "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=" + pubFile(key), user + "@" + host, "echo", "hop-" + host}
	}
	// hop logs in to first with key and agent forwarding and from there
	// to second with the same key.
	hop := func(s *regressSide, label, first, second, key string) bool {
		t.Helper()
		args := append([]string{"-A", "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=" + pubFile(key), user + "@" + first}, remoteSSH(second, key)...)
		r := s.ssh(e, cfg, args...)
		ok := r.code == 0 && strings.TrimSpace(r.stdout) == "hop-"+second
		s.note(fmt.Sprintf("%s: %s>%s with %s", label, first, second, key), result{code: okCode(ok)})
		if !ok && testing.Verbose() {
			t.Logf("%s: %s: %s>%s: %s", s.name, label, first, second, r)
		}
		return ok
	}
	// forwardedList logs in to host with key and agent forwarding and
	// returns what ssh-add -L shows there.
	forwardedList := func(s *regressSide, label, host, key string) []string {
		t.Helper()
		r := s.ssh(e, cfg, "-A", "-o", "IdentitiesOnly=yes", "-o", "IdentityFile="+pubFile(key), user+"@"+host, addPath, "-L")
		s.note(fmt.Sprintf("%s: ssh-add -L on %s", label, host), r, r.stdout)
		if r.code != 0 && !strings.Contains(r.stdout, "The agent has no identities.") {
			t.Errorf("%s: %s: ssh -A %s ssh-add -L: %s", s.name, label, host, r)
			return nil
		}
		var out []string
		for _, l := range nonEmptyLines(r.stdout) {
			if strings.HasPrefix(l, "ssh-") {
				out = append(out, regressKeyField(l))
			}
		}
		return out
	}
	restrict := func(s *regressSide, label, key string, dests ...string) {
		t.Helper()
		args := []string{"-H", kh}
		for _, d := range dests {
			args = append(args, "-h", d)
		}
		s.mustAdd(e, label, append(args, keys[key])...)
	}

	for _, s := range sides {
		t.Logf("%s: basic restrict", s.name)
		restrict(s, "user_a to host_a", "user_a", "host_a")
		restrict(s, "user_b to host_b", "user_b", "host_b")
		s.mustAdd(e, "user_x unrestricted", keys["user_x"])
		// Locally (an unbound connection) every key is listed.
		if got := s.listPub(e, "local list"); len(got) != 3 {
			t.Errorf("%s: local ssh-add -L lists %d keys, want all 3: %q", s.name, len(got), got)
		}
		before := regressAccepted(ha.log.String(), " "+fingerprint(t, pubs["user_a"]))
		if !s.login(e, cfg, "basic", user, "host_a", pubFile("user_a")) {
			t.Errorf("%s: user_a restricted to host_a does not log in to host_a", s.name)
		} else if !regressWaitAccepted(ha, before+1, " "+fingerprint(t, pubs["user_a"])) {
			t.Errorf("%s: host_a's sshd did not log the login with user_a", s.name)
		}
		if !s.login(e, cfg, "basic", user, "host_b", pubFile("user_b")) {
			t.Errorf("%s: user_b restricted to host_b does not log in to host_b", s.name)
		}
		// Not even offered: to host_c ssh offers whatever the agent lists
		// for a connection bound to host_c, which is user_x alone.
		mark := len(hc.log.String())
		word := fmt.Sprintf("any-%d", time.Now().UnixNano())
		r := s.ssh(e, cfg, user+"@host_c", "echo", word)
		s.note("host_c with whatever the agent offers", result{code: okCode(r.code == 0 && strings.TrimSpace(r.stdout) == word)})
		if r.code != 0 {
			t.Errorf("%s: login to host_c with the unrestricted user_x failed: %s", s.name, r)
		}
		// sshd's log arrives through a pipe: wait for the login line
		// before looking for what was offered ahead of it.
		waitFor(10*time.Second, func() bool {
			return regressAccepted(hc.log.String()[mark:], " "+fingerprint(t, pubs["user_x"])) == 1
		})
		newLog := hc.log.String()[mark:]
		if regressAccepted(newLog, " "+fingerprint(t, pubs["user_x"])) != 1 {
			t.Errorf("%s: host_c did not log the login with user_x:\n%s", s.name, newLog)
		}
		for _, n := range []string{"user_a", "user_b"} {
			if strings.Contains(newLog, fingerprint(t, pubs[n])) {
				t.Errorf("%s: the agent offered %s to host_c:\n%s", s.name, n, newLog)
			}
		}
		if s.login(e, cfg, "wrong host", user, "host_b", pubFile("user_a")) {
			t.Errorf("%s: user_a restricted to host_a logged in to host_b", s.name)
		}
		if s.login(e, cfg, "wrong host", user, "host_c", pubFile("user_b")) {
			t.Errorf("%s: user_b restricted to host_b logged in to host_c", s.name)
		}
		// A forwarded agent shows only the unrestricted key.
		if got := forwardedList(s, "basic", "host_a", "user_a"); !slices.Equal(got, []string{regressKeyField(pubs["user_x"])}) {
			t.Errorf("%s: ssh-add -L through the agent forwarded to host_a: got %q, want user_x only", s.name, got)
		}
		s.mustAdd(e, "clear", "-D")

		t.Logf("%s: username", s.name)
		restrict(s, "user_a to user@host_a", "user_a", user+"@host_a")
		restrict(s, "user_b to wrong-user@host_b", "user_b", "no-such-user-x@host_b")
		if !s.login(e, cfg, "right user", user, "host_a", pubFile("user_a")) {
			t.Errorf("%s: user_a restricted to %s@host_a does not log in as %s", s.name, user, user)
		}
		if s.login(e, cfg, "wrong user", user, "host_b", pubFile("user_b")) {
			t.Errorf("%s: user_b restricted to no-such-user-x@host_b logged in as %s", s.name, user)
		}
		s.mustAdd(e, "clear", "-D")

		t.Logf("%s: multihop", s.name)
		restrict(s, "user_a host_a, host_a>host_b", "user_a", "host_a", "host_a>host_b")
		restrict(s, "others to host_x", "user_b", "host_x")
		restrict(s, "others to host_x", "user_x", "host_x")
		if !hop(s, "allowed hop", "host_a", "host_b", "user_a") {
			t.Errorf("%s: host_a>host_b with user_a (allowed host_a>host_b) failed", s.name)
		}
		if hop(s, "hop not allowed", "host_a", "host_c", "user_a") {
			t.Errorf("%s: host_a>host_c with user_a succeeded; only host_a>host_b is allowed", s.name)
		}
		if s.login(e, cfg, "direct to the second hop", user, "host_b", pubFile("user_a")) {
			t.Errorf("%s: user_a logged in to host_b directly; it may reach host_b only through host_a", s.name)
		}
		if got := forwardedList(s, "multihop", "host_a", "user_a"); !slices.Equal(got, []string{regressKeyField(pubs["user_a"])}) {
			t.Errorf("%s: ssh-add -L through the agent forwarded to host_a: got %q, want user_a only", s.name, got)
		}
		// ProxyJump forwards no agent: host_b is a direct destination,
		// which "host_a>host_b" does not allow.
		r = s.ssh(e, cfg, "-o", "IdentitiesOnly=yes", "-o", "IdentityFile="+pubFile("user_a"), "-J", user+"@host_a", user+"@host_b", "echo", "jumped")
		s.note("jump with host_a>host_b", result{code: okCode(r.code == 0)})
		if r.code == 0 {
			t.Errorf("%s: ssh -J host_a host_b with user_a restricted to host_a and host_a>host_b succeeded", s.name)
		}
		s.mustAdd(e, "clear", "-D")
		restrict(s, "user_a host_a, host_b", "user_a", "host_a", "host_b")
		r = s.ssh(e, cfg, "-o", "IdentitiesOnly=yes", "-o", "IdentityFile="+pubFile("user_a"), "-J", user+"@host_a", user+"@host_b", "echo", "jumped")
		s.note("jump with host_a, host_b", result{code: okCode(r.code == 0 && strings.TrimSpace(r.stdout) == "jumped")})
		if r.code != 0 || strings.TrimSpace(r.stdout) != "jumped" {
			t.Errorf("%s: ssh -J host_a host_b with user_a restricted to host_a and host_b: %s", s.name, r)
		}
		if hop(s, "forwarding without a hop rule", "host_a", "host_b", "user_a") {
			t.Errorf("%s: host_a>host_b through forwarding succeeded with user_a restricted to host_a and host_b only", s.name)
		}
		s.mustAdd(e, "clear", "-D")
	}
	regressCompare(t, sides)

	// Warden saw the forwarded hop: a forwarding bind to host_a, then an
	// authentication bind to host_b on the same connection.
	recs := sides[1].warden.audit(t)
	fpA, fpB := fingerprint(t, ha.hostPub), fingerprint(t, hb.hostPub)
	hopped := false
	for _, fb := range events(recs, "session.bind", "host_key", fpA, "forwarding", "true") {
		if len(events(recs, "session.bind", "conn", fb.str("conn"), "host_key", fpB, "forwarding", "false")) > 0 {
			hopped = true
		}
	}
	if !hopped {
		t.Errorf("warden's audit log has no connection bound first for forwarding to host_a and then to host_b")
	}
	if n := len(events(recs, "cert.issued")); n != 0 {
		t.Errorf("warden issued %d certificates; the catalog has no route for these hosts", n)
	}
}
