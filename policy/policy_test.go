package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testPolicy = `rules:
  - name: no-root
    principals: [root]
    effect: deny
    reason: nobody logs in as root
  - name: no-forwarded-prod
    hosts: ["*.prod.example.com"]
    forwarded: true
    effect: deny
    reason: no certificates through a forwarded agent on prod
  - name: tunnel
    callers: [ops-bridge]
    routes: [bastion]
    bound: false
    effect: allow
    max_ttl: 2m
  - name: unbound
    bound: false
    effect: deny
    reason: the client did not send session-bind
  - name: prod-confirm
    hosts: ["*.prod.example.com", "!canary.prod.example.com"]
    principals: [deploy, dba]
    effect: confirm
    max_ttl: 5m
  - callers: ["/usr/bin/ssh", "scp", "!gdb"]
    effect: allow
`

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func chain(exes ...string) []Caller {
	var out []Caller
	for i, e := range exes {
		out = append(out, Caller{Pid: 100 + i, Exe: e, Name: filepath.Base(e)})
	}
	return out
}

func TestEvaluate(t *testing.T) {
	p := mustParse(t, testPolicy)
	ssh := chain("/usr/bin/ssh", "/usr/bin/bash", "/usr/lib/systemd/systemd")
	tests := []struct {
		name   string
		in     Input
		effect Effect
		rule   string
		maxTTL time.Duration
	}{
		{"first match: root denied before anything else",
			Input{Principal: "root", Host: "db1.prod.example.com", Callers: ssh, Bound: true}, EffectDeny, "no-root", 0},
		{"forwarded on prod",
			Input{Principal: "deploy", Host: "db1.prod.example.com", Callers: ssh, Forwarded: true, Bound: true}, EffectDeny, "no-forwarded-prod", 0},
		{"forwarded elsewhere falls through",
			Input{Principal: "deploy", Host: "db1.lab.example.com", Callers: ssh, Forwarded: true, Bound: true}, EffectAllow, "rule 6", 0},
		{"pattern with host case folded",
			Input{Principal: "deploy", Host: "DB1.Prod.Example.com", Callers: ssh, Bound: true}, EffectConfirm, "prod-confirm", 5 * time.Minute},
		{"negated host skips confirm",
			Input{Principal: "deploy", Host: "canary.prod.example.com", Callers: ssh, Bound: true}, EffectAllow, "rule 6", 0},
		{"caller anywhere in the parent chain",
			Input{Principal: "jump", Host: "bastion.prod.example.com", Route: "bastion", Callers: chain("/usr/bin/ssh", "/opt/ops/bin/ops-bridge", "/sbin/init")}, EffectAllow, "tunnel", 2 * time.Minute},
		{"bound=false without the tunnel caller",
			Input{Principal: "jump", Host: "bastion.prod.example.com", Route: "bastion", Callers: ssh}, EffectDeny, "unbound", 0},
		{"tunnel rule needs its route",
			Input{Principal: "jump", Host: "x", Route: "other", Callers: chain("/opt/ops-bridge")}, EffectDeny, "unbound", 0},
		{"caller by path",
			Input{Principal: "alice", Host: "h", Callers: chain("/usr/bin/ssh"), Bound: true}, EffectAllow, "rule 6", 0},
		{"caller by base name",
			Input{Principal: "alice", Host: "h", Callers: chain("/usr/local/bin/scp"), Bound: true}, EffectAllow, "rule 6", 0},
		{"process name alone never matches (a process sets its own comm)",
			Input{Principal: "alice", Host: "h", Callers: []Caller{{Pid: 1, Name: "scp"}}, Bound: true}, EffectDeny, DefaultRule, 0},
		{"comm renamed to ssh does not make python ssh",
			Input{Principal: "alice", Host: "h", Callers: []Caller{{Pid: 1, Exe: "/usr/bin/python3", Name: "ssh"}}, Bound: true}, EffectDeny, DefaultRule, 0},
		{"path pattern does not match a base name",
			Input{Principal: "alice", Host: "h", Callers: chain("/opt/ssh"), Bound: true}, EffectDeny, DefaultRule, 0},
		{"negated caller anywhere in the chain",
			Input{Principal: "alice", Host: "h", Callers: chain("/usr/bin/ssh", "/usr/bin/gdb"), Bound: true}, EffectDeny, DefaultRule, 0},
		{"default deny",
			Input{Principal: "alice", Host: "h", Callers: chain("/usr/bin/python3"), Bound: true}, EffectDeny, DefaultRule, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Evaluate(tt.in)
			if d.Effect != tt.effect || d.Rule != tt.rule || d.MaxTTL != tt.maxTTL {
				t.Errorf("got %s by %q (max %v), want %s by %q (max %v)\n%s", d.Effect, d.Rule, d.MaxTTL, tt.effect, tt.rule, tt.maxTTL, p.Explain(tt.in))
			}
			if d.Reason == "" {
				t.Error("decision without a reason")
			}
		})
	}
}

