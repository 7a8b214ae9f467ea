package main

// End-to-end tests against the real OpenSSH programs (issue 2, "Must
// show"): a real sshd trusting the agent's CA, real ssh with the block
// `warden-agent ssh-config` prints, a real ssh-agent as upstream and
// ssh-add through warden. Each test skips, saying why, when a program it
// needs is missing.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// needPrograms skips the test when one of the programs is not installed.
func needPrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (install openssh-client): %v", n, err)
		}
	}
}

// sshdPath finds sshd, which is usually outside a non-root PATH.
func sshdPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("sshd"); err == nil && filepath.IsAbs(p) {
		return p
	}
	t.Skip("sshd is not installed (install openssh-server)")
	return ""
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialable(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// killGroup ends a process started with Setpgid and its children.
func killGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// ---- warden-agent run ----

type agentProc struct {
	e      *testEnv
	socket string
	ca     string // the CA public key line from the banner
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
}

// startAgent runs `warden-agent run args...` and waits for its banner.
// The agent is stopped with SIGTERM when the test ends, and must then
// exit 0 and remove its socket.
func startAgent(t *testing.T, e *testEnv, env []string, args ...string) *agentProc {
	t.Helper()
	a, err := launchAgent(t, e, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-a.done:
			return // stopped by the test
		default:
		}
		a.stop(t)
	})
	return a
}

// launchAgent starts the agent and waits until it listens, or reports why
// it did not start.
func launchAgent(t *testing.T, e *testEnv, env []string, args ...string) (*agentProc, error) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{e: e, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(wardenExe, append([]string{"run"}, args...)...)
	a.cmd.Env = e.environ(env...)
	a.cmd.Stdout, a.cmd.Stderr = pw, a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		t.Fatal(err)
	}
	pw.Close()
	listening := make(chan string, 1)
	caLine := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		trusted := false
		for sc.Scan() {
			line := sc.Text()
			a.stdout.Write([]byte(line + "\n"))
			if _, rest, ok := strings.Cut(line, " listening on "); ok {
				sock, _, _ := strings.Cut(rest, " (")
				select {
				case listening <- sock:
				default:
				}
			}
			if strings.HasPrefix(line, "CA key unavailable") { // issuer down at start: no CA line
				select {
				case caLine <- "":
				default:
				}
			}
			if strings.Contains(line, "TrustedUserCAKeys") {
				trusted = true
			} else if trusted && strings.HasPrefix(strings.TrimSpace(line), "ssh-") {
				trusted = false
				select {
				case caLine <- strings.TrimSpace(line):
				default:
				}
			}
		}
	}()
	go func() {
		a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("warden-agent run %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), a.stdout, a.stderr)
		}
	})
	timeout := time.After(15 * time.Second)
	gotCA := false
	for a.socket == "" || !gotCA {
		select {
		case a.socket = <-listening:
		case a.ca = <-caLine:
			gotCA = true
		case <-a.done:
			return nil, fmt.Errorf("warden-agent run exited before listening: %v\nstdout:\n%s\nstderr:\n%s", a.cmd.ProcessState, a.stdout, a.stderr)
		case <-timeout:
			killGroup(a.cmd, syscall.SIGKILL)
			<-a.done
			return nil, fmt.Errorf("warden-agent run did not print its banner within 15 s\nstdout:\n%s\nstderr:\n%s", a.stdout, a.stderr)
		}
	}
	if !dialable("unix", a.socket) {
		return nil, fmt.Errorf("banner names %s, but nothing answers there", a.socket)
	}
	return a, nil
}

// stop sends SIGTERM and checks a clean exit: status 0, socket removed.
func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		killGroup(a.cmd, syscall.SIGKILL)
		<-a.done
		t.Errorf("warden-agent did not stop within 15 s of SIGTERM")
		return
	}
	if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Errorf("warden-agent was killed by %v: the signal arrived before the agent handled it", ws.Signal())
	} else if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("warden-agent exited %d after SIGTERM; stderr:\n%s", code, a.stderr)
	}
	if _, err := os.Lstat(a.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket %s still there after SIGTERM (%v)", a.socket, err)
	}
}

// auditRecord is one line of the audit log.
type auditRecord map[string]any

func (r auditRecord) str(k string) string {
	s, _ := r[k].(string)
	return s
}

// auditOnce reads the audit log until done says it holds what the test
// waits for, for up to 3 s: a best-effort record (hint, upstream.used)
// that no durable record follows is written within 10 ms, not before the
// command that caused it returns.
func (a *agentProc) auditOnce(t *testing.T, done func([]auditRecord) bool) []auditRecord {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if recs := a.audit(t); done(recs) || time.Now().After(deadline) {
			return recs
		}
	}
}

// audit reads the agent's audit log.
func (a *agentProc) audit(t *testing.T) []auditRecord {
	t.Helper()
	data, err := os.ReadFile(a.e.auditPath())
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var recs []auditRecord
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit log line %d is not JSON: %v: %q", i+1, err, line)
		}
		recs = append(recs, r)
	}
	return recs
}

