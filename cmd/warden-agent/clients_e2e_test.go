package main

// End-to-end tests of issue 8's clients without session-bind, as real
// programs: Python's paramiko (Debian's /usr/bin/python3 with
// python3-paramiko) and a golang.org/x/crypto/ssh client signing through
// golang.org/x/crypto/ssh/agent. Neither sends session-bind@openssh.com,
// so the agent cannot prove their target. They get their certificate the
// way docs/ops-bridge.md documents for tunnel programs: the cert command
// `warden-agent sign --principal P --host H` issues it ahead, and the
// client, with SSH_AUTH_SOCK at warden, is offered it (a connection with
// neither hint nor bind sees the certificates already issued). On a route
// with the default require_bind: true the signature is refused and the
// audit log says why; on a route with require_bind: false the login
// succeeds and is recorded as cert.used. Such a connection is offered
// every certificate the agent holds; a client that runs `warden-agent
// hint` for its own pid first is offered its target's certificate only.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// debianPython is the interpreter python3-paramiko installs into; the
// python3 on PATH may be another one (pyenv) without paramiko.
const debianPython = "/usr/bin/python3"

// needParamiko skips the test unless Debian's python3 can import paramiko.
func needParamiko(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s is not installed (apt-get install python3-paramiko): %v", debianPython, err)
	}
	e := newTestEnv(t)
	if r := e.run(nil, debianPython, "-c", "import paramiko"); r.code != 0 {
		t.Skipf("paramiko is not importable by %s (apt-get install python3-paramiko): %s", debianPython, r)
	}
}

// clientsLab is one agent with a single route "tunnels" for 127.0.0.1
// allowing only user, a real sshd trusting the agent's CA, and a
// known_hosts file naming that sshd's host key. requireBind "" leaves the
// route at the default (true).
type clientsLab struct {
	e      *testEnv
	a      *agentProc
	s      *sshdProc
	user   string
	kh     string // known_hosts for [127.0.0.1]:port
	route  string
	issued auditRecord // the cert.issued of `warden-agent sign`
}

func newClientsLab(t *testing.T, route, requireBind string, moreRoutes ...string) *clientsLab {
	t.Helper()
	needPrograms(t, "ssh-keygen")
	sshdPath(t)
	l := &clientsLab{user: loginUser(t), e: newTestEnv(t), route: route}
	yaml := fmt.Sprintf("routes:\n  - name: %s\n    hosts: [\"127.0.0.1\"]\n    principals: [%q]\n    ttl: 5m\n", route, l.user)
	if requireBind != "" {
		yaml += "    require_bind: " + requireBind + "\n"
	}
	for _, r := range moreRoutes {
		yaml += r
	}
	l.e.writeConfig(yaml)
	l.a = startAgent(t, l.e, nil, "--upstream", "none")
	l.s = startSSHD(t, l.a.ca)
	l.kh = filepath.Join(l.e.dir, "known_hosts")
	writeFile(t, l.kh, fmt.Sprintf("[127.0.0.1]:%d %s\n", l.s.port, l.s.hostPub))

	// The cert command of docs/ops-bridge.md: issue ahead, fail loudly.
	r := l.e.warden("sign", "--principal", l.user, "--host", "127.0.0.1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("warden-agent sign --principal %s --host 127.0.0.1: %s", l.user, r)
	}
	issued := events(l.a.audit(t), "cert.issued")
	if len(issued) != 1 || issued[0].str("route") != route || issued[0].str("source") != "sign-command" || issued[0].str("principal") != l.user {
		t.Fatalf("after sign: want one cert.issued on route %s for %s from the sign command, got %v", route, l.user, issued)
	}
	l.issued = issued[0]
	return l
}

