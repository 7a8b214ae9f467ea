package main

// End-to-end tests of the catalog and the policy (issue 5, "Must show"):
// real ssh, with the block `warden-agent ssh-config` prints, logs into a
// real sshd through the agent, and the policy file decides — allow, deny
// with its reason on the terminal and in the audit log, confirm through a
// test askpass program — and follows a rename-on-save within a second,
// keeping the last good version when a broken one is written. Then the
// CLI: `route` for an SSH target and for lanes, `catalog lint` and
// `catalog promote-check`.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// labHosts are the three targets of the policy lab: distinct host names
// (ssh's %h, which the hint passes to the agent) that all reach the one
// test sshd. 127.0.0.2 and 127.0.0.3 are loopback addresses too; a relay
// on each forwards to the sshd on 127.0.0.1.
var labHosts = []struct{ alias, addr, route string }{
	{"one", "127.0.0.1", "lab-one"},
	{"two", "127.0.0.2", "lab-two"},
	{"three", "127.0.0.3", "lab-three"},
}

// labCatalog has one route per lab host, each allowing only user, and
// two lanes: a concrete one and a draft one whose playbook exists but
// which has no evidence and whose exec program is not installed.
func labCatalog(user string) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for _, h := range labHosts {
		fmt.Fprintf(&b, "  - name: %s\n    hosts: [%q]\n    principals: [%q]\n    ttl: 5m\n    maturity: concrete\n", h.route, h.addr, user)
	}
	b.WriteString(`lanes:
  - need: db-password
    owner: secrets-engine
    id: prod-db-readonly
    exec: "credential exec {id} -- {command}"
    playbook: https://runbooks.example.com/db-password
    maturity: concrete
    evidence: https://ci.example.com/smoke/db-password
  - need: openbao-token/warden-sign
    owner: credential-broker
    id: ops-warden-warden-sign-token
    exec: "warden-test-no-such-broker exec {id} -- {command}"
    playbook: playbooks/warden-sign.md
    maturity: draft
`)
	return b.String()
}

const (
	denyReason = "host two is closed for maintenance"
	// labPolicyFmt: allow one (ttl capped), deny two with a reason,
	// confirm three; %[1]q is the login user.
	labPolicyFmt = `rules:
  - name: deny-two
    hosts: ["127.0.0.2"]
    effect: deny
    reason: ` + denyReason + `

  - name: confirm-three
    routes: [lab-three]
    principals: [%[1]q]
    effect: confirm

  - name: allow-one
    hosts: ["127.0.0.1"]
    principals: [%[1]q]
    effect: allow
    max_ttl: 2m
`
)

// policyLab is one agent with a catalog and a policy file in a team
// directory, a real sshd trusting its CA, and an ssh_config for the three
// lab hosts.
type policyLab struct {
	e       *testEnv
	a       *agentProc
	s       *sshdProc
	cfg     string // ssh_config
	team    string // the directory holding catalog.yaml and policy.yaml
	catalog string
	policy  string
	user    string
}