// events returns the records of one event whose fields match (k, v pairs
// compared as strings).
func events(recs []auditRecord, event string, kv ...string) []auditRecord {
	var out []auditRecord
next:
	for _, r := range recs {
		if r.str("event") != event {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(r[kv[i]]) != kv[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func stringList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// ---- sshd ----

type sshdProc struct {
	addr    string // the listen address
	port    int
	dir     string
	hostPub string
	log     *syncBuffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// keygen makes an ed25519 key pair at path and returns the public line.
func keygen(t *testing.T, path, comment string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pub))
}

func fingerprint(t *testing.T, pubLine string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pubLine))
	if err != nil {
		t.Fatalf("parse %q: %v", pubLine, err)
	}
	return ssh.FingerprintSHA256(k)
}

// startSSHD runs a real sshd on a loopback port that trusts caPub for user
// certificates and authorizedKeys (one line each) for plain keys.
func startSSHD(t *testing.T, caPub string, authorizedKeys ...string) *sshdProc {
	t.Helper()
	return startSSHDOn(t, "127.0.0.1", caPub, authorizedKeys...)
}

// startSSHDOn is startSSHD on another loopback address (127.0.0.2 …); it
// skips when the address cannot be bound.
func startSSHDOn(t *testing.T, listen, caPub string, authorizedKeys ...string) *sshdProc {
	t.Helper()
	sshd := sshdPath(t)
	needPrograms(t, "ssh-keygen")
	if os.Geteuid() == 0 {
		// sshd's privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("sshd needs /run/sshd: %v", err)
		}
	}
	d := shortTempDir(t)
	s := &sshdProc{addr: listen, dir: d, log: &syncBuffer{}}
	s.hostPub = keygen(t, filepath.Join(d, "hostkey"), "test-host")
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pub", caPub+"\n")
	write("authorized_keys", strings.Join(authorizedKeys, "\n")+"\n")

	// OpenSSH 9.8 and later slow down a source address after failed
	// logins; the tests fail logins on purpose. Older sshd does not know
	// the option.
	penalties := "PerSourcePenalties no\n"
	write("probe_config", fmt.Sprintf("HostKey %s/hostkey\n%s", d, penalties))
	if err := exec.Command(sshd, "-t", "-f", filepath.Join(d, "probe_config")).Run(); err != nil {
		penalties = ""
	}

	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(listen, "0"))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", listen, err)
		}
		s.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		write("sshd_config", fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %[3]s/hostkey
PidFile %[3]s/sshd.pid
TrustedUserCAKeys %[3]s/ca.pub
AuthorizedKeysFile %[3]s/authorized_keys
AuthorizedPrincipalsFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
%[4]s`, s.port, listen, d, penalties))
		cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(d, "sshd_config"))
		cmd.Stdout, cmd.Stderr = s.log, s.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			killGroup(cmd, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				killGroup(cmd, syscall.SIGKILL)
				<-exited
			}
		})
		addr := net.JoinHostPort(listen, strconv.Itoa(s.port))
		up := waitFor(5*time.Second, func() bool {
			select {
			case <-exited:
				return true
			default:
			}
			return dialable("tcp", addr)
		})
		select {
		case <-exited:
			if attempt < 2 && strings.Contains(s.log.String(), "Address already in use") {
				continue // lost the port race; take another
			}
			t.Fatalf("sshd exited at start:\n%s", s.log)
		default:
		}
		if !up {
			t.Fatalf("sshd did not listen on %s within 5 s:\n%s", addr, s.log)
		}
		break
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log)
		}
	})
	return s
}

// sshConfig writes an ssh_config for the test sshd: host "target" is
// 127.0.0.1 and host "plain" is localhost (another host name for the
// catalog, the same server), followed by the block `warden-agent
// ssh-config` prints for the agent's socket. It returns the file.
func (e *testEnv) sshConfig(s *sshdProc, socket string) string {
	e.t.Helper()
	kh := filepath.Join(s.dir, "known_hosts")
	khLines := fmt.Sprintf("[127.0.0.1]:%d %s\n[localhost]:%d %s\n", s.port, s.hostPub, s.port, s.hostPub)
	if err := os.WriteFile(kh, []byte(khLines), 0o600); err != nil {
		e.t.Fatal(err)
	}
	common := fmt.Sprintf(`    Port %d
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 10
    IdentityFile %s/no-such-key
    ControlMaster no
    ControlPath none
`, s.port, kh, e.dir)
	cfg := "Host target\n    HostName 127.0.0.1\n" + common +
		"Host plain\n    HostName localhost\n    AddressFamily inet\n" + common +
		e.mustWarden("ssh-config", "--socket", socket)
	path := filepath.Join(e.dir, "ssh_config")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// sshLogin runs `ssh -F cfg user@host echo <word>` with env.
func (e *testEnv) sshLogin(cfg string, env []string, user, host, word string) result {
	e.t.Helper()
	return e.run(env, "ssh", "-F", cfg, user+"@"+host, "echo", word)
}

func (e *testEnv) mustLogin(cfg string, env []string, user, host string) {
	e.t.Helper()
	word := fmt.Sprintf("hello-%d", time.Now().UnixNano())
	r := e.sshLogin(cfg, env, user, host, word)
	if r.code != 0 || strings.TrimSpace(r.stdout) != word {
		e.t.Fatalf("ssh %s@%s echo %s: want %q on stdout and exit 0, got %s", user, host, word, word, r)
	}
}

// loginUser is the remote user the tests log in as: a non-root sshd can
// only log in its own user.
func loginUser(t *testing.T) string {
	t.Helper()
	u := localUser()
	if u == "" {
		t.Skip("no local user name")
	}
	return u
}

// certPrincipals runs `ssh-keygen -L` on a certificate line and returns
// its principals and decimal serial.
func certPrincipals(t *testing.T, dir, certLine string) (principals []string, serial string) {
	t.Helper()
	f := filepath.Join(dir, "listed-cert.pub")
	if err := os.WriteFile(f, []byte(certLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-L", "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "Serial:"):
			serial = strings.TrimSpace(strings.TrimPrefix(trimmed, "Serial:"))
		case trimmed == "Principals:":
			in = true
		case in && strings.HasPrefix(line, "                "):
			principals = append(principals, trimmed)
		case in:
			in = false
		}
	}
	return principals, serial
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// ---- upstream ssh-agent ----

type upstreamAgent struct {
	socket string
	cmd    *exec.Cmd
	exited chan struct{}
}

func startSSHAgent(t *testing.T, e *testEnv) *upstreamAgent {
	t.Helper()
	return startSSHAgentAt(t, e, "up.sock")
}

// startSSHAgentAt runs ssh-agent on e.dir/sock with env added to the
// test environment; its log is shown when the test fails.
func startSSHAgentAt(t *testing.T, e *testEnv, sock string, env ...string) *upstreamAgent {
	t.Helper()
	needPrograms(t, "ssh-agent", "ssh-add")
	u := &upstreamAgent{socket: filepath.Join(e.dir, sock), exited: make(chan struct{})}
	u.cmd = exec.Command("ssh-agent", "-D", "-a", u.socket)
	u.cmd.Env = e.environ(env...)
	log := &syncBuffer{}
	u.cmd.Stdout, u.cmd.Stderr = log, log
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := u.cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	go func() { u.cmd.Wait(); close(u.exited) }()
	t.Cleanup(u.kill)
	if !waitFor(10*time.Second, func() bool { return dialable("unix", u.socket) }) {
		t.Fatalf("ssh-agent did not listen on %s within 10 s:\n%s", u.socket, log)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ssh-agent %s log:\n%s", sock, log)
		}
	})
	return u
}

