package catalog

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/internal/sshmatch"
	"github.com/netkingdom/ops-warden/internal/yamlfile"
)

// Severity of a lint finding.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Lint rules, named in every Finding so a tool can tell them apart.
const (
	RuleSyntax           = "syntax"         // invalid YAML, wrong kind of value
	RuleUnknownField     = "unknown-field"  // a field the catalog does not have
	RuleInvalid          = "invalid"        // a required field missing or a value out of range
	RuleDuplicateName    = "duplicate-name" // two routes with one name, two lanes with one need
	RuleShadowedRoute    = "shadowed-route" // every host of a route is taken by earlier routes
	RuleOverlap          = "overlapping-routes"
	RuleLaneIncomplete   = "lane-incomplete"   // a lane without owner or exec
	RuleConcreteUnproven = "concrete-unproven" // a concrete lane without playbook or evidence
	RulePlaceholder      = "exec-placeholder"  // {name} in exec that nothing fills
	RuleEmpty            = "empty"             // no routes and no lanes
)

// Finding is one lint result, positioned in the file.
type Finding struct {
	Severity string `json:"severity"`
	Rule     string `json:"rule"`
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Message  string `json:"message"`
	blocking bool   // Load refuses the file
}

// String formats the finding as file:line:col: severity: message [rule].
func (f Finding) String() string {
	pos := f.File
	if f.Line > 0 {
		pos = fmt.Sprintf("%s:%d:%d", f.File, f.Line, f.Col)
	}
	return fmt.Sprintf("%s: %s: %s [%s]", pos, f.Severity, f.Message, f.Rule)
}

// HasErrors reports whether any finding is an error (lint exits 1).
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SeverityError {
			return true
		}
	}
	return false
}

// LintFile reads and lints a catalog file.
func LintFile(path string) ([]Finding, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Lint(path, data), nil
}

// Lint checks catalog content (named file in findings) and returns every
// finding in file order: errors for unknown fields, wrong values,
// duplicate names, routes shadowed by earlier ones, lanes without owner or
// exec and concrete lanes without playbook or evidence; warnings for
// overlapping routes.
func Lint(file string, data []byte) []Finding {
	_, fs := parse(file, data)
	return fs
}

// parse decodes and checks; it never panics on any input (FuzzLoadCatalog).
func parse(file string, data []byte) (*Catalog, []Finding) {
	c := &Catalog{}
	root, errs := yamlfile.Decode(file, data, c)
	var fs []Finding
	for _, e := range errs {
		rule := RuleSyntax
		if strings.HasPrefix(e.Msg, "unknown field") {
			rule = RuleUnknownField
		}
		fs = append(fs, Finding{Severity: SeverityError, Rule: rule, File: e.File, Line: e.Line, Col: e.Col, Message: e.Msg, blocking: true})
	}
	if root == nil {
		return c, fs
	}
	l := &linter{file: file, root: root}
	l.check(c)
	return c, append(fs, l.fs...)
}

type linter struct {
	file string
	root *yaml.Node
	fs   []Finding
}

func (l *linter) add(sev, rule string, blocking bool, path []any, format string, args ...any) {
	f := Finding{Severity: sev, Rule: rule, File: l.file, Message: fmt.Sprintf(format, args...), blocking: blocking}
	// Point at the field if it is written, else at the enclosing item.
	for n := len(path); n >= 0; n-- {
		if node := yamlfile.Find(l.root, path[:n]...); node != nil {
			if n == len(path) && n > 0 {
				if key := keyNode(l.root, path); key != nil {
					node = key
				}
			}
			f.Line, f.Col = node.Line, node.Column
			break
		}
	}
	l.fs = append(l.fs, f)
}

// keyNode returns the key node of the last path step when it is a field.
func keyNode(root *yaml.Node, path []any) *yaml.Node {
	name, ok := path[len(path)-1].(string)
	if !ok {
		return nil
	}
	parent := yamlfile.Find(root, path[:len(path)-1]...)
	if parent == nil || parent.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(parent.Content); i += 2 {
		if parent.Content[i].Value == name {
			return parent.Content[i]
		}
	}
	return nil
}

