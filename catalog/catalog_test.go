package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMatchPatternList(t *testing.T) {
	tests := []struct {
		patterns []string
		host     string
		want     bool
	}{
		{[]string{"*"}, "db1", true},
		{[]string{"db*.prod.example.com"}, "db1.prod.example.com", true},
		{[]string{"db*.prod.example.com"}, "web1.prod.example.com", false},
		{[]string{"db?"}, "db1", true},
		{[]string{"db?"}, "db12", false},
		{[]string{"*.example.com", "!bastion.example.com"}, "bastion.example.com", false},
		{[]string{"*.example.com", "!bastion.example.com"}, "db.example.com", true},
		{[]string{"!bastion.example.com"}, "db.example.com", false}, // negation alone matches nothing
		{[]string{"*.EXAMPLE.com"}, "Db.Example.COM", true},         // hosts ignore case
		{[]string{"a.example.com,b.example.com"}, "b.example.com", true},
		{[]string{"[db]"}, "[db]", true}, // brackets are literal, as in ssh
		{[]string{"[db]"}, "d", false},
		{[]string{"*a*a*a*a*a*a*a*a*b"}, strings.Repeat("a", 200), false}, // linear, not exponential
		{nil, "db1", false},
	}
	for _, tt := range tests {
		if got := MatchPatternList(tt.patterns, tt.host); got != tt.want {
			t.Errorf("MatchPatternList(%q, %q) = %v, want %v", tt.patterns, tt.host, got, tt.want)
		}
	}
}

const goodCatalog = `routes:
  - name: prod-db
    hosts: ["db*.prod.example.com"]
    mount: ssh
    role: prod-db
    principals: [deploy, dba]
    ttl: 3m
  - name: prod
    hosts: ["*.prod.example.com", "!bastion.prod.example.com"]
    mount: ssh
    role: prod
    principals: [deploy]
  - name: lab
    hosts: ["*.lab.example.com"]
    principal: lab-admin
lanes:
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
    exec: "credential exec {id} -- {command}"
    maturity: draft
`