// checkRefused checks the audit log and sshd after a login the agent
// refused to sign: a sign.denied naming session-bind and require_bind for
// the issued certificate, no cert.used, no session.bind, no login.
func (l *clientsLab) checkRefused(t *testing.T) {
	t.Helper()
	recs := l.a.audit(t)
	// A connection without session-bind is not even offered a require_bind
	// certificate (it could not sign with it; docs/security.md), so the
	// client has nothing of warden's to try.
	if got := events(recs, "sign.denied", "route", l.route); len(got) != 0 {
		t.Errorf("the require_bind certificate was offered and tried: %v", got)
	}
	if got := events(recs, "cert.used"); len(got) != 0 {
		t.Errorf("a refused client produced cert.used: %v", got)
	}
	if got := events(recs, "session.bind"); len(got) != 0 {
		t.Errorf("session.bind recorded for a client that does not bind: %v", got)
	}
	if n := len(events(recs, "cert.issued", "route", l.route)); n != 1 {
		t.Errorf("want only the sign command's cert.issued on route %s, got %d", l.route, n)
	}
	if strings.Contains(l.s.log.String(), "Accepted publickey") {
		t.Errorf("sshd accepted a login that warden refused to sign:\n%s", l.s.log)
	}
}

// checkAllowed checks the audit log and sshd after a login that must have
// succeeded: one cert.used (bound false) with the issued serial, no
// denial, and sshd logged the certificate login with that serial.
func (l *clientsLab) checkAllowed(t *testing.T, callerExe string) {
	t.Helper()
	recs := l.a.audit(t)
	used := events(recs, "cert.used", "route", l.route)
	if len(used) != 1 {
		t.Fatalf("want one cert.used on route %s, got %v", l.route, events(recs, "cert.used"))
	}
	u := used[0]
	if u.str("serial") != l.issued.str("serial") || u.str("user") != l.user || fmt.Sprint(u["bound"]) != "false" || u.str("result") != "signed" {
		t.Errorf("cert.used %v: want serial %s, user %s, bound false, result signed", u, l.issued.str("serial"), l.user)
	}
	if caller, _ := u["caller"].(map[string]any); callerExe != "" && !strings.Contains(fmt.Sprint(caller["exe"]), callerExe) {
		t.Errorf("cert.used caller exe %v, want the client (%s)", caller["exe"], callerExe)
	}
	if got := events(recs, "sign.denied"); len(got) != 0 {
		t.Errorf("sign.denied on a require_bind: false route: %v", got)
	}
	if got := events(recs, "session.bind"); len(got) != 0 {
		t.Errorf("session.bind recorded for a client that does not bind: %v", got)
	}
	if n := len(events(recs, "cert.issued", "route", l.route)); n != 1 {
		t.Errorf("the login issued again: %d cert.issued on route %s, want the sign command's one", n, l.route)
	}
	log := l.s.log.String()
	if !strings.Contains(log, "Accepted publickey for "+l.user) || !strings.Contains(log, "ED25519-CERT") ||
		!strings.Contains(log, "(serial "+l.issued.str("serial_dec")+")") {
		t.Errorf("sshd log does not show the certificate login for %s with serial %s:\n%s", l.user, l.issued.str("serial_dec"), log)
	}
}

// paramikoScript logs in with the keys of the agent at SSH_AUTH_SOCK
// (paramiko.Agent), checking the host key against a known_hosts file, and
// runs a command. Exit 3: authentication failed; 4: another SSH error;
// otherwise the command's exit status.
const paramikoScript = `import socket, sys
import paramiko

host, port, user, known_hosts, command = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
keys = paramiko.Agent().get_keys()
print("agent keys: %s" % ", ".join(k.get_name() for k in keys), file=sys.stderr)
client = paramiko.SSHClient()
client.load_host_keys(known_hosts)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
try:
    client.connect(host, port=port, username=user, allow_agent=True, look_for_keys=False,
                   timeout=30, banner_timeout=30, auth_timeout=30)
except paramiko.AuthenticationException as e:
    print("authentication failed: %r" % e, file=sys.stderr)
    sys.exit(3)
except (paramiko.SSHException, socket.error) as e:
    print("ssh error: %r" % e, file=sys.stderr)
    sys.exit(4)
_, stdout, stderr = client.exec_command(command, timeout=30)
out = stdout.read().decode()
status = stdout.channel.recv_exit_status()
sys.stdout.write(out)
sys.stderr.write(stderr.read().decode())
client.close()
sys.exit(status)
`

// paramikoHintPrefix makes paramikoScript run `warden-agent hint` for its
// own pid before it asks the agent for keys, as ssh's Match exec does for
// ssh: the agent then lists this target's certificate only.
const paramikoHintPrefix = `import os, subprocess, sys
subprocess.run(["warden-agent", "hint", "--ssh-pid", str(os.getpid()), "--user", sys.argv[3],
                "--host", sys.argv[1], "--port", sys.argv[2]], check=True)
`

