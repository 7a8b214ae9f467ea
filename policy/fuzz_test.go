package policy

import (
	"strings"
	"testing"

	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

func FuzzLoadPolicy(f *testing.F) {
	f.Add([]byte(testPolicy))
	f.Add([]byte("rules:\n  - effect: alow\n    principle: x\ngate: {enabled: true, url: 'ftp://x', on_error: maybe}\n"))
	f.Add([]byte("rules: [{callers: ['*a*a*a*b', '!'], hosts: ['!x'], effect: confirm, max_ttl: -1s}]\n"))
	f.Add([]byte("x: &x {a: *x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxFileSize+1 {
			return
		}
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		in := Input{Principal: "deploy", Host: "db1.example.com", Route: "r", Callers: chain("/usr/bin/ssh", "/bin/sh")}
		d := p.Evaluate(in)
		switch d.Effect {
		case EffectAllow, EffectDeny, EffectConfirm:
		default:
			t.Fatalf("effect %q from a valid policy", d.Effect)
		}
		p.Explain(in)
	})
}

// TestRecordedPolicies: the example policy and the rules of docs/policy.md
// load.
func TestRecordedPolicies(t *testing.T) {
	for name, data := range fuzzseed.Recorded(t, "FuzzLoadPolicy", "") {
		if !strings.HasPrefix(name, "examples-") && !strings.HasPrefix(name, "docs-") {
			continue
		}
		if _, err := Parse(name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