func mustParse(t *testing.T, src string) *Catalog {
	t.Helper()
	c, err := Parse("catalog.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParseGood(t *testing.T) {
	c := mustParse(t, goodCatalog)
	if len(c.Routes) != 3 || len(c.Lanes) != 2 {
		t.Fatalf("got %d routes, %d lanes", len(c.Routes), len(c.Lanes))
	}
	if r := c.RouteForHost("db1.prod.example.com"); r == nil || r.Name != "prod-db" {
		t.Errorf("db1 → %v, want prod-db (first match)", r)
	}
	if r := c.RouteForHost("bastion.prod.example.com"); r != nil {
		t.Errorf("bastion → %s, want none (negated)", r.Name)
	}
	if got := c.Routes[0].Lifetime().String(); got != "3m0s" {
		t.Errorf("ttl = %s", got)
	}
	if fs := Lint("catalog.yaml", []byte(goodCatalog)); HasErrors(fs) {
		t.Errorf("lint errors: %v", fs)
	}
}

func TestLoadErrorsArePositioned(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown field with suggestion", "routes:\n  - name: a\n    hosts: [a]\n    principle: deploy\n",
			`catalog.yaml:4:5: unknown field "principle" in route (did you mean "principal"?)`},
		{"unknown top-level field", "rutes: []\n", `catalog.yaml:1:1: unknown field "rutes" in catalog (did you mean "routes"?)`},
		{"bad duration", "routes:\n  - name: a\n    hosts: [a]\n    principals: [x]\n    ttl: 5 minutes\n",
			`catalog.yaml:5:10: field "ttl" in route: invalid duration "5 minutes" (use a form like 5m or 1h)`},
		{"list expected", "routes:\n  - name: a\n    hosts: a\n    principals: [x]\n",
			`catalog.yaml:3:12: field "hosts" in route: expected a list, found "a"`},
		{"duplicate field", "routes:\n  - name: a\n    name: b\n    hosts: [a]\n    principals: [x]\n",
			`catalog.yaml:3:5: duplicate field "name" in route (first at line 2)`},
		{"duplicate route name", "routes:\n  - name: a\n    hosts: [a]\n    principals: [x]\n  - name: a\n    hosts: [b]\n    principals: [x]\n",
			`catalog.yaml:5:5: duplicate route name "a" (first used by route 1)`},
		{"missing principals", "routes:\n  - name: a\n    hosts: [a]\n",
			`catalog.yaml:2:5: route a has no principals`},
		{"bad maturity", "lanes:\n  - need: x\n    owner: o\n    exec: e\n    maturity: done\n",
			`catalog.yaml:5:5: lane x: maturity "done" is not one of concrete, draft, deprecated`},
		{"syntax", "routes:\n  - name: a\n   hosts: [a]\n", `catalog.yaml:3:4: invalid YAML: did not find expected '-' indicator`},
		{"empty", "", `catalog.yaml: file is empty`},
		{"two documents", "routes: []\n---\nroutes: []\n", `catalog.yaml:2:1: a second YAML document`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "catalog.yaml")
			os.WriteFile(p, []byte(tt.src), 0o644)
			_, err := Parse("catalog.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v\nwant it to contain %s", err, tt.want)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(tt.want, "catalog.yaml")) {
				t.Fatalf("Load error = %v", err)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

// route builds a YAML route entry.
func route(name, hosts string) string {
	return "  - name: " + name + "\n    hosts: " + hosts + "\n    principals: [deploy]\n"
}

func TestLintRules(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		rule     string // expected rule; "" means no finding at all
		severity string
		line     int
	}{
		{"clean", "routes:\n" + route("a", "[a.example.com]") + route("b", "[b.example.com]"), "", "", 0},
		{"unknown field", "routes:\n" + route("a", "[a]") + "    principle: x\n", RuleUnknownField, SeverityError, 5},
		{"duplicate route name", "routes:\n" + route("a", "[a]") + route("a", "[b]"), RuleDuplicateName, SeverityError, 5},
		{"duplicate lane need", "lanes:\n  - {need: x, owner: o, exec: e}\n  - {need: x, owner: o, exec: e}\n", RuleDuplicateName, SeverityError, 3},
		{"shadowed by catch-all", "routes:\n" + route("all", "['*']") + route("db", "[db1]"), RuleShadowedRoute, SeverityError, 6},
		{"shadowed by suffix", "routes:\n" + route("prod", "['*.prod.example.com']") + route("db", "['db*.prod.example.com', 'x.prod.example.com']"), RuleShadowedRoute, SeverityError, 6},
		{"shadowed across routes", "routes:\n" + route("a", "[a1]") + route("b", "[b1]") + route("ab", "[a1, b1]"), RuleShadowedRoute, SeverityError, 9},
		{"not shadowed: earlier has negation", "routes:\n" + route("all", "['*', '!db1']") + route("db", "[db1]"), "", "", 0},
		{"overlap", "routes:\n" + route("db", "['db*']") + route("prod", "['*.prod']"), RuleOverlap, SeverityWarning, 6},
		{"lane without owner", "lanes:\n  - need: x\n    exec: e\n", RuleLaneIncomplete, SeverityError, 2},
		{"lane without exec", "lanes:\n  - need: x\n    owner: o\n", RuleLaneIncomplete, SeverityError, 2},
		{"concrete lane without playbook", "lanes:\n  - {need: x, owner: o, exec: e, evidence: ev, maturity: concrete}\n", RuleConcreteUnproven, SeverityError, 2},
		{"concrete lane without evidence", "lanes:\n  - {need: x, owner: o, exec: e, playbook: pb, maturity: concrete}\n", RuleConcreteUnproven, SeverityError, 2},
		{"draft lane without playbook is fine", "lanes:\n  - {need: x, owner: o, exec: e, maturity: draft}\n", "", "", 0},
		{"exec placeholder", "lanes:\n  - {need: x, owner: o, exec: 'get {secret}'}\n", RulePlaceholder, SeverityWarning, 2},
		{"empty catalog", "routes: []\n", RuleEmpty, SeverityWarning, 1},
		{"invalid host key", "routes:\n  - name: a\n    host_keys: ['ssh-ed25519 notbase64']\n    principals: [x]\n", RuleInvalid, SeverityError, 3},
		{"only negated hosts", "routes:\n" + route("a", "['!a']"), RuleInvalid, SeverityError, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Lint("catalog.yaml", []byte(tt.src))
			if tt.rule == "" {
				if len(fs) != 0 {
					t.Fatalf("want no findings, got %v", fs)
				}
				return
			}
			if len(fs) == 0 {
				t.Fatalf("want a %s finding, got none", tt.rule)
			}
			var got *Finding
			for i := range fs {
				if fs[i].Rule == tt.rule {
					got = &fs[i]
					break
				}
			}
			if got == nil {
				t.Fatalf("want rule %s, got %v", tt.rule, fs)
			}
			if got.Severity != tt.severity || got.Line != tt.line {
				t.Errorf("got %s, want severity %s at line %d", got, tt.severity, tt.line)
			}
			if got.Line > 0 && got.Col == 0 {
				t.Errorf("finding without a column: %s", got)
			}
		})
	}
}