// runParamiko runs paramikoScript as user@127.0.0.1 with SSH_AUTH_SOCK at
// the agent; the remote command prints word and the remote user.
func (l *clientsLab) runParamiko(t *testing.T, word string) result {
	t.Helper()
	return l.runParamikoScript(t, paramikoScript, word)
}

func (l *clientsLab) runParamikoScript(t *testing.T, code, word string) result {
	t.Helper()
	script := filepath.Join(l.e.dir, "paramiko_login.py")
	writeFile(t, script, code)
	return l.e.run([]string{"SSH_AUTH_SOCK=" + l.a.socket}, debianPython, script,
		"127.0.0.1", strconv.Itoa(l.s.port), l.user, l.kh, "echo "+word+" $(id -un)")
}

// TestE2EParamikoWithoutSessionBind: paramiko signs through warden with
// the certificate `warden-agent sign` issued. require_bind: true (the
// default) refuses the signature, so the login fails and sign.denied says
// why; require_bind: false lets it log in, recorded as cert.used.
func TestE2EParamikoWithoutSessionBind(t *testing.T) {
	needParamiko(t)

	t.Run("require_bind true refuses", func(t *testing.T) {
		l := newClientsLab(t, "bound-only", "")
		word := habitsWord("paramiko-refused")
		r := l.runParamiko(t, word)
		t.Logf("paramiko: %s", r)
		// The agent offers paramiko nothing of warden's: the login fails
		// without a signature being asked for.
		if r.code == 0 || strings.Contains(r.stdout, word) {
			t.Fatalf("paramiko login on a require_bind route: want a failed login, got %s", r)
		}
		if strings.Contains(r.stderr, "agent keys: ssh-ed25519-cert-v01@openssh.com") {
			t.Errorf("paramiko was offered the require_bind certificate: %s", r)
		}
		l.checkRefused(t)
	})

	t.Run("require_bind false logs in", func(t *testing.T) {
		l := newClientsLab(t, "tunnels", "false")
		word := habitsWord("paramiko")
		r := l.runParamiko(t, word)
		if want := word + " " + l.user; r.code != 0 || strings.TrimSpace(r.stdout) != want {
			t.Fatalf("paramiko login on a require_bind: false route: want %q and exit 0, got %s", want, r)
		}
		if !strings.Contains(r.stderr, "agent keys: ssh-ed25519-cert-v01@openssh.com") {
			t.Errorf("paramiko's agent keys: want the certificate: %s", r)
		}
		l.checkAllowed(t, "python")
	})

	// A connection with neither hint nor session-bind is offered only the
	// certificates of require_bind: false routes; paramiko gives up at the
	// first signature the agent refuses, so another route's certificate
	// must never be among them. Here the other route's name sorts first.
	t.Run("only bind-free certificates are listed", func(t *testing.T) {
		user := loginUser(t)
		l := newClientsLab(t, "tunnels", "false",
			fmt.Sprintf("  - name: interactive\n    hosts: [\"localhost\"]\n    principals: [%q]\n    ttl: 5m\n", user))
		if r := l.e.warden("sign", "--principal", l.user, "--host", "localhost"); r.code != 0 {
			t.Fatalf("sign for the interactive route: %s", r)
		}
		got := l.e.listed(l.a.socket)
		if len(got) != 1 || !strings.Contains(got[0], "warden:tunnels:") {
			t.Fatalf("ssh-add -l (no hint, no bind): want the tunnels certificate alone, got %q", got)
		}
		for i := range 3 {
			word := habitsWord(fmt.Sprintf("paramiko-order-%d", i))
			r := l.runParamiko(t, word)
			if want := word + " " + l.user; r.code != 0 || strings.TrimSpace(r.stdout) != want {
				t.Fatalf("paramiko login %d with another route's certificate held: want %q and exit 0, got %s", i, want, r)
			}
		}
		if denied := events(l.a.audit(t), "sign.denied"); len(denied) != 0 {
			t.Errorf("the interactive route's certificate was tried: %v", denied)
		}
	})

	// The hint, run by the client for its own pid, narrows the list to its
	// target's certificate.
	t.Run("hint narrows the list to the target", func(t *testing.T) {
		user := loginUser(t)
		l := newClientsLab(t, "tunnels", "false",
			fmt.Sprintf("  - name: interactive\n    hosts: [\"localhost\"]\n    principals: [%q]\n    ttl: 5m\n", user))
		// Another route's certificate (require_bind: true), as an
		// interactive ssh would leave it.
		if r := l.e.warden("sign", "--principal", l.user, "--host", "localhost"); r.code != 0 {
			t.Fatalf("sign for the interactive route: %s", r)
		}
		if got := l.e.listed(l.a.socket); len(got) != 1 {
			t.Fatalf("ssh-add -l (no hint, no bind): want the tunnels certificate alone, got %q", got)
		}
		word := habitsWord("paramiko-hint")
		r := l.runParamikoScript(t, paramikoHintPrefix+paramikoScript, word)
		if want := word + " " + l.user; r.code != 0 || strings.TrimSpace(r.stdout) != want {
			t.Fatalf("paramiko after its hint: want %q and exit 0, got %s", want, r)
		}
		if !strings.Contains(r.stderr, "agent keys: ssh-ed25519-cert-v01@openssh.com\n") {
			t.Errorf("after the hint the agent must list the target's certificate alone: %s", r)
		}
		recs := l.a.audit(t)
		if len(events(recs, "hint", "host", "127.0.0.1", "user", l.user)) != 1 {
			t.Errorf("want one hint record for %s@127.0.0.1", l.user)
		}
		l.checkAllowed(t, "python")
	})
}

