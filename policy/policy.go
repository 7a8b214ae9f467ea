// Package policy decides whether a caller may get a certificate for a
// principal on a host now, with what lifetime, and whether a person must
// confirm it first. A policy is an ordered list of rules read from a YAML
// file: the first rule that matches decides, and when none matches the
// answer is deny. An optional external gate (the organisation's decision
// service) is asked after the rules allow.
//
// When no policy file is configured the agent uses AllowAll: the catalog
// already limits which principals a route may issue for, and a fresh
// install must work without a policy.
package policy

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/netkingdom/ops-warden/internal/sshmatch"
)

// Effect is what a rule decides.
type Effect string

// Effects.
const (
	EffectAllow   Effect = "allow"
	EffectDeny    Effect = "deny"
	EffectConfirm Effect = "confirm"
)

// Duration is a time.Duration written as "10m" in YAML and JSON.
type Duration time.Duration

// UnmarshalText parses a Go duration such as "10m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a form like 10m or 1h)", string(b))
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go's form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Policy is a parsed policy file.
type Policy struct {
	// Rules are evaluated in order; the first match decides.
	Rules []Rule `yaml:"rules" json:"rules"`
	// Gate is the external decision service, asked after the rules allow.
	Gate *Gate `yaml:"gate,omitempty" json:"gate,omitempty"`

	path     string
	allowAll bool
}

