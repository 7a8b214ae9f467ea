package policy

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostRulesSeeHostKeyNames: without a hint the hosts rules match the
// names resolved for the bound host key; with none a deny rule naming
// hosts matches (fail closed) and an allow or confirm rule does not, and
// explain says so.
func TestHostRulesSeeHostKeyNames(t *testing.T) {
	p := mustParse(t, `rules:
  - name: no-forwarded-prod
    hosts: ["*.prod.example.com"]
    forwarded: true
    effect: deny
  - name: lab
    hosts: ["*.lab.example.com", "!secret.lab.example.com"]
    effect: allow
  - name: prod-confirm
    hosts: ["*.prod.example.com"]
    effect: confirm
  - name: rest
    effect: allow
`)
	for _, tc := range []struct {
		name string
		in   Input
		rule string
	}{
		{"hinted host", Input{Host: "db1.prod.example.com", Forwarded: true}, "no-forwarded-prod"},
		{"forwarded, known by host key", Input{Hosts: []string{"10.0.0.1", "db1.prod.example.com"}, Forwarded: true}, "no-forwarded-prod"},
		{"forwarded, no name: deny fails closed", Input{Forwarded: true}, "no-forwarded-prod"},
		{"no name: allow rule naming hosts does not match", Input{}, "rest"},
		{"all names inside the allow rule", Input{Hosts: []string{"a.lab.example.com", "b.lab.example.com"}}, "lab"},
		{"one name excluded by the allow rule", Input{Hosts: []string{"a.lab.example.com", "secret.lab.example.com"}}, "rest"},
		{"host key names prod, not forwarded", Input{Hosts: []string{"db1.prod.example.com"}}, "prod-confirm"},
		{"hint wins over host key names", Input{Host: "a.lab.example.com", Hosts: []string{"db1.prod.example.com"}, Forwarded: true}, "lab"},
	} {
		if d := p.Evaluate(tc.in); d.Rule != tc.rule {
			t.Errorf("%s: decided by %s, want %s\n%s", tc.name, d.Rule, tc.rule, p.Explain(tc.in))
		}
	}
	out := p.Explain(Input{Principal: "deploy"})
	for _, want := range []string{
		"host (unknown: no hint and no name for its host key)",
		"deny rules naming hosts match and allow or confirm rules naming hosts do not (fail closed)",
		"no-forwarded-prod (deny): no match: forwarded is false",
		"lab (allow): no match: the target's host name is unknown",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	ex := p.ExplainSteps(Input{Principal: "deploy", Forwarded: true})
	if !ex.HostUnknown || len(ex.Rules) != 1 || !ex.Rules[0].Match || !strings.Contains(ex.Rules[0].Why, "fail closed") {
		t.Errorf("ExplainSteps for an unknown forwarded target: %+v", ex)
	}
	b, err := json.Marshal(ex)
	if err != nil || !strings.Contains(string(b), `"host_unknown":true`) || !strings.Contains(string(b), `"effect":"deny"`) {
		t.Errorf("JSON explanation %s (%v)", b, err)
	}
}

// TestExamplePolicyDeniesForwardedProdByHostKey: the shipped example's
// rule against forwarded prod fires for `ssh -A bastion ssh prod` where
// prod is known only by its host key (pinned or in known_hosts), and when
// its host key names nothing at all.
func TestExamplePolicyDeniesForwardedProdByHostKey(t *testing.T) {
	p, err := Load(filepath.Join("..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ssh := chain("/usr/bin/ssh", "/usr/bin/bash")
	for _, in := range []Input{
		{Principal: "deploy", Hosts: []string{"db1.prod.example.com"}, Route: "prod-db", Callers: ssh, Forwarded: true, Bound: true},
		{Principal: "deploy", Route: "prod-db", Callers: ssh, Forwarded: true, Bound: true},
	} {
		if d := p.Evaluate(in); d.Rule != "no-forwarded-prod" || d.Effect != EffectDeny {
			t.Errorf("hosts %v: %s by %s, want deny by no-forwarded-prod\n%s", in.Hosts, d.Effect, d.Rule, p.Explain(in))
		}
	}
}