func (u *upstreamAgent) kill() {
	killGroup(u.cmd, syscall.SIGKILL)
	<-u.exited
}

// sshAdd runs ssh-add against socket.
func (e *testEnv) sshAdd(socket string, env []string, args ...string) result {
	e.t.Helper()
	return e.run(append([]string{"SSH_AUTH_SOCK=" + socket}, env...), "ssh-add", args...)
}

// listed returns the ssh-add -l lines of socket (none when the agent says
// it has no identities).
func (e *testEnv) listed(socket string) []string {
	e.t.Helper()
	r := e.sshAdd(socket, nil, "-l")
	if r.code == 1 && strings.Contains(r.stdout+r.stderr, "The agent has no identities") {
		return nil
	}
	if r.code != 0 {
		e.t.Fatalf("ssh-add -l on %s: %s", socket, r)
	}
	return nonEmptyLines(r.stdout)
}

func containsFP(lines []string, fp string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, " "+fp+" ") })
}

// ---- tests ----

// TestE2ELoginAllowed: real ssh with the ssh-config block logs into a real
// sshd with a certificate minted for exactly the requested user.
func TestE2ELoginAllowed(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	if a.socket != e.socket() {
		t.Errorf("agent listens on %s, want the XDG default %s", a.socket, e.socket())
	}
	if ca := strings.TrimSpace(e.mustWarden("ca")); ca != a.ca {
		t.Errorf("`warden-agent ca` prints %q, the banner %q", ca, a.ca)
	}
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)

	e.mustLogin(cfg, nil, user, "target")

	recs := a.audit(t)
	issued := events(recs, "cert.issued")
	if len(issued) != 1 {
		t.Fatalf("want exactly one cert.issued, got %d: %v", len(issued), issued)
	}
	if p := issued[0].str("principal"); p != user {
		t.Errorf("cert.issued principal = %q, want %q", p, user)
	}
	if ps := stringList(issued[0]["principals"]); !slices.Equal(ps, []string{user}) {
		t.Errorf("cert.issued principals = %q, want [%s]", ps, user)
	}
	serial := issued[0].str("serial")
	used := events(recs, "cert.used", "serial", serial)
	if len(used) != 1 || used[0].str("user") != user {
		t.Errorf("want one cert.used for user %s with serial %s, got %v", user, serial, events(recs, "cert.used"))
	}
	if len(events(recs, "hint", "user", user, "host", "127.0.0.1")) == 0 {
		t.Errorf("no hint record for %s@127.0.0.1: Match exec did not reach the agent", user)
	}
	if !strings.Contains(s.log.String(), "Accepted publickey for "+user) || !strings.Contains(s.log.String(), "ED25519-CERT") {
		t.Errorf("sshd log does not show a certificate login for %s", user)
	}
	// sshd logs the decimal serial and the key's fingerprint; the audit
	// records carry both to match.
	if dec := issued[0].str("serial_dec"); dec == "" || !strings.Contains(s.log.String(), "(serial "+dec+")") {
		t.Errorf("sshd log does not name the serial %q of cert.issued", dec)
	}
	if fp := issued[0].str("key_fingerprint"); fp == "" || !strings.Contains(s.log.String(), "ED25519-CERT "+fp+" ") {
		t.Errorf("sshd log does not name the key fingerprint %q of cert.issued", fp)
	}
	if len(used) == 1 && used[0].str("key_fingerprint") != issued[0].str("key_fingerprint") {
		t.Errorf("cert.used key_fingerprint %q, cert.issued %q", used[0].str("key_fingerprint"), issued[0].str("key_fingerprint"))
	}

	// Without session-bind (ssh-add -L) a require_bind certificate is not
	// listed: that connection could not use it (docs/security.md).
	if r := e.sshAdd(a.socket, nil, "-L"); r.code != 1 || strings.Contains(r.stdout, "cert-v01") {
		t.Fatalf("ssh-add -L through warden: want no identities, got %s", r)
	}
	// warden-agent sign prints the certificate the agent holds.
	line := strings.TrimSpace(e.mustWarden("sign", "--socket", a.socket, "--principal", user, "--host", "127.0.0.1"))
	if !strings.HasPrefix(line, "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("warden-agent sign: want the certificate, got %q", line)
	}
	principals, serialDec := certPrincipals(t, e.dir, line)
	if !slices.Equal(principals, []string{user}) {
		t.Errorf("listed certificate principals = %q, want exactly [%s]", principals, user)
	}
	if want := issued[0].str("serial_dec"); serialDec != want {
		t.Errorf("listed certificate serial %s, cert.issued says %s", serialDec, want)
	}
}

