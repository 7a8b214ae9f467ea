package main

// Tests of the catalog, policy and configuration fixes of issues 12 and
// 16: policy files that appear after start, inline routes next to a
// catalog file, agent.yaml errors in the words of the file, JSON from
// policy explain and check, `ca --known-hosts` gone, drift's exit codes.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// TestE2EPolicyCreatedAfterStart: an agent started with no policy file
// follows the default path: a policy.yaml created there later is in force
// within a second (policy.reloaded, then the next login is refused by it).
func TestE2EPolicyCreatedAfterStart(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)
	env := []string{"SSH_AUTH_SOCK=" + a.socket}
	e.mustLogin(cfg, env, user, "target")

	path := filepath.Join(e.config, "warden", "policy.yaml")
	start := time.Now()
	saveByRename(t, path, "rules:\n  - name: freeze\n    effect: deny\n    reason: change freeze\n")
	rel, delay := waitForEvent(t, a, "policy.reloaded", 0, start, 2*time.Second)
	if rel == nil {
		t.Fatalf("no policy.reloaded after creating %s; agent log:\n%s", path, a.stderr)
	}
	if delay > time.Second {
		t.Errorf("the new policy took %v to load", delay)
	}
	if p := rel[0].str("path"); p != path {
		t.Errorf("policy.reloaded path %q, want %q", p, path)
	}
	r := e.sshLogin(cfg, env, user, "target", "refused")
	if r.code == 0 || !strings.Contains(r.stderr, "change freeze") {
		t.Errorf("login after the policy appeared: want refused with the freeze reason, got %s", r)
	}
	// Status now names the policy file.
	if out := e.mustWarden("status", "--socket", a.socket); !strings.Contains(out, path) {
		t.Errorf("status does not name %s:\n%s", path, out)
	}
}

// TestConfigInlineRoutesAndCatalogFile: inline routes next to a default
// catalog.yaml (or catalog.path) refuse to start, naming both; neither
// silently wins.
func TestConfigInlineRoutesAndCatalogFile(t *testing.T) {
	e := newTestEnv(t)
	user := loginUser(t)
	e.writeConfig(fmt.Sprintf("routes:\n  - name: inline\n    hosts: [\"*\"]\n    principals: [%q]\n", user))
	catPath := filepath.Join(e.config, "warden", "catalog.yaml")
	writeFile(t, catPath, fmt.Sprintf("routes:\n  - name: from-file\n    hosts: [\"*\"]\n    principals: [%q]\n", user))
	agentYAML := filepath.Join(e.config, "warden", "agent.yaml")
	for _, args := range [][]string{{"run", "--upstream", "none"}, {"route", "ssh://" + user + "@db1"}} {
		r := e.warden(args...)
		if r.code == 0 {
			t.Fatalf("warden-agent %v with both inline routes and %s: %s", args, catPath, r)
		}
		for _, want := range []string{agentYAML, catPath, "only one set of routes can be in force"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("warden-agent %v: error does not name %q:\n%s", args, want, r.stderr)
			}
		}
	}
	// Without the file the inline routes are used.
	if err := os.Remove(catPath); err != nil {
		t.Fatal(err)
	}
	if out := e.mustWarden("route", "ssh://"+user+"@db1"); !strings.Contains(out, "inline") {
		t.Errorf("route without a catalog file:\n%s", out)
	}
}

