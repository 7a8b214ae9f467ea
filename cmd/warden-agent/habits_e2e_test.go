package main

// End-to-end tests of issue 8's everyday habits with real programs: ssh
// -J through a bastion (two sshd's, each hop its own hint, route and
// certificate), a ControlMaster/ControlPersist master that later logins
// ride on without any agent traffic, and git, scp, sftp and rsync over ssh
// through the generated ssh_config. Each test (and each program's
// subtest) skips, saying why, when a program it needs is missing.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certLogins counts sshd's "Accepted publickey" lines for user with a
// certificate.
func (s *sshdProc) certLogins(user string) int {
	n := 0
	for _, l := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(l, "Accepted publickey for "+user+" ") && strings.Contains(l, "ED25519-CERT") {
			n++
		}
	}
	return n
}

// habitsHost is one ssh_config alias for a sshdProc.
type habitsHost struct {
	alias string
	s     *sshdProc
}

// habitsSSHConfig writes an ssh_config with one Host per alias (HostName
// the sshd's listen address, its port, a known_hosts line for its own host
// key), then the block `warden-agent ssh-config` prints for socket.
func habitsSSHConfig(t *testing.T, e *testEnv, socket string, hosts ...habitsHost) string {
	t.Helper()
	kh := filepath.Join(e.dir, "known_hosts")
	var khLines, cfg strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&khLines, "[%s]:%d %s\n", h.s.addr, h.s.port, h.s.hostPub)
		fmt.Fprintf(&cfg, `Host %s
    HostName %s
    Port %d
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 10
    IdentityFile %s/no-such-key
    ControlMaster no
    ControlPath none
`, h.alias, h.s.addr, h.s.port, kh, e.dir)
	}
	writeFile(t, kh, khLines.String())
	cfg.WriteString(e.mustWarden("ssh-config", "--socket", socket))
	path := filepath.Join(e.dir, "ssh_config")
	writeFile(t, path, cfg.String())
	return path
}

// habitsRoutes is an agent.yaml with one route per (name, host), each
// allowing only user.
func habitsRoutes(user string, nameHost ...string) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for i := 0; i+1 < len(nameHost); i += 2 {
		fmt.Fprintf(&b, "  - name: %s\n    hosts: [%q]\n    principals: [%q]\n    ttl: 5m\n", nameHost[i], nameHost[i+1], user)
	}
	return b.String()
}

// habitsCount counts the audit records per event.
func habitsCount(recs []auditRecord) map[string]int {
	m := map[string]int{}
	for _, r := range recs {
		m[r.str("event")]++
	}
	return m
}

func habitsWord(tag string) string { return fmt.Sprintf("%s-%d", tag, time.Now().UnixNano()) }