// xcryptoLogin logs in as user to addr with golang.org/x/crypto/ssh, its
// keys from the agent at socket through golang.org/x/crypto/ssh/agent
// (which sends no session-bind), checks the host key, and returns what
// command printed.
func xcryptoLogin(socket, addr, user string, hostKey ssh.PublicKey, command string) (string, error) {
	nc, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	ac := agent.NewClient(nc)
	client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeysCallback(ac.Signers)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         30 * time.Second,
	})
	if err != nil {
		return "", err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.Output(command)
	return string(out), err
}

// TestE2EXCryptoClientWithoutSessionBind: an x/crypto/ssh client with
// x/crypto/ssh/agent over warden's socket, after `warden-agent sign`:
// refused on a require_bind route (the agent answers the sign request
// with failure and records why), logged in on require_bind: false.
func TestE2EXCryptoClientWithoutSessionBind(t *testing.T) {
	run := func(t *testing.T, l *clientsLab, word string, wantListed int) (string, error) {
		t.Helper()
		hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l.s.hostPub))
		if err != nil {
			t.Fatal(err)
		}
		// The agent lists the issued certificate to this connection when
		// it could sign with it (require_bind: false), else nothing.
		ac, err := net.Dial("unix", l.a.socket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := agent.NewClient(ac).List()
		ac.Close()
		if err != nil || len(keys) != wantListed || (wantListed == 1 && keys[0].Format != ssh.CertAlgoED25519v01) {
			t.Fatalf("x/crypto agent client List: want %d certificate(s), got %v, %v", wantListed, keys, err)
		}
		return xcryptoLogin(l.a.socket, net.JoinHostPort("127.0.0.1", strconv.Itoa(l.s.port)), l.user, hostKey, "echo "+word+" $(id -un)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Base(self) // the caller is this test binary

	t.Run("require_bind true refuses", func(t *testing.T) {
		l := newClientsLab(t, "bound-only", "")
		word := habitsWord("xcrypto-refused")
		out, err := run(t, l, word, 0)
		t.Logf("x/crypto login: %v", err)
		if err == nil || strings.Contains(out, word) {
			t.Fatalf("x/crypto login on a require_bind route: want a failed login, got output %q, err %v", out, err)
		}
		if !strings.Contains(err.Error(), "handshake failed") || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("x/crypto login: want the handshake to fail with no key to offer, got %v", err)
		}
		l.checkRefused(t)
	})

	t.Run("require_bind false logs in", func(t *testing.T) {
		l := newClientsLab(t, "tunnels", "false")
		word := habitsWord("xcrypto")
		out, err := run(t, l, word, 1)
		if want := word + " " + l.user; err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("x/crypto login on a require_bind: false route: want %q, got %q, err %v", want, out, err)
		}
		l.checkAllowed(t, exe)
	})
}
