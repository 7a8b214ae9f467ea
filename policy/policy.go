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
	// Hosts are ssh_config-style host patterns (*, ?, !negation).
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Routes are patterns for the catalog route name.
	Routes []string `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Callers are patterns for the programs in the caller's parent chain:
	// a pattern with a / matches the executable's path, one without
	// matches its base name (or the process name). Any program in the
	// chain may match, so "ops-bridge" matches ssh started by ops-bridge.
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
	Pid  int    `json:"pid"`
	Exe  string `json:"exe,omitempty"`  // /proc/PID/exe
	Name string `json:"name,omitempty"` // /proc/PID/comm
}

// Input is one request to decide.
type Input struct {
	// Subject is the local user the agent runs for.
	Subject string
	// Principal is the certificate principal asked for.
	Principal string
	// Host is the target host name.
	Host string
	// Route is the catalog route name.
	Route string
	// Callers is the caller's process chain, nearest first.
	Callers []Caller
	// Forwarded reports a request through a forwarded agent connection.
	Forwarded bool
	// Bound reports whether the client sent session-bind.
	Bound bool
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
		return d
	}
	return Decision{Effect: EffectDeny, Rule: DefaultRule, Reason: "no policy rule matched (default deny)"}
}

// mismatch returns why r does not match in, or "" when it matches.
func (r *Rule) mismatch(in Input) string {
	if len(r.Principals) > 0 && !sshmatch.List(r.Principals, in.Principal) {
		return fmt.Sprintf("principal %q not in %s", in.Principal, strings.Join(r.Principals, ","))
	}
	if len(r.Hosts) > 0 && !sshmatch.HostList(r.Hosts, in.Host) {
		return fmt.Sprintf("host %q not in %s", in.Host, strings.Join(r.Hosts, ","))
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

func callerMatches(pattern string, c Caller) bool {
	if strings.Contains(pattern, "/") {
		return c.Exe != "" && sshmatch.Pattern(pattern, c.Exe)
	}
	if c.Exe != "" && sshmatch.Pattern(pattern, filepath.Base(c.Exe)) {
		return true
	}
	return c.Name != "" && sshmatch.Pattern(pattern, c.Name)
}

func chainString(chain []Caller) string {
	parts := make([]string, 0, len(chain))
	for _, c := range chain {
		switch {
		case c.Exe != "":
			parts = append(parts, c.Exe)
		case c.Name != "":
			parts = append(parts, c.Name)
		default:
			parts = append(parts, fmt.Sprintf("pid %d", c.Pid))
		}
	}
	return strings.Join(parts, " < ")
}

// Explain evaluates in and says why: each earlier rule and why it did not
// match, then the deciding rule (or the default). It is what `warden-agent
// policy explain` prints.
func (p *Policy) Explain(in Input) string {
	var b strings.Builder
	fmt.Fprintf(&b, "request: principal %s on host %s", orDash(in.Principal), orDash(in.Host))
	if in.Route != "" {
		fmt.Fprintf(&b, " via route %s", in.Route)
	}
	fmt.Fprintf(&b, ", forwarded=%t, bound=%t\n", in.Forwarded, in.Bound)
	if len(in.Callers) > 0 {
		fmt.Fprintf(&b, "callers: %s\n", chainString(in.Callers))
	}
	if p.IsAllowAll() {
		b.WriteString("no policy file configured: the built-in policy allows every request (the catalog still limits principals)\n")
		return b.String()
	}
	if p.path != "" {
		fmt.Fprintf(&b, "policy: %s\n", p.path)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		why := r.mismatch(in)
		if why != "" {
			fmt.Fprintf(&b, "  %s (%s): no match: %s\n", r.label(i), r.Effect, why)
			continue
		}
		d := p.Evaluate(in)
		fmt.Fprintf(&b, "  %s (%s): MATCH\n", r.label(i), r.Effect)
		fmt.Fprintf(&b, "decision: %s by %s", d.Effect, d.Rule)
		if d.MaxTTL > 0 {
			fmt.Fprintf(&b, ", max_ttl %s", d.MaxTTL)
		}
		if r.Reason != "" {
			fmt.Fprintf(&b, ": %s", r.Reason)
		}
		b.WriteString("\n")
		p.explainAfter(&b, d)
		return b.String()
	}
	b.WriteString("decision: deny by default (no rule matched; add a rule that allows this request)\n")
	return b.String()
}

// explainAfter says what Decide would do after the rules.
func (p *Policy) explainAfter(b *strings.Builder, d Decision) {
	if d.Effect == EffectConfirm {
		b.WriteString("then: a confirmation is asked through SSH_ASKPASS; no answer in time is a deny\n")
	}
	if d.Effect != EffectDeny && p.Gate != nil && p.Gate.Enabled {
		fmt.Fprintf(b, "then: the gate %s is asked (on_error: %s)\n", p.Gate.URL, p.Gate.onError())
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
