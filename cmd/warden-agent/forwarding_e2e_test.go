package main

// End-to-end tests of issue 8's "Agent forwarding" and "Many keys" with
// real programs: `ssh -A bastion ssh target` through two real sshd's (on
// 127.0.0.1 and 127.0.0.2), where the inner ssh runs on the "bastion"
// (the same machine) with the agent sshd forwarded and the policy's
// `forwarded` rule decides; and a real upstream ssh-agent holding ten
// keys, where the certificate must still be offered first so that sshd's
// default MaxAuthTries (6) is never reached.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const fwdDenyReason = "no certificates through a forwarded agent in this test"

// fwdPolicyAllow allows everything, forwarded or not.
const fwdPolicyAllow = `rules:
  - name: allow-all
    effect: allow
`

// fwdPolicyDeny denies forwarded requests with a reason, then allows the
// rest (the bastion login itself is not forwarded).
const fwdPolicyDeny = `rules:
  - name: no-forwarded
    forwarded: true
    effect: deny
    reason: ` + fwdDenyReason + `

  - name: allow-rest
    effect: allow
`

// fwdKeyField is a public key line without its comment, as host_keys
// wants it.
func fwdKeyField(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}

// fwdLab is one variant of the forwarding test: an agent with routes
// bastion (127.0.0.1, may forward the agent) and fwd-target (pinned by the
// target sshd's host key, one principal), a policy file, two sshd's, the
// local ssh_config with warden's Match block, and the inner ssh_config
// the remote command uses (no Match block, no IdentityAgent).
type fwdLab struct {
	e                *testEnv
	a                *agentProc
	bastion, target  *sshdProc
	cfg, innerCfg    string
	user             string
	fpBastion, fpTgt string
}

func newFwdLab(t *testing.T, policy string) *fwdLab {
	t.Helper()
	return newFwdLabOpts(t, policy, fwdOpts{})
}

// fwdOpts varies the lab: the agent's upstream (an agent socket; default
// none), the target's route (YAML list items for agent.yaml given the
// lab's user and target sshd; default fwd-target pinning the target's
// host key) and warden's known_hosts file's contents.
type fwdOpts struct {
	upstream    string
	targetRoute func(user string, target *sshdProc) string
	knownHosts  func(target *sshdProc) string
}

func newFwdLabOpts(t *testing.T, policy string, o fwdOpts) *fwdLab {
	t.Helper()
	if o.upstream == "" {
		o.upstream = "none"
	}
	if o.targetRoute == nil {
		o.targetRoute = func(user string, target *sshdProc) string {
			return fmt.Sprintf("  - name: fwd-target\n    host_keys: [%q]\n    principals: [%q]\n    ttl: 5m\n", fwdKeyField(target.hostPub), user)
		}
	}
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	l := &fwdLab{user: loginUser(t), e: newTestEnv(t)}
	e := l.e

	// The catalog pins the target sshd's host key, which exists once the
	// sshd runs, and the sshd's trust the agent's CA, which exists once
	// the agent runs: the sshd's start with a placeholder CA, and ca.pub
	// is rewritten once the agent printed its CA (sshd reads
	// TrustedUserCAKeys at each authentication).
	placeholder := keygen(t, filepath.Join(e.dir, "placeholder-ca"), "placeholder-ca")
	l.bastion = startSSHDOn(t, "127.0.0.1", placeholder)
	l.target = startSSHDOn(t, "127.0.0.2", placeholder)
	l.fpBastion, l.fpTgt = fingerprint(t, l.bastion.hostPub), fingerprint(t, l.target.hostPub)
	if l.fpBastion == l.fpTgt {
		t.Fatal("the two sshd's share a host key")
	}

	wardenKH := filepath.Join(e.dir, "no-such-known-hosts")
	if o.knownHosts != nil {
		wardenKH = filepath.Join(e.dir, "warden_known_hosts")
		writeFile(t, wardenKH, o.knownHosts(l.target))
	}
	policyPath := filepath.Join(e.dir, "policy.yaml")
	writeFile(t, policyPath, policy)
	// The bastion's certificate must carry permit-agent-forwarding, or its
	// sshd refuses the agent channel. fwd-target has no hosts: only the
	// pinned host key selects it, as on a forwarded connection.
	e.writeConfig(fmt.Sprintf(`routes:
  - name: bastion
    hosts: ["127.0.0.1"]
    principals: [%[1]q]
    ttl: 5m
    extensions:
      permit-pty: ""
      permit-agent-forwarding: ""
%[2]spolicy:
  path: %[3]s
known_hosts: [%[4]q]
`, l.user, o.targetRoute(l.user, l.target), policyPath, wardenKH))
	l.a = startAgent(t, e, nil, "--upstream", o.upstream)
	for _, s := range []*sshdProc{l.bastion, l.target} {
		writeFile(t, filepath.Join(s.dir, "ca.pub"), l.a.ca+"\n")
	}

	// Outer: the bastion through warden's Match block.
	l.cfg = habitsSSHConfig(t, e, l.a.socket, habitsHost{"bastion", l.bastion})

	// Inner: run by the remote command on the bastion (the same machine,
	// so it reads these files): no Match block and no IdentityAgent, so
	// ssh uses the SSH_AUTH_SOCK sshd set for the forwarded agent.
	innerKH := filepath.Join(e.dir, "inner_known_hosts")
	writeFile(t, innerKH, fmt.Sprintf("[%s]:%d %s\n", l.target.addr, l.target.port, l.target.hostPub))
	l.innerCfg = filepath.Join(e.dir, "inner_ssh_config")
	writeFile(t, l.innerCfg, fmt.Sprintf(`Host target
    HostName %s
    Port %d
    User %s
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 10
    IdentityFile %s/no-such-inner-key
    ControlMaster no
    ControlPath none
`, l.target.addr, l.target.port, l.user, innerKH, e.dir))
	// The remote command runs as the login user: that is us (a non-root
	// sshd logs in only its own user), so it reads these files.
	return l
}