func TestAllowAllAndNil(t *testing.T) {
	for _, p := range []*Policy{nil, AllowAll()} {
		if d := p.Evaluate(Input{Principal: "root"}); d.Effect != EffectAllow {
			t.Errorf("%v: %+v", p, d)
		}
		if !strings.Contains(p.Explain(Input{}), "no policy file configured") {
			t.Error("explain for allow-all")
		}
	}
	// An empty rule list is not allow-all: a policy file that says
	// nothing denies everything.
	if d := mustParse(t, "rules: []\n").Evaluate(Input{}); d.Effect != EffectDeny {
		t.Errorf("empty rules: %+v", d)
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, testPolicy)
	out := p.Explain(Input{Principal: "deploy", Host: "db1.prod.example.com", Callers: chain("/usr/bin/ssh"), Bound: true})
	for _, want := range []string{
		`no-root (deny): no match: principal "deploy" not in root`,
		`no-forwarded-prod (deny): no match: forwarded is false, rule wants true`,
		`tunnel (allow): no match: route "" not in bastion`,
		`unbound (deny): no match: bound is true, rule wants false`,
		`prod-confirm (confirm): MATCH`,
		`decision: confirm by prod-confirm, max_ttl 5m0s`,
		`SSH_ASKPASS`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	out = p.Explain(Input{Principal: "x", Host: "h", Bound: true})
	if !strings.Contains(out, "deny by default") {
		t.Errorf("default:\n%s", out)
	}
}

func TestLoadErrorsArePositioned(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown field", "rules:\n  - effect: allow\n    principle: [x]\n", `policy.yaml:3:5: unknown field "principle" in rule (did you mean "principals"?)`},
		{"bad effect", "rules:\n  - name: ci\n    effect: alow\n", `policy.yaml:3:13: rule "ci"`},
		{"no effect", "rules:\n  - name: ci\n    hosts: [a]\n", `policy.yaml:2:5: rule "ci": no effect`},
		{"bad max_ttl", "rules:\n  - effect: allow\n    max_ttl: soon\n", `policy.yaml:3:14: field "max_ttl" in rule: invalid duration "soon"`},
		{"forwarded not bool", "rules:\n  - effect: allow\n    forwarded: maybe\n", `policy.yaml:3:16: field "forwarded" in rule: expected true or false, found "maybe"`},
		{"gate without url", "rules: []\ngate:\n  enabled: true\n", `policy.yaml:3:3: gate: url "" must be an http:// or https:// URL`},
		{"gate on_error", "rules: []\ngate:\n  enabled: false\n  on_error: maybe\n", `policy.yaml:4:13: gate: on_error "maybe" is not one of deny, allow`},
		{"duplicate rule name", "rules:\n  - {name: a, effect: allow}\n  - {name: a, effect: deny}\n", `duplicate rule name "a"`},
		{"only negations", "rules:\n  - {hosts: ['!a'], effect: allow}\n", `hosts has only negated patterns`},
		{"empty", "\n", `policy.yaml: file is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "policy.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestExamplePolicyLoads(t *testing.T) {
	p, err := Load(filepath.Join("..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) == 0 || p.Gate == nil {
		t.Fatalf("example policy: %+v", p)
	}
}

func TestParentPid(t *testing.T) {
	if got := parentPid("42 (a (weird) name) S 7 42 42 0"); got != 7 {
		t.Errorf("ppid = %d", got)
	}
	if chain := ProcessChain(os.Getpid(), 3); len(chain) == 0 || chain[0].Pid != os.Getpid() {
		t.Skipf("no /proc here: %v", chain)
	}
}