// TestConfigErrorsPositioned: agent.yaml errors carry file:line:col and
// the key path, in the words of the file: no Go type names, a duration
// with its position, an unknown key under signer.openbao at its own line.
func TestConfigErrorsPositioned(t *testing.T) {
	e := newTestEnv(t)
	e.writeConfig(`socket: /tmp/x.sock
list_deadline: 10 seconds
signer:
  kind: openbao
  locl:
    ca_key: x
  openbao:
    address: https://bao.example.com:8200
    timeout: 5x
    adress: y
audit:
  max_size: big
`)
	path := filepath.Join(e.config, "warden", "agent.yaml")
	r := e.warden("route", "ssh://u@db1")
	if r.code == 0 {
		t.Fatalf("a broken agent.yaml was accepted: %s", r)
	}
	for _, want := range []string{
		path + `:2:16: list_deadline: invalid duration "10 seconds" (use a form like 5m or 1h)`,
		path + `:5:3: unknown field "locl" under signer (did you mean "local"?)`,
		path + `:9:14: signer.openbao.timeout: invalid duration "5x" (use a form like 5m or 1h)`,
		path + `:10:5: unknown field "adress" under signer.openbao (did you mean "address"?)`,
		path + `:12:13: audit.max_size: expected a whole number, found "big"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("error lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, bad := range []string{"main.", "signer.OpenBaoConfig", "time.Duration", "int64", "not found in type"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("error names Go's %q:\n%s", bad, r.stderr)
		}
	}
	// A syntax error: its own line and a column.
	e.writeConfig("signer:\n  kind: local\n local: {}\n")
	if r := e.warden("route", "ssh://u@db1"); !strings.Contains(r.stderr, path+":3:2: invalid YAML: did not find expected key") {
		t.Errorf("syntax error not at 3:2:\n%s", r)
	}
	// An inline route that does not validate is named where it stands.
	e.writeConfig("routes:\n  - name: a\n    hosts: [a]\n")
	if r := e.warden("route", "ssh://u@a"); !strings.Contains(r.stderr, path+":2:5: routes[0]: route a: no principals") {
		t.Errorf("inline route error:\n%s", r)
	}
	// An empty file is the default configuration.
	e.writeConfig("# nothing yet\n")
	if r := e.warden("route", "ssh://"+loginUser(t)+"@a"); r.code != 0 {
		t.Errorf("an agent.yaml with only a comment: %s", r)
	}
}

// TestPolicyCommandsJSON: policy explain --json and policy check --json
// print objects a program can read; explain says when a deny rule naming
// hosts matches a target with no known name; check lists the bare-name
// caller warning with its position and exits 1 on errors.
func TestPolicyCommandsJSON(t *testing.T) {
	e := newTestEnv(t)
	pol := filepath.Join(e.dir, "policy.yaml")
	writeFile(t, pol, "rules:\n  - name: no-forwarded-prod\n    hosts: [\"*.prod\"]\n    forwarded: true\n    effect: deny\n  - name: ssh\n    callers: [ssh]\n    effect: allow\n")
	e.writeConfig("policy:\n  path: " + pol + "\n")

	var ex struct {
		HostUnknown bool `json:"host_unknown"`
		Rules       []struct {
			Rule  string `json:"rule"`
			Match bool   `json:"match"`
			Why   string `json:"why"`
		} `json:"rules"`
		Decision struct {
			Effect string `json:"effect"`
			Rule   string `json:"rule"`
		} `json:"decision"`
	}
	out := e.mustWarden("policy", "explain", "--json", "--principal", "deploy", "--forwarded", "--caller", "/usr/bin/ssh")
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	if !ex.HostUnknown || ex.Decision.Effect != "deny" || ex.Decision.Rule != "no-forwarded-prod" || len(ex.Rules) != 1 || !strings.Contains(ex.Rules[0].Why, "fail closed") {
		t.Errorf("explain --json for a forwarded target with no name: %s", out)
	}
	text := e.mustWarden("policy", "explain", "--principal", "deploy", "--forwarded", "--caller", "/usr/bin/ssh")
	if !strings.Contains(text, "deny rules naming hosts match and allow or confirm rules naming hosts do not") {
		t.Errorf("explain does not say what an unknown host does:\n%s", text)
	}
	out = e.mustWarden("policy", "explain", "--json", "--principal", "deploy", "--forwarded", "--name", "db1.lab", "--caller", "/usr/bin/ssh")
	ex.HostUnknown = false
	if err := json.Unmarshal([]byte(out), &ex); err != nil || ex.HostUnknown || ex.Decision.Rule != "ssh" {
		t.Errorf("explain --json with --name db1.lab: %v\n%s", err, out)
	}

	var chk struct {
		OK       bool `json:"ok"`
		Rules    int  `json:"rules"`
		Errors   []struct{ Message string }
		Warnings []struct {
			Line, Col int
			Message   string
		}
	}
	out = e.mustWarden("policy", "check", "--json", pol)
	if err := json.Unmarshal([]byte(out), &chk); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	if !chk.OK || chk.Rules != 2 || len(chk.Errors) != 0 || len(chk.Warnings) != 1 || chk.Warnings[0].Line != 7 || chk.Warnings[0].Col != 15 ||
		!strings.Contains(chk.Warnings[0].Message, "matches any executable named ssh") {
		t.Errorf("check --json: %s", out)
	}
	if text := e.mustWarden("policy", "check", pol); !strings.Contains(text, "note: no-forwarded-prod names hosts: it also denies a target whose host name is unknown (fail closed)") {
		t.Errorf("check does not say what a deny rule naming hosts does with an unknown host:\n%s", text)
	}
	writeFile(t, pol, "rules:\n  - effect: alow\n")
	r := e.warden("policy", "check", "--json", pol)
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &chk) != nil || chk.OK || len(chk.Errors) != 1 {
		t.Errorf("check --json of a broken file: %s", r)
	}
}

// TestCAKnownHostsRemoved: `ca --known-hosts` printed the user CA as
// "@cert-authority *", a host CA for every host. It now refuses, saying
// why, and `ca` prints the bare key.
func TestCAKnownHostsRemoved(t *testing.T) {
	e := newTestEnv(t)
	r := e.warden("ca", "--known-hosts")
	if r.code != 2 || strings.Contains(r.stdout, "@cert-authority") || !strings.Contains(r.stderr, "host CA for every host") {
		t.Errorf("ca --known-hosts: %s", r)
	}
	if out := e.mustWarden("ca"); !strings.HasPrefix(out, "ssh-ed25519 ") {
		t.Errorf("ca: %q", out)
	}
}

// TestDriftExitCodes: drift exits 0 in step, 1 on drift, 2 when the check
// cannot be completed: a token whose policies do not allow reading the
// role (permission denied from the OpenBao-compatible server), or no
// OpenBao configured.
func TestDriftExitCodes(t *testing.T) {
	srv := openbaotest.NewServer(t, openbaotest.Options{})
	e := newTestEnv(t)
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	writeFile(t, cfgPath, "signer:\n  kind: openbao\n  openbao:\n    address: "+srv.Target().Address+"\n"+
		"routes:\n  - name: eng\n    hosts: [\"*\"]\n    mount: ssh\n    role: eng\n    principals: [deploy, alice, root]\n")
	root := []string{"BAO_TOKEN=" + srv.RootToken()}
	if r := e.run(root, wardenExe, "drift", "--config", cfgPath); r.code != 0 || !strings.Contains(r.stdout, "no drift") {
		t.Errorf("in step: %s", r)
	}
	writeFile(t, cfgPath, "signer:\n  kind: openbao\n  openbao:\n    address: "+srv.Target().Address+"\n"+
		"routes:\n  - name: eng\n    hosts: [\"*\"]\n    mount: ssh\n    role: eng\n    principals: [deploy, dba]\n")
	if r := e.run(root, wardenExe, "drift", "--config", cfgPath); r.code != 1 || !strings.Contains(r.stdout, "DRIFT") {
		t.Errorf("drift: %s", r)
	}
	weak := []string{"BAO_TOKEN=" + srv.CreateToken([]string{"default"}, time.Hour, false)}
	r := e.run(weak, wardenExe, "drift", "--config", cfgPath)
	t.Logf("permission denied:\n%s", r.stdout)
	if r.code != 2 || !strings.Contains(r.stdout, "NOT CHECKED") || !strings.Contains(r.stdout, "permission denied") {
		t.Errorf("permission denied: want exit 2 naming it, got %s", r)
	}
	r = e.run(weak, wardenExe, "drift", "--json", "--config", cfgPath)
	var rep struct{ Drift, Errors bool }
	if r.code != 2 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.Errors || rep.Drift {
		t.Errorf("permission denied, --json: %s", r)
	}
	writeFile(t, cfgPath, "signer:\n  kind: local\n")
	if r := e.warden("drift", "--config", cfgPath); r.code != 2 || !strings.Contains(r.stderr, "signer.kind: openbao") {
		t.Errorf("no OpenBao: %s", r)
	}
}

// TestE2EForwardedHostsRuleFailsClosed: `ssh -A bastion ssh target`, the
// target known only by its pinned host key (route fwd-target has no host
// names, and ssh's hint names the bastion). The shipped example's rule
// against forwarded prod (hosts + forwarded: true, deny) fires for it:
// a target with no known name meets a deny rule naming hosts. An allow
// rule naming hosts does not allow it (default deny).
func TestE2EForwardedHostsRuleFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name, policy, rule string
	}{
		{"deny rule fires", `rules:
  - name: no-forwarded-prod
    hosts: ["*.prod.example.com"]
    forwarded: true
    effect: deny
    reason: certificates for prod are not issued through a forwarded agent
  - name: allow-rest
    effect: allow
`, "no-forwarded-prod"},
		{"allow rule does not", `rules:
  - name: forwarded-lab
    hosts: ["*.lab.example.com"]
    forwarded: true
    effect: allow
  - name: local
    forwarded: false
    effect: allow
`, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFwdLab(t, tc.policy)
			r := l.hop()
			if r.code == 0 || strings.Contains(r.stdout, "ok") {
				t.Fatalf("the forwarded login to the unnamed target succeeded: %s", r)
			}
			recs := l.a.audit(t)
			if l.bastion.certLogins(l.user) != 1 {
				t.Errorf("the bastion login itself: %d certificate logins", l.bastion.certLogins(l.user))
			}
			if got := events(recs, "cert.issued", "route", "fwd-target"); len(got) != 0 {
				t.Errorf("a certificate was issued for the unnamed target: %v", got)
			}
			if n := l.target.certLogins(l.user); n != 0 {
				t.Errorf("the target accepted %d certificate logins", n)
			}
			failed := events(recs, "cert.issue_failed", "route", "fwd-target", "rule", tc.rule)
			if len(failed) == 0 || fmt.Sprint(failed[0]["forwarded"]) != "true" {
				t.Errorf("want cert.issue_failed on fwd-target by rule %s (forwarded), got %v", tc.rule, events(recs, "cert.issue_failed"))
			}
		})
	}
}