// TestLoadAcceptsLintErrorsThatAreNotStructural: a shadowed route or an
// incomplete lane is reported by lint but does not stop the agent from
// loading the catalog (nor a reload from taking effect).
func TestLoadAcceptsNonStructuralFindings(t *testing.T) {
	src := "routes:\n" + route("all", "['*']") + route("db", "[db1]") + "lanes:\n  - need: x\n"
	if _, err := Parse("c.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if !HasErrors(Lint("c.yaml", []byte(src))) {
		t.Fatal("lint found no errors")
	}
}

func TestResolveSSHTarget(t *testing.T) {
	c := mustParse(t, goodCatalog)
	res, err := c.Resolve("ssh://deploy@db1.prod.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if res.Route.Name != "prod-db" || res.Principal != "deploy" || res.Route.Mount != "ssh" || res.Route.Role != "prod-db" || res.TTL.String() != "3m0s" {
		t.Errorf("got %+v", res)
	}
	if res.SSH.Port != 22 || res.SSH.User != "deploy" {
		t.Errorf("target %+v", res.SSH)
	}
	// A fixed principal: any user maps to it.
	res, err = c.Resolve("ssh://alice@box.lab.example.com:2222")
	if err != nil || res.Principal != "lab-admin" || res.SSH.Port != 2222 {
		t.Errorf("lab: %+v, %v", res, err)
	}
	// A user the route does not allow.
	res, err = c.Resolve("ssh://root@db1.prod.example.com")
	var pe *PrincipalError
	if !errors.As(err, &pe) || res == nil || res.Route.Name != "prod-db" {
		t.Errorf("root: %+v, %v", res, err)
	}
	if _, err := c.Resolve("ssh://deploy@elsewhere.org"); err == nil || !strings.Contains(err.Error(), "no route matches") {
		t.Errorf("no route: %v", err)
	}
	for _, bad := range []string{"ssh://db1", "ssh://u@h:99999", "ssh://u@h/path", "http://u@h"} {
		if _, err := ParseSSHTarget(bad); err == nil {
			t.Errorf("ParseSSHTarget(%q) succeeded", bad)
		}
	}
	if tg, err := ParseSSHTarget("ssh://u@[::1]:2200"); err != nil || tg.Host != "::1" || tg.Port != 2200 {
		t.Errorf("ipv6: %+v %v", tg, err)
	}
}

func TestResolveLane(t *testing.T) {
	c := mustParse(t, goodCatalog)
	res, err := c.Resolve("db-password")
	if err != nil {
		t.Fatal(err)
	}
	if res.Lane.Owner != "secrets-engine" || res.Command != "credential exec prod-db-readonly -- <command>" || len(res.Lacks) != 0 {
		t.Errorf("got %+v", res)
	}
	res, err = c.Resolve("openbao-token/warden-sign")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Lacks, []string{"playbook", "evidence"}) {
		t.Errorf("draft lane lacks %v", res.Lacks)
	}
	if _, err := c.Resolve("api-token"); err == nil || !strings.Contains(err.Error(), "known needs: db-password, openbao-token/warden-sign") {
		t.Errorf("unknown need: %v", err)
	}
}