// TestE2EHabitsProxyJump: `ssh -J bastion target` with two sshd's (their
// own host keys, both trusting warden's CA) on 127.0.0.1 and 127.0.0.2.
// The jump ssh and the target ssh each run their own hint and get a
// certificate for their own route; the audit log shows two issuances and
// two uses, each bound to its hop's host key.
func TestE2EHabitsProxyJump(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	// ssh -J opens a direct-tcpip channel on the bastion (ssh -W), which
	// sshd refuses unless the certificate carries permit-port-forwarding;
	// the default extensions are permit-pty only.
	e.writeConfig(habitsJumpRoutes(user, true))
	a := startAgent(t, e, nil, "--upstream", "none")
	bastion := startSSHDOn(t, "127.0.0.1", a.ca)
	target := startSSHDOn(t, "127.0.0.2", a.ca)
	fpBastion, fpTarget := fingerprint(t, bastion.hostPub), fingerprint(t, target.hostPub)
	if fpBastion == fpTarget {
		t.Fatal("the two sshd's share a host key")
	}
	cfg := habitsSSHConfig(t, e, a.socket, habitsHost{"bastion", bastion}, habitsHost{"target", target})

	word := habitsWord("jump")
	r := e.run(nil, "ssh", "-F", cfg, "-J", user+"@bastion", user+"@target", "echo", word)
	if r.code != 0 || strings.TrimSpace(r.stdout) != word {
		t.Fatalf("ssh -J %s@bastion %s@target echo %s: want %q and exit 0, got %s", user, user, word, word, r)
	}

	recs := a.audit(t)
	if n := len(events(recs, "hint")); n != 2 {
		t.Errorf("want two hint records (one per hop), got %d: %v", n, events(recs, "hint"))
	}
	for _, h := range []string{"127.0.0.1", "127.0.0.2"} {
		if n := len(events(recs, "hint", "user", user, "host", h)); n != 1 {
			t.Errorf("want one hint for %s@%s, got %d", user, h, n)
		}
	}
	if n := len(events(recs, "cert.issued")); n != 2 {
		t.Errorf("want two cert.issued, got %d: %v", n, events(recs, "cert.issued"))
	}
	if n := len(events(recs, "cert.used")); n != 2 {
		t.Errorf("want two cert.used, got %d: %v", n, events(recs, "cert.used"))
	}
	for _, hop := range []struct{ route, hostKey, name string }{
		{"jump-bastion", fpBastion, "bastion"},
		{"jump-target", fpTarget, "target"},
	} {
		issued := events(recs, "cert.issued", "route", hop.route)
		if len(issued) != 1 {
			t.Errorf("%s: want one cert.issued on route %s, got %v", hop.name, hop.route, issued)
			continue
		}
		if p := issued[0].str("principal"); p != user {
			t.Errorf("%s: cert.issued principal %q, want %q", hop.name, p, user)
		}
		used := events(recs, "cert.used", "route", hop.route)
		if len(used) != 1 {
			t.Errorf("%s: want one cert.used on route %s, got %v", hop.name, hop.route, used)
			continue
		}
		u := used[0]
		if u.str("serial") != issued[0].str("serial") {
			t.Errorf("%s: cert.used serial %s, issued %s", hop.name, u.str("serial"), issued[0].str("serial"))
		}
		if u.str("host_key") != hop.hostKey {
			t.Errorf("%s: cert.used host_key %q, want the %s's %s", hop.name, u.str("host_key"), hop.name, hop.hostKey)
		}
		if u.str("user") != user {
			t.Errorf("%s: cert.used user %q, want %q", hop.name, u.str("user"), user)
		}
		binds := events(recs, "session.bind", "conn", u.str("conn"))
		if len(binds) != 1 || binds[0].str("host_key") != hop.hostKey || fmt.Sprint(binds[0]["verified"]) != "true" {
			t.Errorf("%s: want one verified session.bind with host_key %s on conn %s, got %v", hop.name, hop.hostKey, u.str("conn"), binds)
		}
	}
	if used := events(recs, "cert.used"); len(used) == 2 && used[0].str("conn") == used[1].str("conn") {
		t.Errorf("both hops signed on one agent connection %s; want one connection per ssh process", used[0].str("conn"))
	}
	if bastion.certLogins(user) != 1 || target.certLogins(user) != 1 {
		t.Errorf("want one certificate login on each sshd, got bastion %d, target %d", bastion.certLogins(user), target.certLogins(user))
	}
}

// habitsJumpRoutes is the agent.yaml of the ProxyJump tests: route
// jump-bastion for 127.0.0.1 (with permit-port-forwarding when forwarding
// is set) and jump-target for 127.0.0.2, both allowing only user.
func habitsJumpRoutes(user string, forwarding bool) string {
	ext := ""
	if forwarding {
		ext = "    extensions:\n      permit-pty: \"\"\n      permit-port-forwarding: \"\"\n"
	}
	return fmt.Sprintf(`routes:
  - name: jump-bastion
    hosts: ["127.0.0.1"]
    principals: [%[1]q]
    ttl: 5m
%[2]s  - name: jump-target
    hosts: ["127.0.0.2"]
    principals: [%[1]q]
    ttl: 5m
`, user, ext)
}