// Rule matches a request and decides it. Every condition that is set must
// hold; a rule with no conditions matches everything (a catch-all).
type Rule struct {
	// Name identifies the rule in decisions and the audit log; unnamed
	// rules are called "rule N" (1-based).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Principals are patterns for the certificate principal.
	Principals []string `yaml:"principals,omitempty" json:"principals,omitempty"`
	// Hosts are ssh_config-style host patterns (*, ?, !negation) for the
	// hinted host, or, without a hint, for the names the host key is known
	// under. A target with no known name meets a deny rule but not an
	// allow or confirm rule (fail closed).
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Routes are patterns for the catalog route name.
	Routes []string `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Callers are patterns for the programs in the caller's parent chain,
	// always against the executable the kernel reports (/proc/PID/exe),
	// never the process name a program sets itself: a pattern with a /
	// matches the full path, one without only its base name (so any
	// binary of that name matches; prefer full paths). Any program in the
	// chain may match, so "/opt/ops/bin/ops-bridge" matches ssh started by
	// ops-bridge.
	Callers []string `yaml:"callers,omitempty" json:"callers,omitempty"`
	// Forwarded, when set, matches requests that did (true) or did not
	// (false) arrive through a forwarded agent connection.
	Forwarded *bool `yaml:"forwarded,omitempty" json:"forwarded,omitempty"`
	// Bound, when set, matches clients that did (true) or did not (false)
	// send session-bind@openssh.com.
	Bound *bool `yaml:"bound,omitempty" json:"bound,omitempty"`
	// Effect is allow, deny or confirm.
	Effect Effect `yaml:"effect" json:"effect"`
	// MaxTTL caps the certificate lifetime when this rule decides.
	MaxTTL Duration `yaml:"max_ttl,omitempty" json:"max_ttl,omitempty"`
	// Reason is shown to the user and written to the audit log.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// Caller is one process in the chain that asked: the agent's peer first,
// then its parent, and so on.
type Caller struct {
	Pid int    `json:"pid"`
	Exe string `json:"exe,omitempty"` // /proc/PID/exe, what rules match
	// Name is /proc/PID/comm, for messages only: a process sets its own
	// (prctl PR_SET_NAME), so no rule matches it.
	Name string `json:"name,omitempty"`
}

// Input is one request to decide.
type Input struct {
	// Subject is the local user the agent runs for.
	Subject string `json:"subject,omitempty"`
	// Principal is the certificate principal asked for.
	Principal string `json:"principal"`
	// Host is the target host name ssh hinted; empty when there was no
	// hint (a forwarded connection, a client without the ssh-config block).
	Host string `json:"host,omitempty"`
	// Hosts are the names resolved for the bound host key (route pins,
	// known_hosts, a verified host certificate); used when Host is empty.
	Hosts []string `json:"hosts,omitempty"`
	// Route is the catalog route name.
	Route string `json:"route,omitempty"`
	// Callers is the caller's process chain, nearest first.
	Callers []Caller `json:"callers,omitempty"`
	// Forwarded reports a request through a forwarded agent connection.
	Forwarded bool `json:"forwarded"`
	// Bound reports whether the client sent session-bind.
	Bound bool `json:"bound"`
}

// HostUnknown reports whether the target has no known name: no hint and
// no name for its host key.
func (in Input) HostUnknown() bool { return in.Host == "" && len(in.Hosts) == 0 }

// hostNames is what hosts rules are matched against.
func (in Input) hostNames() []string {
	if in.Host != "" {
		return []string{in.Host}
	}
	return in.Hosts
}

// Decision is the outcome for one Input.
type Decision struct {
	// Effect is the final answer: EffectAllow or EffectDeny (EffectConfirm only from
	// Evaluate, before the confirmation was asked).
	Effect Effect `json:"effect"`
	// Rule names the deciding rule: its name, "rule N", "default" when no
	// rule matched, or "allow-all" with no policy file.
	Rule string `json:"rule"`
	// Reason explains the decision for the user and the audit log.
	Reason string `json:"reason,omitempty"`
	// MaxTTL caps the certificate lifetime; 0 means no cap.
	MaxTTL time.Duration `json:"max_ttl,omitempty"`
	// Confirmed is set when a person confirmed through SSH_ASKPASS.
	Confirmed bool `json:"confirmed,omitempty"`
	// GateAllow is the gate's answer (nil: not asked).
	GateAllow *bool `json:"gate_allow,omitempty"`
	// GateReason is the gate's reason, or why asking failed.
	GateReason string `json:"gate_reason,omitempty"`
}

// DefaultRule names the decision when no rule matches.
const DefaultRule = "default"

// AllowAll returns the built-in policy used when no policy file is
// configured: every request is allowed (the catalog still limits the
// principals of each route) and no gate is asked.
func AllowAll() *Policy { return &Policy{allowAll: true} }

// IsAllowAll reports whether p is the built-in allow-all policy (or nil,
// which behaves the same).
func (p *Policy) IsAllowAll() bool { return p == nil || p.allowAll }

// Path returns the file the policy was loaded from, or "".
func (p *Policy) Path() string {
	if p == nil {
		return ""
	}
	return p.path
}

// label is the rule's name in decisions.
func (r *Rule) label(i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("rule %d", i+1)
}

// Evaluate decides in by the rules alone: no I/O, no confirmation asked,
// no gate. A nil or allow-all policy allows everything.
func (p *Policy) Evaluate(in Input) Decision {
	if p.IsAllowAll() {
		return Decision{Effect: EffectAllow, Rule: "allow-all", Reason: "no policy file configured"}
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.mismatch(in) != "" {
			continue
		}
		d := Decision{Effect: r.Effect, Rule: r.label(i), Reason: r.Reason, MaxTTL: time.Duration(r.MaxTTL)}
		if d.Reason == "" {
			d.Reason = fmt.Sprintf("%s by %s", r.Effect, d.Rule)
		}
		if len(r.Hosts) > 0 && in.HostUnknown() {
			// Say why a rule about other hosts refused this one.
			d.Reason += " (the target's host name is unknown, so a deny rule naming hosts applies)"
		}
		return d
	}
	return Decision{Effect: EffectDeny, Rule: DefaultRule, Reason: "no policy rule matched (default deny)"}
}

// mismatch returns why r does not match in, or "" when it matches.
func (r *Rule) mismatch(in Input) string {
	if len(r.Principals) > 0 && !sshmatch.List(r.Principals, in.Principal) {
		return fmt.Sprintf("principal %q not in %s", in.Principal, strings.Join(r.Principals, ","))
	}
	if len(r.Hosts) > 0 {
		if why := r.hostMismatch(in); why != "" {
			return why
		}
	}
	if len(r.Routes) > 0 && !sshmatch.List(r.Routes, in.Route) {
		return fmt.Sprintf("route %q not in %s", in.Route, strings.Join(r.Routes, ","))
	}
	if len(r.Callers) > 0 && !callersMatch(r.Callers, in.Callers) {
		return fmt.Sprintf("no caller in the chain [%s] matches %s", chainString(in.Callers), strings.Join(r.Callers, ","))
	}
	if r.Forwarded != nil && *r.Forwarded != in.Forwarded {
		return fmt.Sprintf("forwarded is %t, rule wants %t", in.Forwarded, *r.Forwarded)
	}
	if r.Bound != nil && *r.Bound != in.Bound {
		return fmt.Sprintf("bound is %t, rule wants %t", in.Bound, *r.Bound)
	}
	return ""
}

// hostMismatch matches the rule's hosts against the hinted host, else the
// names of the host key. A deny rule matches when any name does; an allow
// or confirm rule only when every name does (one name it excludes is
// enough to withhold the grant). With no name at all a deny rule matches
// and an allow or confirm rule does not: an unknown target fails closed.
func (r *Rule) hostMismatch(in Input) string {
	names := in.hostNames()
	if len(names) == 0 {
		if r.Effect == EffectDeny {
			return ""
		}
		return fmt.Sprintf("the target's host name is unknown (no hint, and no pin, known_hosts line or host certificate names its host key), so this %s rule naming hosts does not match", r.Effect)
	}
	var hit, out []string
	for _, n := range names {
		if sshmatch.HostList(r.Hosts, n) {
			hit = append(hit, n)
		} else {
			out = append(out, n)
		}
	}
	pats := strings.Join(r.Hosts, ",")
	switch {
	case len(names) == 1 && len(out) == 1:
		return fmt.Sprintf("host %q not in %s", names[0], pats)
	case r.Effect == EffectDeny && len(hit) == 0:
		return fmt.Sprintf("none of the host key's names %s is in %s", strings.Join(names, ", "), pats)
	case r.Effect != EffectDeny && len(out) > 0:
		return fmt.Sprintf("the host key's name %s is not in %s (this %s rule must cover every name)", strings.Join(out, ", "), pats, r.Effect)
	}
	return ""
}

// callersMatch applies ssh's pattern-list rule to the whole chain: some
// positive pattern must match some caller, and no negated pattern may
// match any caller (so "!gdb" refuses a request with a debugger anywhere
// above it).
func callersMatch(patterns []string, chain []Caller) bool {
	matched := false
	for _, p := range sshmatch.Split(patterns) {
		negate := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		for _, c := range chain {
			if !callerMatches(p, c) {
				continue
			}
			if negate {
				return false
			}
			matched = true
		}
	}
	return matched
}

// callerMatches matches the kernel-reported executable only: the comm
// name is the process's own choice, so matching it would let any program
// call itself ssh.
func callerMatches(pattern string, c Caller) bool {
	if c.Exe == "" {
		return false
	}
	if strings.Contains(pattern, "/") {
		return sshmatch.Pattern(pattern, c.Exe)
	}
	return sshmatch.Pattern(pattern, filepath.Base(c.Exe))
}

func chainString(chain []Caller) string {
	parts := make([]string, 0, len(chain))
	for _, c := range chain {
		switch {
		case c.Exe != "":
			parts = append(parts, c.Exe)
		case c.Name != "":
			parts = append(parts, fmt.Sprintf("pid %d %q (executable unreadable)", c.Pid, c.Name))
		default:
			parts = append(parts, fmt.Sprintf("pid %d", c.Pid))
		}
	}
	return strings.Join(parts, " < ")
}

// UnknownHostNotes says, for each rule naming hosts, what it does with a
// target that has no known name (no hint and a host key nothing names):
// what `policy check` prints so the fail-closed rule is never a surprise.
func (p *Policy) UnknownHostNotes() []string {
	if p.IsAllowAll() {
		return nil
	}
	var out []string
	for i := range p.Rules {
		r := &p.Rules[i]
		if len(r.Hosts) == 0 {
			continue
		}
		if r.Effect == EffectDeny {
			out = append(out, fmt.Sprintf("%s names hosts: it also denies a target whose host name is unknown (fail closed)", r.label(i)))
		} else {
			out = append(out, fmt.Sprintf("%s names hosts: it never %ss a target whose host name is unknown", r.label(i), r.Effect))
		}
	}
	return out
}

// Explanation is what `policy explain` reports: each rule up to the
// deciding one, and the decision.
type Explanation struct {
	Input Input `json:"input"`
	// Policy is the file, empty for the built-in allow-all policy.
	Policy   string `json:"policy,omitempty"`
	AllowAll bool   `json:"allow_all,omitempty"`
	// HostUnknown is set when the target has no known name: rules naming
	// hosts then match only if they deny.
	HostUnknown bool       `json:"host_unknown,omitempty"`
	Rules       []RuleStep `json:"rules"`
	Decision    Decision   `json:"decision"`
	// Then lists what Decide does after the rules (confirmation, gate).
	Then []string `json:"then,omitempty"`
}

// RuleStep is one rule as explain saw it.
type RuleStep struct {
	Rule   string `json:"rule"`
	Effect Effect `json:"effect"`
	Match  bool   `json:"match"`
	// Why says why it did not match, or for a match on a target with no
	// known name, that the deny rule matched failing closed.
	Why string `json:"why,omitempty"`
}

// unknownHostNote is what explain says about a deny rule naming hosts
// that matched a target with no known name.
const unknownHostNote = "the target's host name is unknown; a deny rule naming hosts matches it (fail closed)"

// ExplainSteps evaluates in and returns each rule up to the deciding one.
func (p *Policy) ExplainSteps(in Input) Explanation {
	ex := Explanation{Input: in, Policy: p.Path(), AllowAll: p.IsAllowAll(), HostUnknown: in.HostUnknown(), Rules: []RuleStep{}}
	ex.Decision = p.Evaluate(in)
	if p.IsAllowAll() {
		return ex
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		step := RuleStep{Rule: r.label(i), Effect: r.Effect, Why: r.mismatch(in)}
		step.Match = step.Why == ""
		if step.Match && len(r.Hosts) > 0 && in.HostUnknown() {
			step.Why = unknownHostNote
		}
		ex.Rules = append(ex.Rules, step)
		if step.Match {
			break
		}
	}
	if ex.Decision.Effect == EffectConfirm {
		ex.Then = append(ex.Then, "a confirmation is asked through SSH_ASKPASS; no answer in time is a deny")
	}
	if ex.Decision.Effect != EffectDeny && p.Gate != nil && p.Gate.Enabled {
		ex.Then = append(ex.Then, fmt.Sprintf("the gate %s is asked (on_error: %s)", p.Gate.URL, p.Gate.onError()))
	}
	return ex
}

// Explain evaluates in and says why: each earlier rule and why it did not
// match, then the deciding rule (or the default). It is what `warden-agent
// policy explain` prints.
func (p *Policy) Explain(in Input) string { return p.ExplainSteps(in).String() }

// String writes the explanation for a person.
func (ex Explanation) String() string {
	in := ex.Input
	var b strings.Builder
	host := orDash(in.Host)
	if in.Host == "" && len(in.Hosts) > 0 {
		host = "known by its host key as " + strings.Join(in.Hosts, ", ")
	} else if in.HostUnknown() {
		host = "(unknown: no hint and no name for its host key)"
	}
	fmt.Fprintf(&b, "request: principal %s on host %s", orDash(in.Principal), host)
	if in.Route != "" {
		fmt.Fprintf(&b, " via route %s", in.Route)
	}
	fmt.Fprintf(&b, ", forwarded=%t, bound=%t\n", in.Forwarded, in.Bound)
	if len(in.Callers) > 0 {
		fmt.Fprintf(&b, "callers: %s\n", chainString(in.Callers))
	}
	if ex.AllowAll {
		b.WriteString("no policy file configured: the built-in policy allows every request (the catalog still limits principals)\n")
		return b.String()
	}
	if ex.Policy != "" {
		fmt.Fprintf(&b, "policy: %s\n", ex.Policy)
	}
	if ex.HostUnknown {
		b.WriteString("note: the host name is unknown, so deny rules naming hosts match and allow or confirm rules naming hosts do not (fail closed)\n")
	}
	for _, st := range ex.Rules {
		if !st.Match {
			fmt.Fprintf(&b, "  %s (%s): no match: %s\n", st.Rule, st.Effect, st.Why)
			continue
		}
		if st.Why != "" {
			fmt.Fprintf(&b, "  %s (%s): MATCH: %s\n", st.Rule, st.Effect, st.Why)
		} else {
			fmt.Fprintf(&b, "  %s (%s): MATCH\n", st.Rule, st.Effect)
		}
	}
	d := ex.Decision
	if d.Rule == DefaultRule {
		b.WriteString("decision: deny by default (no rule matched; add a rule that allows this request)\n")
		return b.String()
	}
	fmt.Fprintf(&b, "decision: %s by %s", d.Effect, d.Rule)
	if d.MaxTTL > 0 {
		fmt.Fprintf(&b, ", max_ttl %s", d.MaxTTL)
	}
	if d.Reason != "" && !strings.HasPrefix(d.Reason, fmt.Sprintf("%s by %s", d.Effect, d.Rule)) {
		fmt.Fprintf(&b, ": %s", d.Reason)
	}
	b.WriteString("\n")
	for _, t := range ex.Then {
		fmt.Fprintf(&b, "then: %s\n", t)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
