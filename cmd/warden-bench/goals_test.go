package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/audit"
)

// A goal is met only when the measured figure meets it: not measured is
// never met, and the boundary follows the goal's own comparison.
func TestGoalMetOnlyWhenTheFigureMeetsIt(t *testing.T) {
	for _, c := range []struct {
		g    goal
		met  string
		got  string
		want string
	}{
		{ratioGoal("login", 1.02, 1, 1.02, false), "yes", "1.020×", "≤ 1.02×"},
		{ratioGoal("login", 1.0201, 1, 1.02, false), "**no**", "1.020×", "≤ 1.02×"},
		{ratioGoal("login", 0, 1, 1.02, false), "not measured", "—", "≤ 1.02×"},
		{ratioGoal("sign", 0.8, 1, 0.8, true), "yes", "0.800×", "≥ 0.8×"},
		{ratioGoal("sign", 0.7999, 1, 0.8, true), "**no**", "0.800×", "≥ 0.8×"},
		{ratioGoal("sign", 5, 0, 5, true), "not measured", "—", "≥ 5×"},
		{limitGoal("rss", 16, true, 16, "KiB", true), "**no**", "16.00 KiB", "< 16 KiB"},
		{limitGoal("rss", 15.9, true, 16, "KiB", true), "yes", "15.90 KiB", "< 16 KiB"},
		{limitGoal("hint", 5, true, 5, "ms", false), "yes", "5.00 ms", "≤ 5 ms"},
		{limitGoal("hint", 1, false, 5, "ms", false), "not measured", "—", "≤ 5 ms"},
	} {
		if c.g.met != c.met || c.g.got != c.got || c.g.want != c.want {
			t.Errorf("%s: got (%q, %q, %q), want (%q, %q, %q)", c.g.what, c.g.got, c.g.want, c.g.met, c.got, c.want, c.met)
		}
	}
}

// The goals table of a run that measured only the hint says so for every
// other goal instead of marking it met.
func TestGoalsTableMarksUnmeasuredGoals(t *testing.T) {
	r := &reporter{}
	r.recs = []*record{
		{Bench: "hint", Target: "warden-agent hint", Ops: 10, P50us: 9000, ClientCPU: 6000},
		{Bench: "hint", Target: "/bin/true", Ops: 10, P50us: 2000, ClientCPU: 1000},
	}
	var b strings.Builder
	r.writeGoals(&b, func(string, string, int) agg { return agg{} }, nil)
	out := b.String()
	for _, want := range []string{
		"| hint (the ssh-config Match exec line) − `/bin/true`, p50 wall | 7.00 ms | ≤ 5 ms | **no** |",
		"| hint (the ssh-config Match exec line) − `/bin/true`, mean CPU (user+sys, children incl.) | 5.00 ms | ≤ 3 ms | **no** |",
		"| ssh login, warden / ssh-agent, 200 concurrent | — | ≤ 1.02× | not measured |",
		"| warden RSS holding 100 routes' certificates | — | < 32 MiB | not measured |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("goals table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| yes |") {
		t.Errorf("a goal is marked met in a run that met none:\n%s", out)
	}
}

// auditEvents counts the records a real audit log holds, by event.
func TestAuditEventsCountsARealLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if m, err := auditEvents(path); err != nil || len(m) != 0 {
		t.Fatalf("a log not written yet: got %v, %v; want no records", m, err)
	}
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"hint", "hint", "cert.issued", "hint"} {
		if _, err := l.Append(context.Background(), ev, map[string]any{"host": "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := auditEvents(path)
	if err != nil {
		t.Fatal(err)
	}
	if m["hint"] != 3 || m["cert.issued"] != 1 {
		t.Fatalf("counted %v, want hint×3 and cert.issued×1 (plus whatever the log writes itself)", m)
	}
}

// The pacer lets a burst within its budget through at once and holds the
// hints beyond it until the agent's rate has refilled them.
func TestPacerStaysUnderTheHintRate(t *testing.T) {
	p := &pacer{}
	t0 := time.Now()
	p.wait(hintBudget)
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Fatalf("a burst within the budget waited %v", d)
	}
	p.wait(5) // 5 more at 50/s: about 100 ms
	if d := time.Since(t0); d < 90*time.Millisecond {
		t.Fatalf("5 hints past the budget went after %v, want ≥ 100 ms at %d/s", d, hintRate)
	}
}