// hop runs `ssh -A -F cfg user@bastion ssh -F innerCfg -o BatchMode=yes
// target echo ok`.
func (l *fwdLab) hop() result {
	return l.e.run(nil, "ssh", "-A", "-F", l.cfg, l.user+"@bastion",
		"ssh", "-F", l.innerCfg, "-o", "BatchMode=yes", "target", "echo", "ok")
}

// forwardedConns returns the agent connections that saw a forwarding bind
// with the bastion's host key.
func (l *fwdLab) forwardedConns(recs []auditRecord) []string {
	var out []string
	for _, b := range events(recs, "session.bind", "forwarding", "true", "host_key", l.fpBastion) {
		if !slices.Contains(out, b.str("conn")) {
			out = append(out, b.str("conn"))
		}
	}
	return out
}

// checkBindOrder checks that conn, a forwarded agent's connection of the
// outer ssh, begins with a verified forwarding bind for the bastion that
// names the outer ssh's login connection (its hint's id) in login_conn,
// and has, as the next bind, a verified login bind for the target.
func (l *fwdLab) checkBindOrder(t *testing.T, recs []auditRecord, conn string) {
	t.Helper()
	binds := events(recs, "session.bind", "conn", conn)
	fwd := slices.IndexFunc(binds, func(b auditRecord) bool {
		return fmt.Sprint(b["forwarding"]) == "true" && b.str("host_key") == l.fpBastion
	})
	login := events(recs, "cert.issued", "route", "bastion")
	switch {
	case fwd != 0:
		t.Errorf("conn %s: the first bind is not a forwarding bind with the bastion's host key %s: %v", conn, l.fpBastion, binds)
	case len(login) != 1 || login[0].str("conn") == conn || binds[fwd].str("login_conn") != login[0].str("conn"):
		t.Errorf("conn %s: want its own id and login_conn naming the bastion login's conn (cert.issued %v), got %v", conn, login, binds[fwd])
	case fmt.Sprint(binds[fwd]["verified"]) != "true":
		t.Errorf("conn %s: the forwarding bind is not verified: %v", conn, binds[fwd])
	case fwd+1 >= len(binds):
		t.Errorf("conn %s: no bind after the forwarding bind: %v", conn, binds)
	default:
		b := binds[fwd+1]
		if b.str("host_key") != l.fpTgt || fmt.Sprint(b["forwarding"]) != "false" || fmt.Sprint(b["verified"]) != "true" {
			t.Errorf("conn %s: the bind after the forwarding bind is %v, want a verified login bind with the target's host key %s", conn, b, l.fpTgt)
		}
	}
	for _, b := range binds {
		if b.str("host_key") != l.fpBastion && b.str("host_key") != l.fpTgt {
			t.Errorf("conn %s: a bind with an unknown host key: %v", conn, b)
		}
	}
}

