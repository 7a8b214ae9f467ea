package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// goal is one goal of issue 17 against this run's figure. A goal is met
// only when the measured figure meets it; a figure not measured in this
// run is "not measured", never met.
type goal struct {
	what, got, want, met string
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// ratioGoal: num/den at least (or at most) want.
func ratioGoal(what string, n, d, want float64, atLeast bool) goal {
	g := goal{what: what, want: "≤ " + num(want) + "×"}
	if atLeast {
		g.want = "≥ " + num(want) + "×"
	}
	if n == 0 || d == 0 {
		return goal{what: what, got: "—", want: g.want, met: "not measured"}
	}
	x := n / d
	g.got = fmt.Sprintf("%.3f×", x)
	g.met = yesNo(atLeast && x >= want || !atLeast && x <= want)
	return g
}

// limitGoal: x (in unit) below (or at most) limit; ok false when not measured.
func limitGoal(what string, x float64, ok bool, limit float64, unit string, strict bool) goal {
	op := "≤ "
	if strict {
		op = "< "
	}
	g := goal{what: what, want: strings.TrimSpace(op + num(limit) + " " + unit)}
	if !ok {
		g.got, g.met = "—", "not measured"
		return g
	}
	g.got = strings.TrimSpace(fmt.Sprintf("%.2f %s", x, unit))
	g.met = yesNo(x < limit || !strict && x == limit)
	return g
}

// medianOf is the median of f over the records matching match.
func (r *reporter) medianOf(match func(*record) bool, f func(*record) float64) (float64, int) {
	var xs []float64
	for _, rec := range r.recs {
		if match(rec) {
			xs = append(xs, f(rec))
		}
	}
	return median(xs), len(xs)
}

func (r *reporter) find(match func(*record) bool) *record {
	for _, rec := range r.recs {
		if match(rec) {
			return rec
		}
	}
	return nil
}

// hintDiff is the hint phase's hint − /bin/true: p50 wall and mean client
// CPU, in ms.
func (r *reporter) hintDiff() (wall, cpu float64, ok bool) {
	h := r.find(func(x *record) bool { return x.Bench == "hint" && x.Target == "warden-agent hint" })
	t := r.find(func(x *record) bool { return x.Bench == "hint" && x.Target == "/bin/true" })
	if h == nil || t == nil || h.Ops == 0 || t.Ops == 0 {
		return 0, 0, false
	}
	return (h.P50us - t.P50us) / 1e3, (h.ClientCPU - t.ClientCPU) / 1e3, true
}

// burstSize is the concurrency of the burst phase's records, or 0.
func (r *reporter) burstSize() int {
	for _, rec := range r.recs {
		if rec.Bench == "login" && rec.Clients > 1 {
			return rec.Clients
		}
	}
	return 0
}

func (r *reporter) loginMedian(target string, clients int) float64 {
	v, _ := r.medianOf(func(x *record) bool {
		return x.Bench == "login" && x.Target == target && x.Clients == clients && x.Ops > 0
	},
		func(x *record) float64 { return x.P50us })
	return v
}

func (r *reporter) makespan(target string, clients int) float64 {
	v, _ := r.medianOf(func(x *record) bool {
		return x.Bench == "login" && x.Target == target && x.Clients == clients && x.Ops > 0
	},
		func(x *record) float64 { return x.MakespanMs })
	return v
}

// loginCPU is the median over batches of client + agent CPU per login, µs.
func (r *reporter) loginCPU(target string, clients int) float64 {
	v, _ := r.medianOf(func(x *record) bool {
		return x.Bench == "login" && x.Target == target && x.Clients == clients && x.Ops > 0
	},
		func(x *record) float64 { return x.ClientCPU + x.AgentCPU })
	return v
}

// writeGoals writes the table of issue 17's goals, one row each.
func (r *reporter) writeGoals(b *strings.Builder, sign func(target, audit string, n int) agg, clients []int) {
	var gs []goal
	wall, cpu, ok := r.hintDiff()
	gs = append(gs,
		limitGoal("hint (the ssh-config Match exec line) − `/bin/true`, p50 wall", wall, ok, 5, "ms", false),
		limitGoal("hint (the ssh-config Match exec line) − `/bin/true`, mean CPU (user+sys, children incl.)", cpu, ok, 3, "ms", false),
		ratioGoal("ssh login median, warden (with the ssh-config block) / ssh-agent, 1 client", r.loginMedian("warden-cert", 1), r.loginMedian("ssh-agent", 1), 1.02, false))
	if n := r.burstSize(); n > 0 {
		gs = append(gs,
			ratioGoal(fmt.Sprintf("ssh login median, warden / ssh-agent, %d concurrent", n), r.loginMedian("warden-cert", n), r.loginMedian("ssh-agent", n), 1.02, false),
			ratioGoal(fmt.Sprintf("ssh login batch makespan, warden / ssh-agent, %d concurrent", n), r.makespan("warden-cert", n), r.makespan("ssh-agent", n), 1.02, false),
			// With every core busy, wall time follows CPU; the CPU
			// ratio is steadier than the wall ratio when neighbours
			// share the machine.
			ratioGoal(fmt.Sprintf("client + agent CPU per login, warden / ssh-agent, %d concurrent (what bounds the wall time when the cores are saturated; sshd's CPU, the same for both, not counted)", n),
				r.loginCPU("warden-cert", n), r.loginCPU("ssh-agent", n), 1.02, false))
	} else {
		gs = append(gs, goal{what: "ssh login, warden / ssh-agent, 200 concurrent", got: "—", want: "≤ 1.02×", met: "not measured"})
	}
	mw := r.find(func(x *record) bool { return x.Bench == "master" && x.Target == "warden-cert" })
	ms := r.find(func(x *record) bool { return x.Bench == "master" && x.Target == "ssh-agent" })
	if mw != nil && mw.Ops > 0 {
		total := 0
		for _, n := range mw.Events {
			total += n
		}
		g := limitGoal("audit records per session riding a ControlMaster ("+eventList(mw.Events)+")", float64(total)/float64(mw.Ops), true, 0, "", false)
		g.want = "0 (no hint work)"
		gs = append(gs, g)
		if ms != nil && ms.Ops > 0 {
			gs = append(gs, limitGoal("riding-session p50 wall, warden − ssh-agent (\"a cheap check\", read as the hint's 5 ms)", (mw.P50us-ms.P50us)/1e3, true, 5, "ms", false))
		}
	} else {
		gs = append(gs, goal{what: "sessions riding a ControlMaster: hint work", got: "—", want: "0 (no hint work)", met: "not measured"})
	}
	for _, n := range []int{1, 8, 64} {
		want := 1.0
		if n == 1 {
			want = 0.8
		}
		if !slices.Contains(clients, n) {
			continue
		}
		gs = append(gs, ratioGoal(fmt.Sprintf("cached-cert sign / bare keyring, %s, audit on tmpfs", plural(n, "client")),
			sign("warden-cert", auditTmpfs, n).ops, sign("keyring", "", n).ops, want, true))
	}
	for _, c := range []struct {
		n    int
		want float64
	}{{1, 1.2}, {64, 5}} {
		if slices.Contains(clients, c.n) {
			gs = append(gs, ratioGoal(fmt.Sprintf("cached-cert sign, audit fsync on disk / ssh-agent, %s", plural(c.n, "client")),
				sign("warden-cert", auditDisk, c.n).ops, sign("ssh-agent", "", c.n).ops, c.want, true))
		}
	}
	for _, n := range []int{1, 8, 64} {
		if slices.Contains(clients, n) {
			gs = append(gs, ratioGoal(fmt.Sprintf("proxied sign / ssh-agent, %s, audit fsync on disk", plural(n, "client")),
				sign("warden-proxy", auditDisk, n).ops, sign("ssh-agent", "", n).ops, 0.9, true))
		}
	}
	for _, k := range []int{1, 10, 100} {
		sa := r.agg(func(x *record) bool { return x.Bench == "list" && x.Target == "ssh-agent" && x.Keys == k })
		w := r.agg(func(x *record) bool { return x.Bench == "list" && x.Target == "warden-proxy" && x.Keys == k })
		if sa.n > 0 {
			gs = append(gs, ratioGoal(fmt.Sprintf("`ssh-add -l` through warden / ssh-agent, %s", plural(k, "key")), w.ops, sa.ops, 0.8, true))
		}
	}
	rw := r.agg(func(x *record) bool { return x.Bench == "rss" && x.Target == "warden" })
	gs = append(gs, limitGoal("warden RSS per idle connection", rw.perConn, rw.n > 0, 16, "KiB", true))
	rr := r.find(func(x *record) bool { return x.Bench == "rss" && x.Routes > 0 })
	g := limitGoal("warden RSS holding 100 routes' certificates", 0, false, 32, "MiB", true)
	if rr != nil {
		g = limitGoal(fmt.Sprintf("warden RSS holding %d routes' certificates (%d held)", rr.Routes, rr.Ops), float64(rr.RSSAfter)/1024, rr.Ops == rr.Routes, 32, "MiB", true)
	}
	gs = append(gs, g)

	b.WriteString("## Goals of issue 17\n\n| measurement | this run | goal | met |\n|---|--:|--:|:-:|\n")
	for _, g := range gs {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", g.what, g.got, g.want, g.met)
	}
	b.WriteString("\nA goal is met only when this run's figure meets it; ratios are of figures measured in this run.\n\n")
}

// writeSSH writes the hint, login and ControlMaster tables.
func (r *reporter) writeSSH(b *strings.Builder) {
	ms := func(us float64) string { return fmt.Sprintf("%.1f", us/1e3) }
	if h := r.find(func(x *record) bool { return x.Bench == "hint" }); h != nil {
		b.WriteString("## The hint as ssh's Match exec runs it (the line `warden-agent ssh-config` prints: `warden-hint` when installed beside warden-agent) (`/bin/sh -c`, sequential, interleaved with `/bin/sh -c /bin/true`)\n\n" +
			"| process | runs | p50 ms | p90 ms | mean client CPU ms | agent CPU ms per run | errors |\n|---|--:|--:|--:|--:|--:|--:|\n")
		for _, rec := range r.recs {
			if rec.Bench == "hint" {
				fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %d %s |\n", rec.Target, rec.Ops, ms(rec.P50us), ms(rec.P90us), ms(rec.ClientCPU), ms(rec.AgentCPU), rec.Errors, rec.FirstErr)
			}
		}
		if wall, cpu, ok := r.hintDiff(); ok {
			fmt.Fprintf(b, "\nhint − true: %.1f ms wall (p50), %.1f ms CPU (mean).\n", wall, cpu)
		}
		b.WriteString("\n")
	}
	var logins []*record
	for _, rec := range r.recs {
		if rec.Bench == "login" {
			logins = append(logins, rec)
		}
	}
	if len(logins) > 0 {
		b.WriteString("## Full `ssh user@127.0.0.1 true` login to a loopback sshd\n\n" +
			"warden: the ssh config holds the block `warden-agent ssh-config` prints (each login runs the hint); ssh-agent: the same config without it. " +
			"Concurrent batches: median over the measured batches of each batch's figure.\n\n" +
			"| agent | concurrent | logins | median ms | p90 ms | batch makespan ms | client CPU ms/login | agent CPU ms/login | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		var conc []int
		for _, rec := range logins {
			if !slices.Contains(conc, rec.Clients) {
				conc = append(conc, rec.Clients)
			}
		}
		slices.Sort(conc)
		for _, n := range conc {
			for _, t := range []string{"warden-cert", "ssh-agent"} {
				match := func(x *record) bool { return x.Bench == "login" && x.Target == t && x.Clients == n }
				a := r.agg(match)
				if a.n == 0 {
					continue
				}
				f := func(g func(*record) float64) float64 { v, _ := r.medianOf(match, g); return v }
				ops := 0
				for _, rec := range logins {
					if match(rec) {
						ops += rec.Ops
					}
				}
				span := "—"
				if n > 1 {
					span = fmt.Sprintf("%.0f", f(func(x *record) float64 { return x.MakespanMs }))
				}
				fmt.Fprintf(b, "| %s | %d | %d | %s | %s | %s | %s | %s | %.0f |\n", t, n, ops, ms(a.p50), ms(f(func(x *record) float64 { return x.P90us })), span,
					ms(f(func(x *record) float64 { return x.ClientCPU })), ms(a.cpu), a.errs)
			}
		}
		b.WriteString("\n")
	}
	if rec := r.find(func(x *record) bool { return x.Bench == "master" }); rec != nil {
		b.WriteString("## Sessions riding a live ControlMaster (`ssh -o ControlPath=… true`, sequential, alternating)\n\n" +
			"| agent | sessions | median ms | p90 ms | client CPU ms | agent CPU ms/session | audit records written | new sshd logins | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, rec := range r.recs {
			if rec.Bench == "master" {
				ev := "—"
				if rec.Target == "warden-cert" {
					ev = eventList(rec.Events)
				}
				fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %d | %d %s |\n", rec.Target, rec.Ops, ms(rec.P50us), ms(rec.P90us), ms(rec.ClientCPU), ms(rec.AgentCPU), ev, rec.SSHDLogins, rec.Errors, rec.FirstErr)
			}
		}
		b.WriteString("\n")
	}
}