func (l *linter) check(c *Catalog) {
	if len(c.Routes) == 0 && len(c.Lanes) == 0 {
		l.add(SeverityWarning, RuleEmpty, false, nil, "catalog has no routes and no lanes")
	}
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		at := func(field ...any) []any { return append([]any{"routes", i}, field...) }
		label := r.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
		}
		switch {
		case r.Name == "":
			l.add(SeverityError, RuleInvalid, true, at(), "route %s has no name", label)
		default:
			if first, dup := names[r.Name]; dup {
				l.add(SeverityError, RuleDuplicateName, true, at("name"), "duplicate route name %q (first used by route %d)", r.Name, first+1)
			} else {
				names[r.Name] = i
			}
		}
		if len(r.Hosts) == 0 && len(r.HostKeys) == 0 && len(r.HostCA) == 0 {
			l.add(SeverityError, RuleInvalid, true, at(), "route %s has no hosts, host_keys or host_ca: nothing can select it", label)
		}
		if len(r.Principals) == 0 && r.Principal == "" {
			l.add(SeverityError, RuleInvalid, true, at(), "route %s has no principals (list the remote users it may issue for, or a fixed principal)", label)
		}
		if (r.Mount == "") != (r.Role == "") {
			l.add(SeverityError, RuleInvalid, true, at(), "route %s: mount and role go together (both for OpenBao, neither for the local CA)", label)
		}
		if !validMaturity(r.Maturity) {
			l.add(SeverityError, RuleInvalid, true, at("maturity"), "route %s: maturity %q is not one of concrete, draft, deprecated", label, r.Maturity)
		}
		for j, s := range r.HostKeys {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
				l.add(SeverityError, RuleInvalid, true, at("host_keys", j), "route %s: host_keys entry is not a public key (%v); write it as in known_hosts without the host name: \"ssh-ed25519 AAAA…\"", label, err)
			}
		}
		for j, s := range r.HostCA {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
				l.add(SeverityError, RuleInvalid, true, at("host_ca", j), "route %s: host_ca entry is not a public key (%v)", label, err)
			}
		}
		for j, p := range sshmatch.Split(r.Hosts) {
			if strings.TrimPrefix(p, "!") == "" {
				l.add(SeverityError, RuleInvalid, true, at("hosts", j), "route %s: empty host pattern", label)
			}
		}
		if len(sshmatch.Positive(r.Hosts)) == 0 && len(r.Hosts) > 0 {
			l.add(SeverityError, RuleInvalid, true, at("hosts"), "route %s: hosts has only negated patterns, so it matches nothing (add a positive pattern such as \"*\")", label)
		}
	}
	l.checkShadows(c)
	needs := map[string]int{}
	for i := range c.Lanes {
		ln := &c.Lanes[i]
		at := func(field ...any) []any { return append([]any{"lanes", i}, field...) }
		label := ln.Need
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
			l.add(SeverityError, RuleInvalid, true, at(), "lane %s has no need (name the credential need, e.g. db-password)", label)
		} else if first, dup := needs[ln.Need]; dup {
			l.add(SeverityError, RuleDuplicateName, true, at("need"), "duplicate lane need %q (first used by lane %d)", ln.Need, first+1)
		} else {
			needs[ln.Need] = i
		}
		if !validMaturity(ln.Maturity) {
			l.add(SeverityError, RuleInvalid, true, at("maturity"), "lane %s: maturity %q is not one of concrete, draft, deprecated", label, ln.Maturity)
		}
		if strings.TrimSpace(ln.Owner) == "" {
			l.add(SeverityError, RuleLaneIncomplete, false, at(), "lane %s has no owner (name the system that holds the credential)", label)
		}
		if strings.TrimSpace(ln.Exec) == "" {
			l.add(SeverityError, RuleLaneIncomplete, false, at(), "lane %s has no exec (the command that obtains the credential from its owner)", label)
		}
		if ln.Level() == Concrete {
			if strings.TrimSpace(ln.Playbook) == "" {
				l.add(SeverityError, RuleConcreteUnproven, false, at("maturity"), "concrete lane %s has no playbook (add one, or mark it draft)", label)
			}
			if strings.TrimSpace(ln.Evidence) == "" {
				l.add(SeverityError, RuleConcreteUnproven, false, at("maturity"), "concrete lane %s has no evidence (record where its smoke test is, or mark it draft)", label)
			}
		}
		if bad := ln.unknownPlaceholders(); len(bad) > 0 {
			l.add(SeverityWarning, RulePlaceholder, false, at("exec"), "lane %s: exec uses %s, which nothing fills (known: {id}, {command})", label, strings.Join(bad, ", "))
		}
	}
}

