package policy

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/netkingdom/ops-warden/internal/sshmatch"
	"github.com/netkingdom/ops-warden/internal/yamlfile"
)

// MaxFileSize bounds a policy file; larger files are refused.
const MaxFileSize = yamlfile.MaxSize

// Load reads and validates a policy file. Errors name the file, line and
// column and what was expected, e.g.
//
//	policy.yaml:7:13: rule "ci": effect "alow" is not one of allow, deny, confirm
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates policy content; file names it in errors.
// Every problem is reported, each with its position.
func Parse(file string, data []byte) (*Policy, error) {
	p, _, err := Check(file, data)
	return p, err
}

// CheckFile is Check on a file (`policy check`).
func CheckFile(path string) (*Policy, yamlfile.Errors, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return Check(path, data)
}

// Check is Parse that also returns warnings: what loads but is weaker
// than it looks (a caller pattern by bare name).
func Check(file string, data []byte) (*Policy, yamlfile.Errors, error) {
	p := &Policy{}
	root, errs := yamlfile.Decode(file, data, p)
	var warns yamlfile.Errors
	if root != nil {
		var e yamlfile.Errors
		e, warns = validate(file, root, p)
		errs = append(errs, e...)
	}
	if len(errs) > 0 {
		return nil, warns, errs
	}
	p.path = file
	return p, warns, nil
}

// validate checks what the types cannot: effects, names, patterns, gate.
// It returns errors and warnings.
func validate(file string, root *yaml.Node, p *Policy) (yamlfile.Errors, yamlfile.Errors) {
	var errs, warns yamlfile.Errors
	at := func(path []any, format string, args ...any) {
		n := root
		for k := len(path); k >= 0; k-- {
			if x := yamlfile.Find(root, path[:k]...); x != nil {
				n = x
				break
			}
		}
		errs = append(errs, yamlfile.At(file, n, format, args...))
	}
	names := map[string]int{}
	for i := range p.Rules {
		r := &p.Rules[i]
		label := fmt.Sprintf("rule %d", i+1)
		if r.Name != "" {
			label = fmt.Sprintf("rule %q", r.Name)
		}
		switch r.Effect {
		case EffectAllow, EffectDeny, EffectConfirm:
		case "":
			at([]any{"rules", i}, "%s: no effect (write effect: allow, deny or confirm)", label)
		default:
			at([]any{"rules", i, "effect"}, "%s: effect %q is not one of allow, deny, confirm", label, r.Effect)
		}
		if r.Name != "" {
			if first, dup := names[r.Name]; dup {
				at([]any{"rules", i, "name"}, "duplicate rule name %q (first used by rule %d)", r.Name, first+1)
			}
			names[r.Name] = i
		}
		for _, f := range []struct {
			field string
			list  []string
		}{{"principals", r.Principals}, {"hosts", r.Hosts}, {"routes", r.Routes}, {"callers", r.Callers}} {
			if len(f.list) > 0 && len(sshmatch.Positive(f.list)) == 0 {
				at([]any{"rules", i, f.field}, "%s: %s has only negated patterns, so it matches nothing (add \"*\" first)", label, f.field)
			}
			for _, pat := range sshmatch.Split(f.list) {
				if strings.TrimPrefix(pat, "!") == "" {
					at([]any{"rules", i, f.field}, "%s: empty pattern in %s", label, f.field)
				}
			}
		}
		for j, pat := range r.Callers {
			for _, one := range sshmatch.Split([]string{pat}) {
				if strings.HasPrefix(one, "!") || strings.Contains(one, "/") || one == "" {
					continue
				}
				n := yamlfile.Find(root, "rules", i, "callers", j)
				if n == nil {
					n = yamlfile.Find(root, "rules", i)
				}
				warns = append(warns, yamlfile.At(file, n, "%s: caller %q has no /, so it matches any executable named %s in any directory (a copy in /tmp too); write the full path, e.g. %s", label, one, one, suggestPath(one)))
			}
		}
		if r.MaxTTL > 0 && r.Effect == EffectDeny {
			at([]any{"rules", i, "max_ttl"}, "%s: max_ttl on a deny rule has no effect", label)
		}
	}
	if g := p.Gate; g != nil {
		if g.Enabled {
			u, err := url.Parse(g.URL)
			if g.URL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				at([]any{"gate", "url"}, "gate: url %q must be an http:// or https:// URL when the gate is enabled", g.URL)
			}
		}
		switch g.OnError {
		case "", OnErrorDeny, OnErrorAllow:
		default:
			at([]any{"gate", "on_error"}, "gate: on_error %q is not one of deny, allow", g.OnError)
		}
	}
	return errs, warns
}

// suggestPath is the full path of a bare caller name on this machine, or
// a placeholder.
func suggestPath(name string) string {
	if strings.ContainsAny(name, "*?") {
		return "/usr/bin/" + name
	}
	if p, err := exec.LookPath(name); err == nil && filepath.IsAbs(p) {
		return p
	}
	return "/usr/bin/" + name
}