// TestE2ESecondLoginReusesCertificate: a second login within the
// lifetime uses the same certificate; one issuance.
func TestE2ESecondLoginReusesCertificate(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)

	e.mustLogin(cfg, nil, user, "target")
	e.mustLogin(cfg, nil, user, "target")

	recs := a.audit(t)
	issued := events(recs, "cert.issued")
	if len(issued) != 1 {
		t.Fatalf("two logins: want exactly one cert.issued, got %d", len(issued))
	}
	used := events(recs, "cert.used")
	if len(used) != 2 {
		t.Fatalf("two logins: want two cert.used, got %d", len(used))
	}
	for _, u := range used {
		if u.str("serial") != issued[0].str("serial") {
			t.Errorf("cert.used serial %s, issued %s", u.str("serial"), issued[0].str("serial"))
		}
	}
	if n := len(events(recs, "hint")); n != 2 {
		t.Errorf("want two hint records, got %d", n)
	}
}

// TestE2ERefusedUser: a route that does not allow the requested user
// refuses the login with the reason on the terminal, and warden's
// certificate is never offered for it.
func TestE2ERefusedUser(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	if user == "nobody" {
		t.Skip("the refused user is nobody, which is us")
	}
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)

	// A certificate for the allowed user exists, so there is one to leak.
	e.mustLogin(cfg, nil, user, "target")

	// Even with SSH_AUTH_SOCK pointing at warden (where ssh falls back when
	// the hint refuses), nothing is offered for nobody.
	r := e.sshLogin(cfg, []string{"SSH_AUTH_SOCK=" + a.socket}, "nobody", "target", "hi")
	if r.code == 0 {
		t.Fatalf("ssh nobody@target succeeded; want refused: %s", r)
	}
	if strings.Contains(r.stdout, "hi") {
		t.Errorf("ssh nobody@target ran the command: %s", r)
	}
	if !strings.Contains(r.stderr, "does not allow user nobody") {
		t.Errorf("ssh's stderr does not carry the hint's reason (want %q): %s", "does not allow user nobody", r)
	}
	if !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("want sshd's refusal on stderr: %s", r)
	}

	recs := a.audit(t)
	if n := len(events(recs, "cert.issued")); n != 1 {
		t.Errorf("want only the first login's cert.issued, got %d", n)
	}
	if got := events(recs, "cert.issued", "principal", "nobody"); len(got) != 0 {
		t.Errorf("a certificate was issued for nobody: %v", got)
	}
	if got := events(recs, "cert.used", "user", "nobody"); len(got) != 0 {
		t.Errorf("a certificate signed for nobody: %v", got)
	}
	if n := len(events(recs, "cert.used")); n != 1 {
		t.Errorf("want only the first login's cert.used, got %d", n)
	}
	if len(events(recs, "hint", "user", "nobody")) != 1 {
		t.Errorf("want one hint record for nobody")
	}
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "nobody") && strings.Contains(line, "CERT") {
			t.Errorf("sshd saw a certificate offered for nobody: %s", line)
		}
	}
}

// TestE2EDumpConfigIssuesNothing: `ssh -G` evaluates Match exec; the
// hint it runs must not mint a certificate.
func TestE2EDumpConfigIssuesNothing(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)
	r := e.run(nil, "ssh", "-F", cfg, "-G", user+"@target")
	if r.code != 0 {
		t.Fatalf("ssh -G: %s", r)
	}
	if !strings.Contains(r.stdout, "identityagent "+a.socket) {
		t.Errorf("ssh -G: the Match block did not apply (no identityagent %s):\n%s", a.socket, r.stdout)
	}
	if got := events(a.audit(t), "cert.issued"); len(got) != 0 {
		t.Errorf("ssh -G minted a certificate: %v", got)
	}
}