// checkShadows reports routes that host lookups can never reach, and
// routes whose host patterns overlap an earlier route's. The check is
// conservative: shadowed is reported only when every positive pattern of
// the later route is provably covered by an earlier route without
// negations; a route that pins host keys or a host CA is still reachable
// through them and is never called shadowed.
func (l *linter) checkShadows(c *Catalog) {
	for j := range c.Routes {
		b := &c.Routes[j]
		bPos := lower(sshmatch.Positive(b.Hosts))
		if len(bPos) == 0 {
			continue
		}
		var coveredBy []string
		uncovered := false
		for _, p := range bPos {
			by := ""
			for i := range j {
				a := &c.Routes[i]
				if sshmatch.HasNegation(a.Hosts) {
					continue
				}
				for _, q := range lower(sshmatch.Positive(a.Hosts)) {
					if sshmatch.Covers(q, p) {
						by = a.Name
						break
					}
				}
				if by != "" {
					break
				}
			}
			if by == "" {
				uncovered = true
				break
			}
			coveredBy = appendUnique(coveredBy, by)
		}
		if !uncovered && len(b.HostKeys) == 0 && len(b.HostCA) == 0 {
			l.add(SeverityError, RuleShadowedRoute, false, []any{"routes", j, "hosts"},
				"route %s is shadowed: every host it matches is matched first by route %s (first match wins; move it above, or narrow the earlier route with !patterns)",
				b.Name, strings.Join(coveredBy, ", "))
			continue
		}
		for i := range j {
			a := &c.Routes[i]
			if p, q, ok := overlap(a.Hosts, b.Hosts); ok {
				l.add(SeverityWarning, RuleOverlap, false, []any{"routes", j, "hosts"},
					"route %s overlaps route %s (%q and %q can match the same host); %s wins for such hosts",
					b.Name, a.Name, q, p, a.Name)
			}
		}
	}
}

// overlap reports two positive patterns, one from each route, that can
// match the same host. A literal host is checked against the other
// route's whole list, negations included; between two wildcard patterns
// negations are ignored, so this may over-report. It is a warning.
func overlap(a, b []string) (string, string, bool) {
	for _, q := range lower(sshmatch.Positive(b)) {
		if isLiteral(q) {
			if sshmatch.HostList(a, q) && sshmatch.HostList(b, q) {
				return q, q, true
			}
			continue
		}
		for _, p := range lower(sshmatch.Positive(a)) {
			if isLiteral(p) {
				if sshmatch.HostList(a, p) && sshmatch.HostList(b, p) {
					return p, q, true
				}
				continue
			}
			if sshmatch.Intersect(p, q) {
				return p, q, true
			}
		}
	}
	return "", "", false
}

func isLiteral(p string) bool { return !strings.ContainsAny(p, "*?") }

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

func appendUnique(ss []string, s string) []string {
	for _, x := range ss {
		if x == s {
			return ss
		}
	}
	return append(ss, s)
}