// TestE2EHabitsProxyJumpNeedsPortForwarding: with the default extensions
// (permit-pty only) the bastion's certificate logs in, but its sshd
// refuses the jump's forwarding channel; the target is never reached and
// nothing is issued for it.
func TestE2EHabitsProxyJumpNeedsPortForwarding(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	e.writeConfig(habitsJumpRoutes(user, false))
	a := startAgent(t, e, nil, "--upstream", "none")
	bastion := startSSHDOn(t, "127.0.0.1", a.ca)
	target := startSSHDOn(t, "127.0.0.2", a.ca)
	cfg := habitsSSHConfig(t, e, a.socket, habitsHost{"bastion", bastion}, habitsHost{"target", target})

	r := e.run(nil, "ssh", "-F", cfg, "-J", user+"@bastion", user+"@target", "echo", "unreachable")
	if r.code == 0 || strings.Contains(r.stdout, "unreachable") {
		t.Fatalf("ssh -J with a bastion certificate lacking permit-port-forwarding succeeded: %s", r)
	}
	if !strings.Contains(r.stderr, "administratively prohibited") {
		t.Errorf("want the bastion's refusal (administratively prohibited) on stderr: %s", r)
	}
	if !strings.Contains(bastion.log.String(), "refused local port forward") {
		t.Errorf("the bastion's sshd did not log the refused forward")
	}
	if bastion.certLogins(user) != 1 || target.certLogins(user) != 0 {
		t.Errorf("want the bastion login only, got bastion %d, target %d", bastion.certLogins(user), target.certLogins(user))
	}
	recs := a.audit(t)
	if n := len(events(recs, "cert.used", "route", "jump-bastion")); n != 1 {
		t.Errorf("want one cert.used on jump-bastion, got %d", n)
	}
	if n := len(events(recs, "cert.used", "route", "jump-target")); n != 0 {
		t.Errorf("a certificate was used for the unreachable target: %v", events(recs, "cert.used", "route", "jump-target"))
	}
}