// TestE2EUpstreamAgent: with a real ssh-agent as upstream, ssh-add through
// warden lists the certificate first, and add (with its lifetime),
// delete, delete-all, lock and unlock reach the upstream agent.
func TestE2EUpstreamAgent(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)
	key1 := keygen(t, filepath.Join(e.dir, "key1"), "upstream-key1")
	key2 := keygen(t, filepath.Join(e.dir, "key2"), "added-key2")
	key3 := keygen(t, filepath.Join(e.dir, "key3"), "short-key3")
	fp1, fp2, fp3 := fingerprint(t, key1), fingerprint(t, key2), fingerprint(t, key3)
	if r := e.sshAdd(up.socket, nil, filepath.Join(e.dir, "key1")); r.code != 0 {
		t.Fatalf("ssh-add key1 to the upstream agent: %s", r)
	}

	// Certificates only for 127.0.0.1 ("target"); "plain" (localhost) has
	// no route, so only the upstream key is offered there.
	e.writeConfig(fmt.Sprintf("routes:\n  - name: lab\n    hosts: [\"127.0.0.1\"]\n    principals: [%q]\n    ttl: 5m\n", user))
	// Upstream from SSH_AUTH_SOCK, as `make run` does.
	a := startAgent(t, e, []string{"SSH_AUTH_SOCK=" + up.socket})
	if !strings.Contains(a.stdout.String(), "upstream agent: "+up.socket) {
		t.Errorf("banner does not name the upstream agent %s:\n%s", up.socket, a.stdout)
	}
	s := startSSHD(t, a.ca, key1)
	cfg := e.sshConfig(s, a.socket)

	e.mustLogin(cfg, nil, user, "target")
	recs := a.audit(t)
	if n := len(events(recs, "cert.used", "user", user)); n != 1 {
		t.Fatalf("login to target: want one cert.used, got %d", n)
	}

	t.Run("list", func(t *testing.T) {
		// ssh-add sends no session-bind: it is listed the upstream keys as
		// they are, and no require_bind certificate it could not use.
		l := e.listed(a.socket)
		if len(l) != 1 || !containsFP(l, fp1) {
			t.Errorf("ssh-add -l through warden: want key1 %s alone; got %q", fp1, l)
		}
		r := e.sshAdd(a.socket, nil, "-L")
		ll := nonEmptyLines(r.stdout)
		if r.code != 0 || len(ll) != 1 {
			t.Fatalf("ssh-add -L through warden: want key1 alone: %s", r)
		}
		if f := strings.Fields(ll[0]); len(f) < 2 || f[0]+" "+f[1] != strings.Join(strings.Fields(key1)[:2], " ") {
			t.Errorf("ssh-add -L through warden: line %q, want key1 %q", ll[0], key1)
		}
		cert := strings.TrimSpace(e.mustWarden("sign", "--socket", a.socket, "--principal", user, "--host", "127.0.0.1"))
		if p, _ := certPrincipals(t, e.dir, cert); !slices.Equal(p, []string{user}) {
			t.Errorf("held certificate principals %q, want [%s]", p, user)
		}
	})

	t.Run("login with the upstream key where no route applies", func(t *testing.T) {
		e.mustLogin(cfg, nil, user, "plain")
		// upstream.used is written off the reply path: wait for it.
		var recs []auditRecord
		waitFor(5*time.Second, func() bool {
			recs = a.audit(t)
			return len(events(recs, "upstream.used", "key_fingerprint", fp1, "user", user)) > 0
		})
		if got := events(recs, "upstream.used", "key_fingerprint", fp1, "user", user); len(got) != 1 {
			t.Errorf("want one upstream.used for key1 and user %s, got %v", user, events(recs, "upstream.used"))
		}
		if n := len(events(recs, "cert.issued")); n != 1 {
			t.Errorf("the login to a host without a route issued a certificate (%d cert.issued)", n)
		}
		if !strings.Contains(s.log.String(), "Accepted publickey for "+user) || !strings.Contains(s.log.String(), fp1) {
			t.Errorf("sshd log does not show the login with key1 %s", fp1)
		}
	})

	t.Run("add with lifetime lands upstream", func(t *testing.T) {
		if r := e.sshAdd(a.socket, nil, "-t", "60", filepath.Join(e.dir, "key2")); r.code != 0 {
			t.Fatalf("ssh-add -t 60 key2 through warden: %s", r)
		}
		if l := e.listed(up.socket); !containsFP(l, fp2) {
			t.Errorf("key2 added through warden is not in the upstream agent: %q", l)
		}
		if got := events(a.audit(t), "key.added", "key_fingerprint", fp2); len(got) != 1 || fmt.Sprint(got[0]["lifetime_secs"]) != "60" {
			t.Errorf("want one key.added for key2 with lifetime_secs 60, got %v", got)
		}
		// The lifetime traveled: a key added for one second expires in
		// the upstream agent.
		if r := e.sshAdd(a.socket, nil, "-t", "1", filepath.Join(e.dir, "key3")); r.code != 0 {
			t.Fatalf("ssh-add -t 1 key3 through warden: %s", r)
		}
		if l := e.listed(up.socket); !containsFP(l, fp3) {
			t.Fatalf("key3 added through warden is not in the upstream agent: %q", l)
		}
		if !waitFor(10*time.Second, func() bool { return !containsFP(e.listed(up.socket), fp3) }) {
			t.Errorf("key3 added with -t 1 is still in the upstream agent after 10 s: the lifetime constraint was dropped")
		}
		if l := e.listed(up.socket); !containsFP(l, fp2) || !containsFP(l, fp1) {
			t.Errorf("after key3 expired the upstream agent lists %q; key1 and key2 (-t 60) must remain", l)
		}
	})

	t.Run("delete one key upstream", func(t *testing.T) {
		if r := e.sshAdd(a.socket, nil, "-d", filepath.Join(e.dir, "key2.pub")); r.code != 0 {
			t.Fatalf("ssh-add -d key2.pub through warden: %s", r)
		}
		l := e.listed(up.socket)
		if containsFP(l, fp2) || !containsFP(l, fp1) {
			t.Errorf("after ssh-add -d key2 through warden, the upstream agent lists %q; want key1 only", l)
		}
	})

	t.Run("lock and unlock both", func(t *testing.T) {
		askpass := filepath.Join(e.dir, "askpass.sh")
		if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho lock-passphrase\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		env := []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}
		if r := e.sshAdd(a.socket, env, "-x"); r.code != 0 {
			t.Fatalf("ssh-add -x through warden: %s", r)
		}
		for _, sock := range []string{a.socket, up.socket} {
			r := e.sshAdd(sock, nil, "-l")
			if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "The agent has no identities.") {
				t.Errorf("locked: ssh-add -l on %s: want exit 1 and no identities, got %s", sock, r)
			}
		}
		// ssh with the agent locked cannot use the certificate.
		if r := e.sshLogin(cfg, nil, user, "target", "locked"); r.code == 0 {
			t.Errorf("login succeeded while the agent is locked: %s", r)
		}
		if r := e.sshAdd(a.socket, env, "-X"); r.code != 0 {
			t.Fatalf("ssh-add -X through warden: %s", r)
		}
		l := e.listed(a.socket)
		if len(l) != 1 || !containsFP(l, fp1) {
			t.Errorf("unlocked: ssh-add -l through warden: want key1, got %q", l)
		}
		// And the certificate logs in again.
		e.mustLogin(cfg, nil, user, "target")
		if l := e.listed(up.socket); !containsFP(l, fp1) {
			t.Errorf("unlocked: the upstream agent lists %q, want key1", l)
		}
		recs := a.audit(t)
		if len(events(recs, "agent.locked")) != 1 || len(events(recs, "agent.unlocked")) != 1 {
			t.Errorf("want one agent.locked and one agent.unlocked record")
		}
	})

	t.Run("delete all upstream", func(t *testing.T) {
		if r := e.sshAdd(a.socket, nil, "-D"); r.code != 0 {
			t.Fatalf("ssh-add -D through warden: %s", r)
		}
		if l := e.listed(up.socket); len(l) != 0 {
			t.Errorf("after ssh-add -D through warden, the upstream agent still lists %q", l)
		}
	})
}