func TestPromoteCheckDraftLane(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "playbook.md"), []byte("# steps\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "smoke.log"), nil, 0o644) // recorded but empty
	bin := filepath.Join(dir, "credential")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)

	lane := &Lane{Need: "x", Exec: "credential exec {id} -- {command}", Playbook: "playbook.md", Evidence: "smoke.log", Maturity: Draft}
	lookPath := func(f string) (string, error) {
		if f == "credential" {
			return bin, nil
		}
		return "", errors.New("not found")
	}
	items := PromoteCheck(lane, PromoteOptions{BaseDir: dir, LookPath: lookPath})
	want := map[string]bool{"owner named": false, "exec command runs": true, "playbook exists": true, "smoke evidence recorded": false}
	if len(items) != len(want) {
		t.Fatalf("items %v", items)
	}
	for _, it := range items {
		if it.OK != want[it.Name] {
			t.Errorf("%s: ok=%v (%s), want %v", it.Name, it.OK, it.Detail, want[it.Name])
		}
	}
	if Ready(items) {
		t.Error("Ready with unmet items")
	}

	lane.Owner = "credential-broker"
	os.WriteFile(filepath.Join(dir, "smoke.log"), []byte("ok\n"), 0o644)
	if items := PromoteCheck(lane, PromoteOptions{BaseDir: dir, LookPath: lookPath}); !Ready(items) {
		t.Errorf("not ready: %+v", items)
	}
	lane.Exec = "missing-tool get"
	if items := PromoteCheck(lane, PromoteOptions{BaseDir: dir, LookPath: lookPath}); items[1].OK {
		t.Errorf("missing program passed: %+v", items[1])
	}
}

type fakeRoles map[string]RoleInfo

func (f fakeRoles) ReadRole(_ context.Context, mount, role string) (RoleInfo, error) {
	info, ok := f[mount+"/"+role]
	if !ok {
		return RoleInfo{}, errors.New("role not found")
	}
	return info, nil
}

func TestDrift(t *testing.T) {
	c := mustParse(t, goodCatalog)
	roles := fakeRoles{
		"ssh/prod-db": {AllowedUsers: []string{"deploy", "root"}, DefaultUser: "deploy"}, // dba missing, root extra
		"ssh/prod":    {AllowedUsers: []string{"*"}},
	}
	rep, err := Drift(context.Background(), c, roles)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || len(rep.Routes) != 3 {
		t.Fatalf("report %+v", rep)
	}
	db := rep.Routes[0]
	if !slices.Equal(db.CatalogOnly, []string{"dba"}) || !slices.Equal(db.RoleOnly, []string{"root"}) {
		t.Errorf("prod-db drift %+v", db)
	}
	if prod := rep.Routes[1]; prod.Drifted() || !prod.RoleAllowsAll {
		t.Errorf("prod (allowed_users *) %+v", prod)
	}
	if lab := rep.Routes[2]; lab.Skipped == "" {
		t.Errorf("lab (local CA) %+v", lab)
	}

	roles["ssh/prod-db"] = RoleInfo{AllowedUsers: []string{"dba", "deploy"}}
	if rep, _ := Drift(context.Background(), c, roles); rep.Drift {
		t.Errorf("no drift expected: %+v", rep)
	}
	delete(roles, "ssh/prod")
	if rep, _ := Drift(context.Background(), c, roles); rep.Drift || !rep.Errors || rep.Routes[1].Error == "" {
		t.Errorf("an unreadable role is an error (incomplete check), not drift: %+v", rep)
	}
}

func TestExamplesPassLint(t *testing.T) {
	p := filepath.Join("..", "examples", "catalog.yaml")
	fs, err := LintFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Warnings are allowed (the example puts a narrow route above a broad
	// one on purpose, which lint reports as an overlap); errors are not.
	for _, f := range fs {
		if f.Severity == SeverityError {
			t.Errorf("%s", f)
		} else {
			t.Logf("%s", f)
		}
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func TestDefault(t *testing.T) {
	c := Default("alice")
	if r := c.RouteForHost("anything"); r == nil || !r.AllowsUser("alice") || r.AllowsUser("bob") {
		t.Errorf("default route %+v", r)
	}
}