// TestE2EForwardingPolicy: `ssh -A bastion`, then ssh to the target run on
// the bastion through the forwarded agent. Warden sees the forwarding bind
// and then the target's bind on one connection, takes the route from the
// target's pinned host key (the local ssh's hint names the bastion), and
// the policy's `forwarded` rule decides: allowed in one variant, denied
// (nothing issued, nothing signed, the reason recorded) in the other.
func TestE2EForwardingPolicy(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		l := newFwdLab(t, fwdPolicyAllow)
		r := l.hop()
		if r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
			t.Fatalf("ssh -A bastion ssh target echo ok: want ok and exit 0, got %s", r)
		}
		recs := l.a.audit(t)

		// The bastion login: the hint's route, not forwarded.
		if got := events(recs, "cert.issued", "route", "bastion", "forwarded", "false"); len(got) != 1 {
			t.Errorf("want one non-forwarded cert.issued on route bastion, got %v", events(recs, "cert.issued"))
		}

		conns := l.forwardedConns(recs)
		if len(conns) == 0 {
			t.Fatalf("no session.bind with forwarding=true and the bastion's host key %s: %v", l.fpBastion, events(recs, "session.bind"))
		}
		issued := events(recs, "cert.issued", "route", "fwd-target")
		if len(issued) != 1 {
			t.Fatalf("want one cert.issued on route fwd-target, got %v", events(recs, "cert.issued"))
		}
		iss := issued[0]
		if fmt.Sprint(iss["forwarded"]) != "true" || iss.str("source") != "host-key" || iss.str("host_key") != l.fpTgt || iss.str("principal") != l.user {
			t.Errorf("cert.issued on fwd-target %v: want forwarded=true, source host-key, host_key %s, principal %s", iss, l.fpTgt, l.user)
		}
		if !slices.Contains(conns, iss.str("conn")) {
			t.Errorf("cert.issued on fwd-target was on conn %s, not on a forwarded connection %v", iss.str("conn"), conns)
		}
		used := events(recs, "cert.used", "route", "fwd-target")
		if len(used) != 1 {
			t.Fatalf("want one cert.used on route fwd-target, got %v", events(recs, "cert.used"))
		}
		u := used[0]
		if u.str("serial") != iss.str("serial") || u.str("host_key") != l.fpTgt || u.str("user") != l.user {
			t.Errorf("cert.used on fwd-target %v: want serial %s, host_key %s, user %s", u, iss.str("serial"), l.fpTgt, l.user)
		}
		l.checkBindOrder(t, recs, u.str("conn"))
		if l.target.certLogins(l.user) != 1 || l.bastion.certLogins(l.user) != 1 {
			t.Errorf("want one certificate login on each sshd, got bastion %d, target %d", l.bastion.certLogins(l.user), l.target.certLogins(l.user))
		}

		// Through the forwarded agent alone (no target bind): nothing is
		// listed, and adding a key is refused.
		r = l.e.run(nil, "ssh", "-A", "-F", l.cfg, l.user+"@bastion", "ssh-add", "-l")
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "The agent has no identities") {
			t.Errorf("ssh -A bastion ssh-add -l: want exit 1 and no identities on a connection bound for forwarding only, got %s", r)
		}
		key := filepath.Join(l.e.dir, "fwd-added")
		keygen(t, key, "fwd-added")
		r = l.e.run(nil, "ssh", "-A", "-F", l.cfg, l.user+"@bastion", "ssh-add", key)
		if r.code == 0 {
			t.Errorf("ssh -A bastion ssh-add KEY: a key was added through a forwarded agent: %s", r)
		}
		if !waitFor(2*time.Second, func() bool {
			return strings.Contains(l.a.stderr.String(), "adding keys is refused on a forwarded connection")
		}) {
			t.Errorf("the agent did not log the refused add on the forwarded connection")
		}
		if got := events(l.a.audit(t), "request.refused", "trust", "forwarded"); len(got) == 0 {
			t.Errorf("no request.refused record with trust forwarded for the add")
		}
		if got := events(l.a.audit(t), "key.added"); len(got) != 0 {
			t.Errorf("key.added through a forwarded agent: %v", got)
		}
	})

	t.Run("denied", func(t *testing.T) {
		l := newFwdLab(t, fwdPolicyDeny)
		r := l.hop()
		if r.code == 0 || strings.Contains(r.stdout, "ok") {
			t.Fatalf("the inner login through the forwarded agent succeeded although the policy denies forwarded requests: %s", r)
		}
		if !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("want the target's refusal (Permission denied) from the inner ssh: %s", r)
		}
		recs := l.a.audit(t)
		// The bastion login itself is allowed and works.
		if l.bastion.certLogins(l.user) != 1 {
			t.Errorf("want the bastion's certificate login, got %d", l.bastion.certLogins(l.user))
		}
		if got := events(recs, "cert.used", "route", "bastion"); len(got) != 1 {
			t.Errorf("want one cert.used on route bastion, got %v", got)
		}
		conns := l.forwardedConns(recs)
		if len(conns) == 0 {
			t.Fatalf("no session.bind with forwarding=true and the bastion's host key %s: %v", l.fpBastion, events(recs, "session.bind"))
		}
		if got := events(recs, "cert.issued", "route", "fwd-target"); len(got) != 0 {
			t.Errorf("a certificate was issued on fwd-target through the forwarded agent: %v", got)
		}
		if got := events(recs, "cert.used", "route", "fwd-target"); len(got) != 0 {
			t.Errorf("a certificate signed for the target through the forwarded agent: %v", got)
		}
		// Nothing from warden reached the target: no certificate was even
		// offered there.
		if n := l.target.certLogins(l.user); n != 0 {
			t.Errorf("the target accepted %d certificate logins", n)
		}
		if strings.Contains(l.target.log.String(), "CERT") {
			t.Errorf("a certificate was offered to the target:\n%s", l.target.log)
		}
		var denied []auditRecord
		for _, f := range events(recs, "cert.issue_failed", "route", "fwd-target") {
			if f.str("rule") == "no-forwarded" && strings.Contains(f.str("error"), fwdDenyReason) && fmt.Sprint(f["forwarded"]) == "true" {
				denied = append(denied, f)
			}
		}
		for _, f := range events(recs, "sign.denied") {
			if strings.Contains(f.str("reason"), fwdDenyReason) {
				denied = append(denied, f)
			}
		}
		if len(denied) == 0 {
			t.Fatalf("no cert.issue_failed (rule no-forwarded, forwarded=true) or sign.denied with the reason %q: issue_failed %v, sign.denied %v",
				fwdDenyReason, events(recs, "cert.issue_failed"), events(recs, "sign.denied"))
		}
		for _, d := range denied {
			if d.str("event") == "cert.issue_failed" {
				if !slices.Contains(conns, d.str("conn")) {
					t.Errorf("cert.issue_failed on conn %s, not a forwarded connection %v", d.str("conn"), conns)
				}
				if d.str("host_key") != l.fpTgt || d.str("principal") != l.user {
					t.Errorf("cert.issue_failed %v: want host_key %s and principal %s", d, l.fpTgt, l.user)
				}
				l.checkBindOrder(t, recs, d.str("conn"))
			}
		}
	})
}