// TestE2EUpstreamKilled: with the upstream agent gone, warden still lists
// its certificate and logs in with it.
func TestE2EUpstreamKilled(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)
	key1 := keygen(t, filepath.Join(e.dir, "key1"), "upstream-key1")
	if r := e.sshAdd(up.socket, nil, filepath.Join(e.dir, "key1")); r.code != 0 {
		t.Fatalf("ssh-add key1 upstream: %s", r)
	}
	a := startAgent(t, e, nil, "--upstream", up.socket)
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)

	e.mustLogin(cfg, nil, user, "target") // upstream alive
	if l := e.listed(a.socket); len(l) != 1 || !containsFP(l, fingerprint(t, key1)) {
		t.Fatalf("before the kill: want key1, got %q", l)
	}

	up.kill() // SIGKILL: the socket file stays, nothing answers
	e.mustLogin(cfg, nil, user, "target")

	// ssh-add (no bind) has nothing from warden: it reports an error, not
	// "The agent has no identities" (issue 13).
	if r := e.sshAdd(a.socket, nil, "-l"); r.code != 1 || !strings.Contains(r.stderr, "error fetching identities") {
		t.Errorf("upstream dead: ssh-add -l through warden: want the error, got %s", r)
	}
	recs := a.audit(t)
	if n := len(events(recs, "cert.used", "user", user)); n != 2 {
		t.Errorf("want two cert.used (before and after the kill), got %d", n)
	}
	if n := len(events(recs, "cert.issued")); n != 1 {
		t.Errorf("want one cert.issued, got %d", n)
	}
}

// TestE2EUpstreamKilledBeforeFirstLogin: the certificate is issued and used
// while the upstream agent is down.
func TestE2EUpstreamKilledBeforeFirstLogin(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)
	a := startAgent(t, e, nil, "--upstream", up.socket)
	up.kill()
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)
	e.mustLogin(cfg, nil, user, "target")
	if n := len(events(a.audit(t), "cert.used", "user", user)); n != 1 {
		t.Errorf("want one cert.used, got %d", n)
	}
}