// newPolicyLab starts the lab with policy as the policy file; agentEnv is
// the agent's extra environment (SSH_ASKPASS).
func newPolicyLab(t *testing.T, policy string, agentEnv []string) *policyLab {
	t.Helper()
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	l := &policyLab{user: loginUser(t), e: newTestEnv(t)}
	l.team = filepath.Join(l.e.dir, "team")
	if err := os.MkdirAll(filepath.Join(l.team, "playbooks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.team, "playbooks", "warden-sign.md"), []byte("# warden-sign token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.catalog = filepath.Join(l.team, "catalog.yaml")
	l.policy = filepath.Join(l.team, "policy.yaml")
	writeFile(t, l.catalog, labCatalog(l.user))
	writeFile(t, l.policy, policy)
	l.e.writeConfig(fmt.Sprintf("catalog:\n  path: %s\npolicy:\n  path: %s\n", l.catalog, l.policy))
	l.a = startAgent(t, l.e, agentEnv, "--upstream", "none")
	l.s = startSSHD(t, l.a.ca)
	l.cfg = l.sshConfig(t)
	return l
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// saveByRename replaces path the way editors save: a new file in the same
// directory renamed over the old one.
func saveByRename(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// relay forwards TCP connections accepted on addr:0 to target until the
// test ends, and returns the port it listens on.
func relay(t *testing.T, addr, target string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s (loopback addresses other than 127.0.0.1 are needed): %v", addr, err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// sshConfig writes the lab's ssh_config: one Host per lab host with its
// HostName, port and known_hosts line, then the block `warden-agent
// ssh-config` prints.
func (l *policyLab) sshConfig(t *testing.T) string {
	t.Helper()
	sshdAddr := fmt.Sprintf("127.0.0.1:%d", l.s.port)
	kh := filepath.Join(l.e.dir, "known_hosts")
	var khLines, cfg strings.Builder
	for _, h := range labHosts {
		port := l.s.port
		if h.addr != "127.0.0.1" {
			port = relay(t, h.addr, sshdAddr)
		}
		fmt.Fprintf(&khLines, "[%s]:%d %s\n", h.addr, port, l.s.hostPub)
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
`, h.alias, h.addr, port, kh, l.e.dir)
	}
	writeFile(t, kh, khLines.String())
	cfg.WriteString(l.e.mustWarden("ssh-config", "--socket", l.a.socket))
	path := filepath.Join(l.e.dir, "ssh_config")
	writeFile(t, path, cfg.String())
	return path
}

// login runs ssh user@alias echo WORD; SSH_AUTH_SOCK points at warden too,
// so a refusal is shown to hold even where ssh falls back to the default
// agent when the hint fails.
func (l *policyLab) login(alias string) (result, string) {
	l.e.t.Helper()
	word := fmt.Sprintf("hello-%d", time.Now().UnixNano())
	return l.e.sshLogin(l.cfg, []string{"SSH_AUTH_SOCK=" + l.a.socket}, l.user, alias, word), word
}

func (l *policyLab) mustLogin(alias string) {
	l.e.t.Helper()
	r, word := l.login(alias)
	if r.code != 0 || strings.TrimSpace(r.stdout) != word {
		l.e.t.Fatalf("ssh %s@%s echo %s: want %q on stdout and exit 0, got %s", l.user, alias, word, word, r)
	}
}

func (l *policyLab) mustFailLogin(alias string) result {
	l.e.t.Helper()
	r, word := l.login(alias)
	if r.code == 0 || strings.Contains(r.stdout, word) {
		l.e.t.Fatalf("ssh %s@%s succeeded; want it refused: %s", l.user, alias, r)
	}
	return r
}

// askpassScript writes a test SSH_ASKPASS program that appends
// "$SSH_ASKPASS_PROMPT|$1" to log and exits with code.
func askpassScript(t *testing.T, dir, name string, code int) (script, log string) {
	t.Helper()
	script = filepath.Join(dir, name)
	log = script + ".log"
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\nprintf '%%s|%%s\\n---\\n' \"$SSH_ASKPASS_PROMPT\" \"$1\" >> %q\nexit %d\n", log, code))
	if err := os.Chmod(script, 0o700); err != nil {
		t.Fatal(err)
	}
	return script, log
}

// askpassCalls returns the prompts the askpass program was run with.
func askpassCalls(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, c := range strings.Split(string(data), "\n---\n") {
		if strings.TrimSpace(c) != "" {
			calls = append(calls, c)
		}
	}
	return calls
}

// TestE2EPolicyAllowDenyConfirm: the policy file decides real logins. One
// host is allowed (its max_ttl caps the certificate), one is denied — the
// rule's reason reaches ssh's stderr through the hint and the audit log as
// cert.issue_failed, and nothing is issued or offered — and one needs a
// confirmation: an askpass answering yes lets the login through, one
// answering no refuses it.
func TestE2EPolicyAllowDenyConfirm(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "sh")
	sshdPath(t)
	user := loginUser(t)
	askDir := shortTempDir(t)
	yes, yesLog := askpassScript(t, askDir, "askpass-yes", 0)
	no, noLog := askpassScript(t, askDir, "askpass-no", 1)
	policy := fmt.Sprintf(labPolicyFmt, user)

	l := newPolicyLab(t, policy, []string{"SSH_ASKPASS=" + yes})

	t.Run("allow", func(t *testing.T) {
		l.mustLogin("one")
		recs := l.a.audit(t)
		issued := events(recs, "cert.issued", "route", "lab-one")
		if len(issued) != 1 {
			t.Fatalf("want one cert.issued on lab-one, got %v", events(recs, "cert.issued"))
		}
		if p := issued[0].str("principal"); p != user {
			t.Errorf("cert.issued principal %q, want %q", p, user)
		}
		// Every allow says why: the deciding rule is in the record.
		if r := issued[0].str("rule"); r != "allow-one" {
			t.Errorf("cert.issued rule %q, want allow-one", r)
		}
		// The route says 5m; rule allow-one caps it at 2m.
		if ttl := issued[0].str("ttl"); ttl != "2m0s" {
			t.Errorf("cert.issued ttl %q, want 2m0s (allow-one's max_ttl below the route's 5m)", ttl)
		}
		if used := events(recs, "cert.used", "serial", issued[0].str("serial"), "user", user); len(used) != 1 {
			t.Errorf("want one cert.used with serial %s, got %v", issued[0].str("serial"), events(recs, "cert.used"))
		}
		if n := len(askpassCalls(t, yesLog)); n != 0 {
			t.Errorf("an allow rule asked for confirmation (%d askpass runs)", n)
		}
	})

	t.Run("deny", func(t *testing.T) {
		r := l.mustFailLogin("two")
		if !strings.Contains(r.stderr, denyReason) || !strings.Contains(r.stderr, "deny-two") {
			t.Errorf("ssh's stderr does not carry the rule and reason from the hint (want %q and %q): %s", "deny-two", denyReason, r)
		}
		if !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("want sshd's refusal on ssh's stderr: %s", r)
		}
		recs := l.a.audit(t)
		failed := events(recs, "cert.issue_failed", "route", "lab-two")
		if len(failed) == 0 {
			t.Fatalf("no cert.issue_failed for lab-two; issue records: %v", events(recs, "cert.issue_failed"))
		}
		for _, f := range failed {
			if f.str("rule") != "deny-two" || !strings.Contains(f.str("error"), denyReason) {
				t.Errorf("cert.issue_failed: rule %q error %q, want rule deny-two and the reason %q", f.str("rule"), f.str("error"), denyReason)
			}
			if f.str("host") != "127.0.0.2" || f.str("principal") != user {
				t.Errorf("cert.issue_failed names %s@%s, want %s@127.0.0.2", f.str("principal"), f.str("host"), user)
			}
		}
		if got := events(recs, "cert.issued", "route", "lab-two"); len(got) != 0 {
			t.Errorf("a certificate was issued on the denied route: %v", got)
		}
		if got := events(recs, "cert.used", "route", "lab-two"); len(got) != 0 {
			t.Errorf("a certificate signed on the denied route: %v", got)
		}
		// The certificate of lab-one (the same principal, the same sshd)
		// must not have been offered either: one cert.used in all.
		if n := len(events(recs, "cert.used")); n != 1 {
			t.Errorf("want only the allowed login's cert.used, got %d", n)
		}
	})

	t.Run("confirm yes", func(t *testing.T) {
		l.mustLogin("three")
		calls := askpassCalls(t, yesLog)
		if len(calls) == 0 {
			t.Fatalf("the confirm rule did not run SSH_ASKPASS")
		}
		for _, c := range calls {
			prompt, question, _ := strings.Cut(c, "|")
			if prompt != "confirm" {
				t.Errorf("askpass ran with SSH_ASKPASS_PROMPT=%q, want confirm", prompt)
			}
			if !strings.Contains(question, user+"@127.0.0.3") || !strings.Contains(question, "lab-three") || !strings.Contains(question, "ssh") {
				t.Errorf("askpass question %q does not name %s@127.0.0.3, route lab-three and the ssh caller", question, user)
			}
		}
		// One login, one question: a person asked twice for one login
		// learns to click yes without reading.
		if len(calls) != 1 {
			t.Errorf("one login ran SSH_ASKPASS %d times, want once:\n%s", len(calls), strings.Join(calls, "\n---\n"))
		}
		recs := l.a.audit(t)
		issued := events(recs, "cert.issued", "route", "lab-three")
		if len(issued) != 1 {
			t.Fatalf("want one cert.issued on lab-three, got %v", events(recs, "cert.issued"))
		}
		if len(events(recs, "cert.used", "serial", issued[0].str("serial"))) != 1 {
			t.Errorf("no cert.used for the confirmed certificate %s", issued[0].str("serial"))
		}
		if issued[0].str("rule") != "confirm-three" || fmt.Sprint(issued[0]["confirmed"]) != "true" {
			t.Errorf("cert.issued %v: want rule confirm-three and confirmed true", issued[0])
		}
	})

	t.Run("confirm no", func(t *testing.T) {
		// SSH_ASKPASS is read when the agent starts: another agent.
		ln := newPolicyLab(t, policy, []string{"SSH_ASKPASS=" + no})
		r := ln.mustFailLogin("three")
		if len(askpassCalls(t, noLog)) == 0 {
			t.Fatalf("the confirm rule did not run SSH_ASKPASS")
		}
		if !strings.Contains(r.stderr, "confirm-three") || !strings.Contains(r.stderr, "refused") {
			t.Errorf("ssh's stderr does not say that confirm-three was refused: %s", r)
		}
		recs := ln.a.audit(t)
		failed := events(recs, "cert.issue_failed", "route", "lab-three")
		if len(failed) == 0 || failed[0].str("rule") != "confirm-three" {
			t.Errorf("want cert.issue_failed by rule confirm-three, got %v", events(recs, "cert.issue_failed"))
		}
		if n := len(events(recs, "cert.issued")); n != 0 {
			t.Errorf("%d certificates issued although the person said no", n)
		}
		if n := len(events(recs, "cert.used")); n != 0 {
			t.Errorf("%d signatures made although the person said no", n)
		}
	})
}

// waitForEvent polls the audit log (bounded) until more than have records
// of event exist; it returns the new records and how long that took, or
// reports the missing record and returns nil.
func waitForEvent(t *testing.T, a *agentProc, event string, have int, since time.Time, bound time.Duration) ([]auditRecord, time.Duration) {
	t.Helper()
	var got []auditRecord
	ok := waitFor(bound, func() bool {
		got = events(a.audit(t), event)
		return len(got) > have
	})
	delay := time.Since(since)
	if !ok {
		t.Errorf("no new %s record in the audit log within %v of the change", event, bound)
		return nil, delay
	}
	return got[have:], delay
}

// TestE2EPolicyHotReload: a policy saved by rename decides the next login
// within a second (deny → allow); a broken version is refused with
// policy.reload_failed naming the file and line, and the allowing policy
// stays in force; a later deny drops the certificate it no longer allows.
func TestE2EPolicyHotReload(t *testing.T) {
	user := loginUser(t)
	deny := "rules:\n  - name: freeze\n    effect: deny\n    reason: change freeze\n"
	allow := fmt.Sprintf("rules:\n  - name: team\n    principals: [%q]\n    effect: allow\n", user)
	l := newPolicyLab(t, deny, nil)

	r := l.mustFailLogin("one")
	if !strings.Contains(r.stderr, "change freeze") {
		t.Errorf("ssh's stderr does not carry the freeze reason: %s", r)
	}
	if got := events(l.a.audit(t), "cert.issue_failed", "rule", "freeze"); len(got) == 0 {
		t.Fatalf("no cert.issue_failed by rule freeze")
	}

	// deny → allow, saved by rename.
	start := time.Now()
	saveByRename(t, l.policy, allow)
	rel, delay := waitForEvent(t, l.a, "policy.reloaded", 0, start, 2*time.Second)
	if rel != nil {
		t.Logf("policy.reloaded %v after the rename", delay)
		if delay > time.Second {
			t.Errorf("the new policy took %v to load; the issue promises within a second", delay)
		}
		if p := rel[0].str("path"); p != l.policy {
			t.Errorf("policy.reloaded path %q, want %q", p, l.policy)
		}
	}
	l.mustLogin("one")
	recs := l.a.audit(t)
	issued := events(recs, "cert.issued", "route", "lab-one")
	if len(issued) != 1 {
		t.Fatalf("after the reload: want one cert.issued, got %v", events(recs, "cert.issued"))
	}

	// A broken version: an unknown field on line 3.
	broken := fmt.Sprintf("rules:\n  - name: team\n    principles: [%q]\n    effect: allow\n", user)
	start = time.Now()
	saveByRename(t, l.policy, broken)
	failed, delay := waitForEvent(t, l.a, "policy.reload_failed", 0, start, 2*time.Second)
	if failed != nil {
		t.Logf("policy.reload_failed %v after the rename: %s", delay, failed[0].str("error"))
		if msg := failed[0].str("error"); !strings.Contains(msg, "policy.yaml:3:") {
			t.Errorf("policy.reload_failed error %q does not name policy.yaml:3:", msg)
		}
		if p := failed[0].str("path"); p != l.policy {
			t.Errorf("policy.reload_failed path %q, want %q", p, l.policy)
		}
	} else if !waitFor(time.Second, func() bool { return strings.Contains(l.a.stderr.String(), "policy.yaml:3:") }) {
		t.Errorf("the agent's log does not name policy.yaml:3: either:\n%s", l.a.stderr)
	}
	if n := len(events(l.a.audit(t), "policy.reloaded")); n > 1 {
		t.Errorf("the broken version wrote policy.reloaded (%d in all)", n)
	}
	// The allowing policy stays in force.
	l.mustLogin("one")
	if n := len(events(l.a.audit(t), "cert.used", "route", "lab-one")); n != 2 {
		t.Errorf("want two cert.used on lab-one (before and after the broken save), got %d", n)
	}

	// Back to deny: the cached certificate is dropped and the next login
	// refused.
	have := len(events(l.a.audit(t), "policy.reloaded"))
	start = time.Now()
	saveByRename(t, l.policy, deny)
	rel, delay = waitForEvent(t, l.a, "policy.reloaded", have, start, 2*time.Second)
	if rel != nil {
		t.Logf("second policy.reloaded %v after the rename", delay)
		if d := jsonNumber(rel[0]["dropped_certificates"]); d != "1" {
			t.Errorf("policy.reloaded dropped_certificates %s, want 1 (the certificate issued under team)", d)
		}
	}
	r = l.mustFailLogin("one")
	if !strings.Contains(r.stderr, "change freeze") {
		t.Errorf("after going back to deny, ssh's stderr lacks the freeze reason: %s", r)
	}
	if n := len(events(l.a.audit(t), "cert.used")); n != 2 {
		t.Errorf("a login succeeded after the policy went back to deny (%d cert.used)", n)
	}
	// ssh-add -l (no hint, no session-bind) lists the certificates in the
	// cache: the dropped one is gone.
	needPrograms(t, "ssh-add")
	if listed := l.e.listed(l.a.socket); len(listed) != 0 {
		t.Errorf("after the deny reload warden still lists %q; the certificate should have been dropped", listed)
	}
}

// TestE2ECatalogRouteAndLint: `route` for an SSH target prints the route,
// principal, lifetime and the policy decision (exit 1 when denied);
// `route` for a lane prints owner and command and says warden does not
// hold the credential, a draft lane says what it lacks; `catalog lint`
// accepts examples/ and names file:line:col in a broken file;
// `catalog promote-check` prints the checklist of a draft lane.
func TestE2ECatalogRouteAndLint(t *testing.T) {
	user := loginUser(t)
	e := newTestEnv(t)
	team := filepath.Join(e.dir, "team")
	if err := os.MkdirAll(filepath.Join(team, "playbooks"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(team, "playbooks", "warden-sign.md"), "# warden-sign token\n")
	cat, pol := filepath.Join(team, "catalog.yaml"), filepath.Join(team, "policy.yaml")
	writeFile(t, cat, labCatalog(user))
	writeFile(t, pol, fmt.Sprintf(labPolicyFmt, user))
	e.writeConfig(fmt.Sprintf("catalog:\n  path: %s\npolicy:\n  path: %s\n", cat, pol))

	t.Run("ssh target allowed", func(t *testing.T) {
		out := e.mustWarden("route", "ssh://"+user+"@127.0.0.1")
		for _, want := range []string{"route:", "lab-one", "principal:", user, "2m0s", "allow by allow-one", "local CA"} {
			if !strings.Contains(out, want) {
				t.Errorf("route ssh://%s@127.0.0.1 lacks %q:\n%s", user, want, out)
			}
		}
		var j struct {
			Route     struct{ Name string } `json:"route"`
			Principal string                `json:"principal"`
			Decision  struct {
				Effect string `json:"effect"`
				Rule   string `json:"rule"`
			} `json:"decision"`
		}
		if err := json.Unmarshal([]byte(e.mustWarden("route", "--json", "ssh://"+user+"@127.0.0.1")), &j); err != nil {
			t.Fatalf("route --json: %v", err)
		}
		if j.Route.Name != "lab-one" || j.Principal != user || j.Decision.Effect != "allow" || j.Decision.Rule != "allow-one" {
			t.Errorf("route --json: %+v, want route lab-one, principal %s, allow by allow-one", j, user)
		}
	})

	t.Run("ssh target denied and confirmed", func(t *testing.T) {
		r := e.warden("route", "ssh://"+user+"@127.0.0.2")
		if r.code != 1 || !strings.Contains(r.stdout, "lab-two") || !strings.Contains(r.stdout, "deny by deny-two") || !strings.Contains(r.stdout, denyReason) {
			t.Errorf("route to the denied host: want exit 1, route lab-two and the rule's reason: %s", r)
		}
		out := e.mustWarden("route", "ssh://"+user+"@127.0.0.3")
		if !strings.Contains(out, "confirm by confirm-three") || !strings.Contains(out, "SSH_ASKPASS") {
			t.Errorf("route to the confirm host does not say a confirmation is asked:\n%s", out)
		}
		r = e.warden("route", "ssh://nobody-"+user+"@127.0.0.1")
		if r.code != 1 || !strings.Contains(r.stdout, "REFUSED") {
			t.Errorf("route for a user the route does not allow: want exit 1 and REFUSED: %s", r)
		}
	})

	t.Run("concrete lane", func(t *testing.T) {
		out := e.mustWarden("route", "db-password")
		for _, want := range []string{"owner:", "secrets-engine", "credential exec prod-db-readonly --", "https://runbooks.example.com/db-password", "warden does not hold"} {
			if !strings.Contains(out, want) {
				t.Errorf("route db-password lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "lacks") {
			t.Errorf("a concrete lane is reported as lacking something:\n%s", out)
		}
		var j struct {
			Lane struct {
				Need, Owner, Maturity string
			} `json:"lane"`
			Command string `json:"command"`
			NotHeld string `json:"not_held"`
			Route   any    `json:"route"`
		}
		if err := json.Unmarshal([]byte(e.mustWarden("route", "--json", "db-password")), &j); err != nil {
			t.Fatalf("route --json db-password: %v", err)
		}
		if j.Lane.Need != "db-password" || j.Lane.Owner != "secrets-engine" || !strings.HasPrefix(j.Command, "credential exec prod-db-readonly -- ") ||
			!strings.Contains(j.NotHeld, "does not hold") || j.Route != nil {
			t.Errorf("route --json db-password: %+v", j)
		}
	})

	t.Run("draft lane", func(t *testing.T) {
		out := e.mustWarden("route", "openbao-token/warden-sign")
		for _, want := range []string{"credential-broker", "warden-test-no-such-broker exec ops-warden-warden-sign-token --", "DRAFT", "evidence", "promote-check", "warden does not hold"} {
			if !strings.Contains(out, want) {
				t.Errorf("route openbao-token/warden-sign lacks %q:\n%s", want, out)
			}
		}
		var j struct {
			Lane  struct{ Maturity string } `json:"lane"`
			Lacks []string                  `json:"lacks"`
		}
		if err := json.Unmarshal([]byte(e.mustWarden("route", "--json", "openbao-token/warden-sign")), &j); err != nil {
			t.Fatal(err)
		}
		if j.Lane.Maturity != "draft" || !slices.Equal(j.Lacks, []string{"evidence"}) {
			t.Errorf("route --json of the draft lane: maturity %q lacks %q, want draft and [evidence]", j.Lane.Maturity, j.Lacks)
		}
	})

	t.Run("unknown need", func(t *testing.T) {
		r := e.warden("route", "kafka-password")
		if r.code == 0 || !strings.Contains(r.stderr, "db-password") {
			t.Errorf("route of an unknown need: want an error naming the known needs: %s", r)
		}
	})

	t.Run("promote-check", func(t *testing.T) {
		r := e.warden("catalog", "promote-check", "openbao-token/warden-sign")
		if r.code != 1 {
			t.Errorf("promote-check of an unready draft lane: want exit 1: %s", r)
		}
		for _, want := range []string{
			"lane openbao-token/warden-sign (draft):",
			"[x] owner named: owner: credential-broker",
			"[ ] exec command runs: warden-test-no-such-broker",
			"[x] playbook exists",
			"[ ] smoke evidence recorded",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("promote-check lacks %q: %s", want, r)
			}
		}
		r = e.warden("catalog", "promote-check", "--json", "openbao-token/warden-sign")
		var items []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &items); err != nil {
			t.Fatalf("promote-check --json: %v: %s", err, r)
		}
		var got []string
		for _, it := range items {
			got = append(got, fmt.Sprintf("%s=%t", it.Name, it.OK))
		}
		want := []string{"owner named=true", "exec command runs=false", "playbook exists=true", "smoke evidence recorded=false"}
		if !slices.Equal(got, want) {
			t.Errorf("promote-check --json items %q, want %q", got, want)
		}
	})

	t.Run("lint", func(t *testing.T) {
		examples, err := filepath.Abs(filepath.Join("..", "..", "examples", "catalog.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{examples, cat} {
			if r := e.warden("catalog", "lint", f); r.code != 0 || !strings.Contains(r.stdout, "ok") {
				t.Errorf("catalog lint %s: want exit 0 and ok: %s", f, r)
			}
		}
		// Without FILE: the configured catalog.
		if r := e.warden("catalog", "lint"); r.code != 0 || !strings.Contains(r.stdout, cat) {
			t.Errorf("catalog lint of the configured catalog %s: %s", cat, r)
		}

		broken := filepath.Join(team, "broken.yaml")
		writeFile(t, broken, "routes:\n  - name: lab\n    hosts: [\"*.lab.example.com\"]\n    principle: alice\n")
		r := e.warden("catalog", "lint", broken)
		if r.code != 1 {
			t.Errorf("catalog lint of a broken file: want exit 1: %s", r)
		}
		if !strings.Contains(r.stdout+r.stderr, "broken.yaml:4:5") || !strings.Contains(r.stdout+r.stderr, "principle") {
			t.Errorf("catalog lint of a broken file does not name broken.yaml:4:5 and the field: %s", r)
		}
		r = e.warden("catalog", "lint", "--json", broken)
		var findings []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &findings); err != nil || r.code != 1 || len(findings) == 0 {
			t.Errorf("catalog lint --json of a broken file: want exit 1 and findings (%v): %s", err, r)
		}
	})
}

// TestE2EPolicyGateFailOpenRecorded: a gate that cannot be asked, with
// on_error: allow, lets the login through — and the record says so
// (issue 16: a gate that failed open must leave a trace).
func TestE2EPolicyGateFailOpenRecorded(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "sh")
	sshdPath(t)
	user := loginUser(t)
	// A port nothing listens on: the gate cannot be asked.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	policy := fmt.Sprintf(`rules:
  - name: allow-one
    hosts: ["127.0.0.1"]
    principals: [%q]
    effect: allow
gate:
  enabled: true
  url: http://%s/decide
  timeout: 1s
  on_error: allow
`, user, dead)
	l := newPolicyLab(t, policy, nil)
	l.mustLogin("one")
	issued := events(l.a.audit(t), "cert.issued", "route", "lab-one")
	if len(issued) != 1 {
		t.Fatalf("want one cert.issued on lab-one, got %d", len(issued))
	}
	rec := issued[0]
	if rec.str("rule") != "allow-one" || rec.str("gate") != "allow" || fmt.Sprint(rec["gate_fail_open"]) != "true" ||
		!strings.Contains(rec.str("gate_reason"), "gate unavailable (on_error: allow)") {
		t.Fatalf("cert.issued %v: want rule allow-one, gate allow, gate_fail_open true and the gate's failure", rec)
	}
}