// TestE2EManyUpstreamKeys: ten ed25519 keys in a real upstream ssh-agent,
// none of them authorized; with sshd's default MaxAuthTries (6) the login
// succeeds on the first offer because warden lists its certificate first
// (OpenSSH 9.2 keeps the agent's order).
func TestE2EManyUpstreamKeys(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)
	var files, fps []string
	for i := 0; i < 10; i++ {
		f := filepath.Join(e.dir, fmt.Sprintf("many%d", i))
		fps = append(fps, fingerprint(t, keygen(t, f, fmt.Sprintf("upstream-many%d", i))))
		files = append(files, f)
	}
	if r := e.sshAdd(up.socket, nil, files...); r.code != 0 {
		t.Fatalf("ssh-add ten keys to the upstream agent: %s", r)
	}
	if l := e.listed(up.socket); len(l) != 10 {
		t.Fatalf("the upstream agent lists %d keys, want 10: %q", len(l), l)
	}
	e.writeConfig(fmt.Sprintf("routes:\n  - name: many\n    hosts: [\"127.0.0.1\"]\n    principals: [%q]\n    ttl: 5m\n", user))
	a := startAgent(t, e, []string{"SSH_AUTH_SOCK=" + up.socket})
	s := startSSHD(t, a.ca) // no authorized keys: only the certificate can log in
	if strings.Contains(s.log.String(), "MaxAuthTries") {
		t.Fatalf("the test sshd sets MaxAuthTries; this test needs the default")
	}
	cfg := e.sshConfig(s, a.socket)

	e.mustLogin(cfg, nil, user, "target")

	log := s.log.String()
	if n := s.certLogins(user); n != 1 {
		t.Errorf("want one certificate login at sshd, got %d", n)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Failed publickey") || strings.Contains(line, "Too many authentication failures") {
			t.Errorf("sshd saw a refused key before the certificate: %s", line)
		}
		for _, fp := range fps {
			if strings.Contains(line, fp) {
				t.Errorf("sshd saw an upstream key %s offered: %s", fp, line)
			}
		}
	}
	recs := a.audit(t)
	if n := len(events(recs, "cert.used", "user", user, "route", "many")); n != 1 {
		t.Errorf("want one cert.used on route many, got %d", n)
	}
	if got := events(recs, "upstream.used"); len(got) != 0 {
		t.Errorf("an upstream key signed: %v", got)
	}

	// ssh-add (no bind) sees the ten upstream keys as they are.
	l := e.listed(a.socket)
	if len(l) != 10 {
		t.Fatalf("ssh-add -l through warden: want the 10 upstream keys, got %d: %q", len(l), l)
	}
	for _, fp := range fps {
		if !containsFP(l, fp) {
			t.Errorf("ssh-add -l through warden does not list upstream key %s: %q", fp, l)
		}
	}
}