// TestE2ESocket: the socket is 0600 in a 0700 directory; a directory the
// agent did not create and others can enter is refused, not chmodded; a
// second agent refuses to start over a live one; a stale socket file is
// replaced.
func TestE2ESocket(t *testing.T) {
	e := newTestEnv(t)

	// A directory made too open beforehand is refused and left as it is.
	open := filepath.Join(e.dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o755) // past the umask
	r := e.warden("run", "--upstream", "none", "--socket", filepath.Join(open, "agent.sock"))
	if r.code == 0 || !strings.Contains(r.stderr, "has mode 0755") || !strings.Contains(r.stderr, "chmod 700") {
		t.Errorf("agent in a 0755 directory: want a refusal naming the fix, got %s", r)
	}
	if di, err := os.Stat(open); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("the refused directory's mode changed: %v %v", di.Mode(), err)
	}

	// A directory the agent creates is 0700.
	dir := filepath.Join(e.dir, "sock")
	sock := filepath.Join(dir, "agent.sock")
	a := startAgent(t, e, nil, "--upstream", "none", "--socket", sock)
	if a.socket != sock {
		t.Errorf("banner names %s, want %s", a.socket, sock)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}

	t.Run("live agent", func(t *testing.T) {
		// Its own state directory: one directory refuses a second agent
		// before the socket is looked at (TestE2ESecondAgentRefused).
		r := e.run([]string{"XDG_STATE_HOME=" + filepath.Join(e.dir, "state2")}, wardenExe, "run", "--upstream", "none", "--socket", sock)
		if r.code == 0 {
			t.Fatalf("a second agent started over a live socket: %s", r)
		}
		if !strings.Contains(r.stderr, sock) || !strings.Contains(r.stderr, "already listening") {
			t.Errorf("second agent: want an error naming %s and saying an agent is already listening, got %s", sock, r)
		}
		if !dialable("unix", sock) {
			t.Errorf("the refused second agent broke the first agent's socket")
		}
	})

	t.Run("stale socket", func(t *testing.T) {
		stale := filepath.Join(e.dir, "stale", "agent.sock")
		os.MkdirAll(filepath.Dir(stale), 0o700)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close()
		if _, err := os.Lstat(stale); err != nil {
			t.Fatalf("stale socket file missing: %v", err)
		}
		b := startAgent(t, e, []string{"XDG_STATE_HOME=" + filepath.Join(e.dir, "state2")}, "--upstream", "none", "--socket", stale)
		if !dialable("unix", stale) {
			t.Fatalf("agent started over a stale socket does not answer")
		}
		b.stop(t)
	})

	t.Run("sigterm removes the socket", func(t *testing.T) {
		a.stop(t)
	})
}

// TestE2EUpstreamIsOwnSocket: warden refuses to proxy to itself, however
// the path to its own socket is spelt.
func TestE2EUpstreamIsOwnSocket(t *testing.T) {
	e := newTestEnv(t)
	first := startAgent(t, e, nil, "--upstream", "none")

	dir := filepath.Join(e.dir, "second")
	own := filepath.Join(dir, "agent.sock")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "link.sock") // a symlink to the socket-to-be, as ~/.ssh/agent.sock often is
	if err := os.Symlink(own, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"--upstream", nil, []string{"--socket", own, "--upstream", own}},
		{"SSH_AUTH_SOCK", []string{"SSH_AUTH_SOCK=" + own}, []string{"--socket", own}},
		{"another spelling", nil, []string{"--socket", own, "--upstream", dir + "/../second/agent.sock"}},
		{"symlink", []string{"SSH_AUTH_SOCK=" + link}, []string{"--socket", own}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Its own state directory, else the first agent's lock refuses it
			// before the socket is looked at.
			a, err := launchAgent(t, e, append(c.env, "XDG_STATE_HOME="+filepath.Join(e.dir, "state2")), c.args...)
			if err == nil {
				// A loop: every list would connect to itself until the
				// agent runs out of file descriptors.
				r := e.sshAdd(a.socket, nil, "-l")
				a.cmd.Process.Kill()
				<-a.done
				os.Remove(own)
				t.Fatalf("agent started with its own socket as upstream (ssh-add -l through it: %s)", r)
			}
			if !strings.Contains(err.Error(), "own socket") {
				t.Errorf("want an error saying the upstream is warden's own socket, got %v", err)
			}
		})
	}
	if !dialable("unix", first.socket) {
		t.Errorf("the first agent's socket stopped answering")
	}
	// Another running warden is refused too: its upstream keys are not
	// yours to proxy, and SSH_AUTH_SOCK left pointing at warden is the
	// usual way to get there by mistake.
	if _, err := launchAgent(t, e, nil, "--socket", own, "--upstream", first.socket); err == nil || !strings.Contains(err.Error(), "is a warden-agent") {
		t.Errorf("upstream that is another warden-agent: err = %v, want refusal", err)
	}
}

// TestE2ESIGTERMRightAfterBannerRemovesSocket pins a race: the agent
// printed its banner (and accepted connections) before it handled
// SIGTERM, so a supervisor stopping it right after start killed it and
// left its socket behind.
func TestE2ESIGTERMRightAfterBannerRemovesSocket(t *testing.T) {
	e := newTestEnv(t)
	for i := 0; i < 5; i++ {
		a, err := launchAgent(t, e, nil, "--upstream", "none")
		if err != nil {
			t.Fatal(err)
		}
		a.stop(t) // exit 0, socket removed
		if t.Failed() {
			break
		}
	}
}