// TestE2EHabitsControlMaster: the first login opens a ControlPersist
// master; a second ssh over it adds no session.bind, cert.used or
// cert.issued (and no login at sshd); after `ssh -O exit` the next login
// reuses the cached certificate: still one cert.issued, one more cert.used.
func TestE2EHabitsControlMaster(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	e.writeConfig(habitsRoutes(user, "mux", "127.0.0.1"))
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHDOn(t, "127.0.0.1", a.ca)
	cfg := habitsSSHConfig(t, e, a.socket, habitsHost{"target", s})

	cmDir := filepath.Join(e.dir, "cm")
	if err := os.Mkdir(cmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	controlPath := filepath.Join(cmDir, "%C")
	mux := []string{"-o", "ControlMaster=auto", "-o", "ControlPath=" + controlPath, "-o", "ControlPersist=30"}
	masterGone := func() bool {
		m, _ := filepath.Glob(filepath.Join(cmDir, "*"))
		return len(m) == 0
	}
	// Runs before sshd is stopped (cleanups run last first): a master
	// left by a failed test must not outlive it.
	t.Cleanup(func() {
		if masterGone() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "ControlPath="+controlPath, "-O", "exit", user+"@target")
		cmd.Env = e.environ()
		cmd.Run()
	})
	login := func(extra ...string) {
		t.Helper()
		word := habitsWord("mux")
		args := append([]string{"-F", cfg}, extra...)
		r := e.run(nil, "ssh", append(args, user+"@target", "echo", word)...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != word {
			t.Fatalf("ssh %s %s@target echo %s: want %q and exit 0, got %s", strings.Join(extra, " "), user, word, word, r)
		}
	}

	login(mux...)
	if r := e.run(nil, "ssh", "-F", cfg, "-o", "ControlPath="+controlPath, "-O", "check", user+"@target"); r.code != 0 {
		t.Fatalf("ssh -O check after the first login: no master running: %s", r)
	}
	before := habitsCount(a.audit(t))
	if before["cert.issued"] != 1 || before["cert.used"] != 1 || before["session.bind"] != 1 {
		t.Fatalf("first login: want one cert.issued, cert.used and session.bind, got %v", before)
	}
	loginsBefore := s.certLogins(user)

	login(mux...)
	after := habitsCount(a.audit(t))
	for _, ev := range []string{"cert.issued", "cert.used", "session.bind", "sign.denied", "upstream.used"} {
		if after[ev] != before[ev] {
			t.Errorf("a login over the open master changed %s from %d to %d: it reached the agent", ev, before[ev], after[ev])
		}
	}
	if n := s.certLogins(user); n != loginsBefore {
		t.Errorf("sshd saw %d certificate logins after the second ssh, %d before: it did not ride the master", n, loginsBefore)
	}
	t.Logf("hint records: %d before the multiplexed login, %d after", before["hint"], after["hint"])

	if r := e.run(nil, "ssh", "-F", cfg, "-o", "ControlPath="+controlPath, "-O", "exit", user+"@target"); r.code != 0 {
		t.Fatalf("ssh -O exit: %s", r)
	}
	if !waitFor(5*time.Second, masterGone) {
		t.Fatalf("the master's control socket is still in %s 5 s after ssh -O exit", cmDir)
	}

	login() // the config's ControlMaster no: a login of its own
	last := habitsCount(a.audit(t))
	if last["cert.issued"] != 1 {
		t.Errorf("the login after the master exited issued again: %d cert.issued, want 1 (the cached certificate is fresh)", last["cert.issued"])
	}
	if last["cert.used"] != after["cert.used"]+1 {
		t.Errorf("the login after the master exited: cert.used %d, want %d", last["cert.used"], after["cert.used"]+1)
	}
	recs := a.audit(t)
	if used, issued := events(recs, "cert.used"), events(recs, "cert.issued"); len(used) == 2 && len(issued) == 1 {
		for _, u := range used {
			if u.str("serial") != issued[0].str("serial") {
				t.Errorf("cert.used serial %s, the one issued is %s", u.str("serial"), issued[0].str("serial"))
			}
		}
	}
	if n := s.certLogins(user); n != loginsBefore+1 {
		t.Errorf("sshd: %d certificate logins, want %d", n, loginsBefore+1)
	}
}

// TestE2EHabitsControlCommandIssuesNothing: `ssh -O check|exit` talks to
// a master over its control socket and never logs in, but ssh evaluates
// Match exec for it, so the hint runs. Like `ssh -G` (isNoLogin in
// agentproxy/peer.go), a hint whose ssh argv carries -O must not mint a
// certificate.
func TestE2EHabitsControlCommandIssuesNothing(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	e.writeConfig(habitsRoutes(user, "mux", "127.0.0.1"))
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHDOn(t, "127.0.0.1", a.ca)
	cfg := habitsSSHConfig(t, e, a.socket, habitsHost{"target", s})
	controlPath := filepath.Join(e.dir, "cm-%C")
	for _, op := range []string{"check", "exit"} {
		// No master is running: the command fails without a login.
		if r := e.run(nil, "ssh", "-F", cfg, "-o", "ControlPath="+controlPath, "-O", op, user+"@target"); r.code == 0 {
			t.Fatalf("ssh -O %s with no master: want a failure, got %s", op, r)
		}
	}
	recs := a.auditOnce(t, func(recs []auditRecord) bool { return len(events(recs, "hint")) >= 2 })
	if n := len(events(recs, "hint")); n != 2 {
		t.Errorf("want a hint record per control command (ssh runs Match exec), got %d", n)
	}
	if got := events(recs, "cert.issued"); len(got) != 0 {
		t.Errorf("ssh -O check/exit (no login) minted %d certificate(s); want none, as for ssh -G: %v", len(got), got)
	}
	if n := s.certLogins(user); n != 0 {
		t.Errorf("sshd saw %d logins from control commands", n)
	}
}

// TestE2EHabitsFileTools: git clone and push over ssh to a bare
// repository (GIT_SSH_COMMAND with the generated config), then scp, sftp
// and rsync -e ssh copy a file each way. Every step logs in with warden's
// certificate (cert.used grows, sshd accepts a certificate) and only one
// certificate is ever issued.
func TestE2EHabitsFileTools(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	e.writeConfig(habitsRoutes(user, "files", "127.0.0.1"))
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHDOn(t, "127.0.0.1", a.ca)
	cfg := habitsSSHConfig(t, e, a.socket, habitsHost{"target", s})
	sshCmd := "ssh -F " + cfg
	if strings.ContainsAny(cfg, " '\"\\$") {
		t.Skipf("config path %q needs quoting in a command line", cfg)
	}
	remote := filepath.Join(e.dir, "remote") // the server's side of the copies
	local := filepath.Join(e.dir, "local")
	for _, d := range []string{remote, local} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// step runs fn and checks that it logged in with a warden
	// certificate: one more cert.used at least, and sshd accepted it.
	step := func(t *testing.T, fn func()) {
		t.Helper()
		used, logins := len(events(a.audit(t), "cert.used", "route", "files", "user", user)), s.certLogins(user)
		fn()
		if t.Failed() {
			return
		}
		if n := len(events(a.audit(t), "cert.used", "route", "files", "user", user)); n <= used {
			t.Errorf("cert.used on route files stayed at %d: warden's certificate was not used", n)
		}
		if n := s.certLogins(user); n <= logins {
			t.Errorf("sshd certificate logins stayed at %d", n)
		}
	}
	mustRead := func(t *testing.T, path, want string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v", err)
		} else if string(got) != want {
			t.Errorf("%s holds %q, want %q", path, got, want)
		}
	}
	must := func(t *testing.T, env []string, name string, args ...string) result {
		t.Helper()
		r := e.run(env, name, args...)
		if r.code != 0 {
			t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
		}
		return r
	}

	t.Run("git", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skipf("git is not installed: %v", err)
		}
		gitEnv := []string{
			"GIT_SSH_COMMAND=" + sshCmd, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=Habits Test", "GIT_AUTHOR_EMAIL=habits@example.com",
			"GIT_COMMITTER_NAME=Habits Test", "GIT_COMMITTER_EMAIL=habits@example.com",
		}
		bare := filepath.Join(remote, "repo.git")
		seed := filepath.Join(e.dir, "seed")
		work := filepath.Join(local, "work")
		must(t, gitEnv, "git", "init", "-q", "--bare", "--initial-branch=main", bare)
		must(t, gitEnv, "git", "init", "-q", "--initial-branch=main", seed)
		writeFile(t, filepath.Join(seed, "README"), "seeded locally\n")
		must(t, gitEnv, "git", "-C", seed, "add", "README")
		must(t, gitEnv, "git", "-C", seed, "commit", "-q", "-m", "seed")
		must(t, gitEnv, "git", "-C", seed, "push", "-q", bare, "main")

		url := "ssh://" + user + "@target" + bare
		step(t, func() { must(t, gitEnv, "git", "clone", "-q", url, work) })
		mustRead(t, filepath.Join(work, "README"), "seeded locally\n")

		msg := habitsWord("pushed over ssh")
		writeFile(t, filepath.Join(work, "pushed.txt"), msg+"\n")
		must(t, gitEnv, "git", "-C", work, "add", "pushed.txt")
		must(t, gitEnv, "git", "-C", work, "commit", "-q", "-m", msg)
		step(t, func() { must(t, gitEnv, "git", "-C", work, "push", "-q", "origin", "HEAD:main") })
		if r := must(t, gitEnv, "git", "-C", bare, "log", "--format=%s", "main"); !strings.Contains(r.stdout, msg) {
			t.Errorf("the bare repository's main lacks the pushed commit %q:\n%s", msg, r.stdout)
		}
		if r := must(t, gitEnv, "git", "-C", bare, "show", "main:pushed.txt"); r.stdout != msg+"\n" {
			t.Errorf("pushed.txt in the bare repository: %q, want %q", r.stdout, msg+"\n")
		}
		local := strings.TrimSpace(must(t, gitEnv, "git", "-C", work, "rev-parse", "HEAD").stdout)
		if got := strings.TrimSpace(must(t, gitEnv, "git", "-C", bare, "rev-parse", "main").stdout); got != local {
			t.Errorf("bare main is %s, the pushed HEAD %s", got, local)
		}
	})

	// copyEachWay checks one tool: up copies local/<tool>-up.txt to
	// remote/<tool>-up.txt, down copies remote/<tool>-down.txt to
	// local/<tool>-down.txt.
	copyEachWay := func(t *testing.T, tool string, up, down func(t *testing.T, src, dst string)) {
		upSrc, upDst := filepath.Join(local, tool+"-up.txt"), filepath.Join(remote, tool+"-up.txt")
		downSrc, downDst := filepath.Join(remote, tool+"-down.txt"), filepath.Join(local, tool+"-down.txt")
		upText, downText := habitsWord(tool+" up")+"\n", habitsWord(tool+" down")+"\n"
		writeFile(t, upSrc, upText)
		writeFile(t, downSrc, downText)
		t.Run("up", func(t *testing.T) {
			step(t, func() { up(t, upSrc, upDst) })
			mustRead(t, upDst, upText)
		})
		t.Run("down", func(t *testing.T) {
			step(t, func() { down(t, downSrc, downDst) })
			mustRead(t, downDst, downText)
		})
	}
	at := func(path string) string { return user + "@target:" + path }

	t.Run("scp", func(t *testing.T) {
		if _, err := exec.LookPath("scp"); err != nil {
			t.Skipf("scp is not installed: %v", err)
		}
		copyEachWay(t, "scp",
			func(t *testing.T, src, dst string) { must(t, nil, "scp", "-F", cfg, "-q", src, at(dst)) },
			func(t *testing.T, src, dst string) { must(t, nil, "scp", "-F", cfg, "-q", at(src), dst) })
	})

	t.Run("sftp", func(t *testing.T) {
		if _, err := exec.LookPath("sftp"); err != nil {
			t.Skipf("sftp is not installed: %v", err)
		}
		batch := func(name, line string) string {
			p := filepath.Join(e.dir, name)
			writeFile(t, p, line+"\n")
			return p
		}
		copyEachWay(t, "sftp",
			func(t *testing.T, src, dst string) {
				must(t, nil, "sftp", "-F", cfg, "-b", batch("sftp-put", fmt.Sprintf("put %q %q", src, dst)), user+"@target")
			},
			func(t *testing.T, src, dst string) {
				must(t, nil, "sftp", "-F", cfg, "-b", batch("sftp-get", fmt.Sprintf("get %q %q", src, dst)), user+"@target")
			})
	})

	t.Run("rsync", func(t *testing.T) {
		if _, err := exec.LookPath("rsync"); err != nil {
			t.Skipf("rsync is not installed (apt-get install rsync): %v", err)
		}
		copyEachWay(t, "rsync",
			func(t *testing.T, src, dst string) { must(t, nil, "rsync", "-e", sshCmd, src, at(dst)) },
			func(t *testing.T, src, dst string) { must(t, nil, "rsync", "-e", sshCmd, at(src), dst) })
	})

	if n := len(events(a.audit(t), "cert.issued")); n != 1 {
		t.Errorf("want one cert.issued for all the file tools' logins (the certificate is fresh), got %d", n)
	}
	if n := len(events(a.audit(t), "sign.denied")); n != 0 {
		t.Errorf("%d sign.denied records: %v", n, events(a.audit(t), "sign.denied"))
	}
}