// TestE2EOtherUIDRefused: a client of another uid that reaches the socket
// (the test loosens its modes to let it) is closed without an answer.
func TestE2EOtherUIDRefused(t *testing.T) {
	needPrograms(t, "ssh-add")
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as nobody")
	}
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	for _, d := range []string{e.dir, e.runtime, filepath.Dir(a.socket)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(a.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh-add", "-l")
	cmd.Env = e.environ("SSH_AUTH_SOCK=" + a.socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	// ssh-add fails to talk to the agent: exit 2, or SIGPIPE when the
	// close wins the race with its request.
	if err == nil || ctx.Err() != nil {
		t.Errorf("ssh-add -l as nobody: want a failed agent connection, got %v:\n%s", err, out)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(a.stderr.String(), "peer belongs to another user") }) {
		t.Errorf("the agent did not log the refused connection from another uid")
	}
	// Root (and we) still get an answer.
	if r := e.sshAdd(a.socket, nil, "-l"); r.code != 1 || !strings.Contains(r.stdout, "no identities") {
		t.Errorf("ssh-add -l as ourselves: %s", r)
	}
}

// TestE2ECommands: env, ssh-config and hint with the agent down.
func TestE2ECommands(t *testing.T) {
	e := newTestEnv(t)
	if got, want := e.mustWarden("env"), "SSH_AUTH_SOCK="+e.socket()+"; export SSH_AUTH_SOCK;\n"; got != want {
		t.Errorf("env = %q, want %q", got, want)
	}
	if got, want := e.mustWarden("env", "--fish"), "set -gx SSH_AUTH_SOCK "+e.socket()+";\n"; got != want {
		t.Errorf("env --fish = %q, want %q", got, want)
	}
	if got, want := e.mustWarden("env", "--path"), e.socket()+"\n"; got != want {
		t.Errorf("env --path = %q, want %q", got, want)
	}
	odd := filepath.Join(e.dir, "it's here", "agent.sock")
	if got, want := e.mustWarden("env", "--socket", odd), `SSH_AUTH_SOCK='`+strings.ReplaceAll(odd, `'`, `'\''`)+`'; export SSH_AUTH_SOCK;`+"\n"; got != want {
		t.Errorf("env --socket %q = %q, want %q", odd, got, want)
	}
	if _, err := exec.LookPath("sh"); err == nil {
		// The quoted line means the same to sh.
		r := e.run(nil, "sh", "-c", e.mustWarden("env", "--socket", odd)+` printf %s "$SSH_AUTH_SOCK"`)
		if r.stdout != odd {
			t.Errorf("sh evaluates the env line to %q, want %q", r.stdout, odd)
		}
	}

	sock := filepath.Join(e.dir, "s", "agent.sock")
	block := e.mustWarden("ssh-config", "--socket", sock)
	// warden-hint is installed beside warden-agent (TestMain): the block
	// runs it, and `warden-agent hint` when it is not there.
	wantExec := fmt.Sprintf(`Match final exec "%s --socket %s --user %%r --host %%h --port %%p"`, filepath.Join(filepath.Dir(wardenExe), "warden-hint"), sock)
	if os.Getenv("WARDEN_E2E_EXE") != "" {
		wantExec = fmt.Sprintf(`Match final exec "%s hint --socket %s --user %%r --host %%h --port %%p"`, wardenExe, sock)
	}
	if !strings.Contains(block, wantExec) {
		t.Errorf("ssh-config:\n%s\nwant the line\n%s", block, wantExec)
	}
	if !strings.Contains(block, "IdentityAgent "+sock+"\n") {
		t.Errorf("ssh-config:\n%s\nwant IdentityAgent %s", block, sock)
	}
	if def := e.mustWarden("ssh-config"); !strings.Contains(def, "IdentityAgent "+e.socket()+"\n") {
		t.Errorf("ssh-config without --socket:\n%s\nwant IdentityAgent %s", def, e.socket())
	}

	r := e.warden("hint", "--socket", sock, "--ssh-pid", strconv.Itoa(os.Getpid()), "--user", "root", "--host", "example.com", "--port", "22")
	if r.code != 1 || !strings.Contains(r.stderr, "not running") || !strings.Contains(r.stderr, sock) {
		t.Errorf("hint with the agent down: want exit 1 and \"not running on %s\", got %s", sock, r)
	}
	if r.stdout != "" {
		t.Errorf("hint printed on stdout: %q", r.stdout)
	}
	// warden-hint says the same.
	if hint := filepath.Join(filepath.Dir(wardenExe), "warden-hint"); os.Getenv("WARDEN_E2E_EXE") == "" {
		r := e.run(nil, hint, "--socket", sock, "--ssh-pid", strconv.Itoa(os.Getpid()), "--user", "root", "--host", "example.com", "--port", "22")
		if r.code != 1 || !strings.Contains(r.stderr, "not running") || !strings.Contains(r.stderr, sock) || r.stdout != "" {
			t.Errorf("warden-hint with the agent down: want exit 1 and \"not running on %s\" on stderr, got %s", sock, r)
		}
		if r := e.run(nil, hint, "--user", "root"); r.code != 2 || !strings.Contains(r.stderr, "usage: warden-hint") {
			t.Errorf("warden-hint without --host: want exit 2 and its usage, got %s", r)
		}
	}
}
