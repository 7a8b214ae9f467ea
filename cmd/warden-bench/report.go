package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Audit placements of a warden under test.
const (
	auditDisk  = "disk-fsync"
	auditTmpfs = "tmpfs (fsync ~free)"
)

// meta identifies the run; it is repeated in every record.
type meta struct {
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	OpenSSH string `json:"openssh"`
	Kernel  string `json:"kernel"`
	CPUs    int    `json:"cpus"`
	Started string `json:"started"`
}

func collectMeta() meta {
	m := meta{Go: runtime.Version(), CPUs: runtime.NumCPU(), Started: time.Now().UTC().Format(time.RFC3339)}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += "-dirty"
		}
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m.OpenSSH = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// record is one measurement: one JSON line.
type record struct {
	meta
	Time       string  `json:"time"`
	Bench      string  `json:"bench"`  // sign, list, jit, rss, login
	Target     string  `json:"target"` // ssh-agent, keyring, warden-cert, warden-proxy, warden
	Audit      string  `json:"audit,omitempty"`
	Key        string  `json:"key,omitempty"`
	Issuer     string  `json:"issuer,omitempty"`
	Mode       string  `json:"mode,omitempty"`
	Clients    int     `json:"clients"`
	Keys       int     `json:"keys,omitempty"`
	Rep        int     `json:"rep,omitempty"`
	ElapsedS   float64 `json:"elapsed_s,omitempty"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	FirstErr   string  `json:"first_error,omitempty"`
	OpsPerSec  float64 `json:"ops_per_s,omitempty"`
	P50us      float64 `json:"p50_us,omitempty"`
	P90us      float64 `json:"p90_us,omitempty"`
	P99us      float64 `json:"p99_us,omitempty"`
	AgentCPU   float64 `json:"agent_cpu_us_per_op,omitempty"`
	UpCPU      float64 `json:"upstream_cpu_us_per_op,omitempty"`
	RSSBefore  int64   `json:"rss_before_kib,omitempty"`
	RSSAfter   int64   `json:"rss_after_kib,omitempty"`
	PerConnKiB float64 `json:"rss_per_conn_kib,omitempty"`
	Note       string  `json:"note,omitempty"`
}

// reporter writes records as they come and the table at the end.
type reporter struct {
	dir  string
	meta meta
	f    *os.File
	w    *bufio.Writer
	recs []*record
}

func newReporter(dir string, m meta) (*reporter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "latest.jsonl"))
	if err != nil {
		return nil, err
	}
	return &reporter{dir: dir, meta: m, f: f, w: bufio.NewWriter(f)}, nil
}

func (r *reporter) close() {
	r.w.Flush()
	r.f.Close()
}

func (r *reporter) base(bench, target string) *record {
	return &record{meta: r.meta, Time: time.Now().UTC().Format(time.RFC3339), Bench: bench, Target: target}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func (r *reporter) fromSample(bench, target string, s *sample, agent, upstream *proc) *record {
	rec := r.base(bench, target)
	rec.Ops, rec.Errors, rec.FirstErr = s.Ops, s.Errors, s.FirstErr
	rec.ElapsedS = s.Elapsed.Seconds()
	if s.Elapsed > 0 {
		rec.OpsPerSec = s.opsPerSec()
	}
	rec.P50us, rec.P90us, rec.P99us = us(s.pct(0.50)), us(s.pct(0.90)), us(s.pct(0.99))
	if agent != nil {
		rec.AgentCPU = s.cpuPerOp(agent.name)
	}
	if upstream != nil {
		rec.UpCPU = s.cpuPerOp(upstream.name)
	}
	return rec
}

func (r *reporter) add(rec *record) {
	r.recs = append(r.recs, rec)
	b, _ := json.Marshal(rec)
	r.w.Write(append(b, '\n'))
	r.w.Flush()
	desc := rec.Target
	for _, s := range []string{rec.Audit, rec.Issuer, rec.Mode} {
		if s != "" {
			desc += " " + s
		}
	}
	fmt.Fprintf(os.Stderr, "   %-5s %-44s c=%-4d k=%-3d rep=%d ops/s=%9.0f p50=%8.0fµs p99=%8.0fµs cpu/op=%6.1fµs err=%d %s\n",
		rec.Bench, desc, rec.Clients, rec.Keys, rec.Rep, rec.OpsPerSec, rec.P50us, rec.P99us, rec.AgentCPU, rec.Errors, rec.FirstErr)
}

// agg is the median over repetitions of the records matching a filter.
type agg struct {
	n                    int
	ops, p50, p99, cpu   float64
	upCPU, errs, perConn float64
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func (r *reporter) agg(match func(*record) bool) agg {
	var ops, p50, p99, cpu, up, perConn []float64
	a := agg{}
	for _, rec := range r.recs {
		if !match(rec) {
			continue
		}
		a.n++
		ops, p50, p99 = append(ops, rec.OpsPerSec), append(p50, rec.P50us), append(p99, rec.P99us)
		cpu, up, perConn = append(cpu, rec.AgentCPU), append(up, rec.UpCPU), append(perConn, rec.PerConnKiB)
		a.errs += float64(rec.Errors)
	}
	a.ops, a.p50, a.p99, a.cpu, a.upCPU, a.perConn = median(ops), median(p50), median(p99), median(cpu), median(up), median(perConn)
	return a
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// writeTable writes latest.md: medians over repetitions, and the ratios
// issue 7 names, each beside its expectation (reported, not asserted).
func (r *reporter) writeTable() error {
	var b strings.Builder
	m := r.meta
	fmt.Fprintf(&b, "# warden-bench results\n\n%s · %s · commit %s · %d CPUs · kernel %s · %s\n\n", m.Go, m.OpenSSH, m.Commit, m.CPUs, m.Kernel, m.Started)
	fmt.Fprintf(&b, "Medians over repetitions. Latencies in µs; CPU is the agent process's user+system time per operation "+
		"(for warden-proxy, + the upstream ssh-agent's). The load generator runs on the same cores.\n\n")

	sign := func(target, audit string, n int) agg {
		return r.agg(func(x *record) bool {
			return x.Bench == "sign" && x.Target == target && x.Audit == audit && x.Clients == n
		})
	}
	var clients []int
	for _, rec := range r.recs {
		if rec.Bench == "sign" && !slices.Contains(clients, rec.Clients) {
			clients = append(clients, rec.Clients)
		}
	}
	slices.Sort(clients)
	if len(clients) > 0 {
		b.WriteString("## Signing (ed25519, hostbound userauth data)\n\n| agent | audit | clients | ops/s | p50 | p99 | agent CPU µs/op | upstream CPU µs/op | errors |\n|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, t := range []struct{ name, audit string }{{"ssh-agent", ""}, {"keyring", ""}, {"warden-cert", auditDisk}, {"warden-cert", auditTmpfs}, {"warden-proxy", auditDisk}, {"warden-proxy", auditTmpfs}} {
			for _, n := range clients {
				a := sign(t.name, t.audit, n)
				if a.n == 0 {
					continue
				}
				fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.0f |\n", t.name, dash(t.audit), n, a.ops, a.p50, a.p99, a.cpu, a.upCPU, a.errs)
			}
		}
		b.WriteString("\n")
	}

	type row struct{ what, got, expect string }
	var rows []row
	for _, n := range clients {
		exp := "≥ 1.0×"
		if n == 1 {
			exp = "≥ 0.8×"
		}
		kr := sign("keyring", "", n).ops
		rows = append(rows,
			row{fmt.Sprintf("warden cached-cert sign / bare keyring, %d clients, audit on tmpfs", n), ratio(sign("warden-cert", auditTmpfs, n).ops, kr), exp},
			row{fmt.Sprintf("warden cached-cert sign / bare keyring, %d clients, audit fsync on disk", n), ratio(sign("warden-cert", auditDisk, n).ops, kr), exp + " (issue: audit on or off)"},
		)
	}
	for _, n := range clients {
		sa := sign("ssh-agent", "", n).ops
		rows = append(rows,
			row{fmt.Sprintf("warden proxied sign / ssh-agent, %d clients, audit fsync on disk", n), ratio(sign("warden-proxy", auditDisk, n).ops, sa), "≥ 0.85×"},
			row{fmt.Sprintf("warden proxied sign / ssh-agent, %d clients, audit on tmpfs", n), ratio(sign("warden-proxy", auditTmpfs, n).ops, sa), "≥ 0.85×"})
	}
	if len(clients) > 0 {
		hi := clients[len(clients)-1]
		rows = append(rows, row{fmt.Sprintf("warden cert sign, audit fsync / tmpfs, %d clients", hi), ratio(sign("warden-cert", auditDisk, hi).ops, sign("warden-cert", auditTmpfs, hi).ops), "> 0.5×"})
	}
	lw := r.agg(func(x *record) bool { return x.Bench == "login" && x.Target == "warden-cert" })
	ls := r.agg(func(x *record) bool { return x.Bench == "login" && x.Target == "ssh-agent" })
	if lw.n > 0 {
		rows = append(rows, row{fmt.Sprintf("ssh login median, warden %.1f ms / ssh-agent %.1f ms", lw.p50/1e3, ls.p50/1e3), ratio(lw.p50, ls.p50), "≤ 1.05×"})
	}
	rw := r.agg(func(x *record) bool { return x.Bench == "rss" && x.Target == "warden" })
	if rw.n > 0 {
		rows = append(rows, row{"warden RSS per idle connection", fmt.Sprintf("%.1f KiB", rw.perConn), "< 64 KiB"})
	}
	if len(rows) > 0 {
		b.WriteString("## Ratios against the expectations of issue 7\n\n| measurement | this run | expected |\n|---|--:|--:|\n")
		for _, x := range rows {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", x.what, x.got, x.expect)
		}
		b.WriteString("\n")
	}

	var listKeys []int
	for _, rec := range r.recs {
		if rec.Bench == "list" && !slices.Contains(listKeys, rec.Keys) {
			listKeys = append(listKeys, rec.Keys)
		}
	}
	slices.Sort(listKeys)
	if len(listKeys) > 0 {
		b.WriteString("## List (1 client, no session-bind, as `ssh-add -l`)\n\n| upstream keys | ssh-agent ops/s | warden ops/s | warden / ssh-agent | ssh-agent p50 | warden p50 | warden CPU µs/op |\n|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, k := range listKeys {
			sa := r.agg(func(x *record) bool { return x.Bench == "list" && x.Target == "ssh-agent" && x.Keys == k })
			w := r.agg(func(x *record) bool { return x.Bench == "list" && x.Target == "warden-proxy" && x.Keys == k })
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %s | %.0f | %.0f | %.1f |\n", k, sa.ops, w.ops, ratio(w.ops, sa.ops), sa.p50, w.p50, w.cpu)
		}
		b.WriteString("\n")
	}

	var issuers []string
	for _, rec := range r.recs {
		if rec.Bench == "jit" && !slices.Contains(issuers, rec.Issuer) {
			issuers = append(issuers, rec.Issuer)
		}
	}
	if len(issuers) > 0 {
		b.WriteString("## JIT issuance (1 client; op = connect + session-bind + List; audit fsync on disk)\n\n| issuer | cold p50 | cold p99 | warm p50 | warm p99 | cold / warm (p50) | CPU µs/op cold | CPU µs/op warm | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, is := range issuers {
			c := r.agg(func(x *record) bool { return x.Bench == "jit" && x.Issuer == is && x.Mode == "cold" })
			w := r.agg(func(x *record) bool { return x.Bench == "jit" && x.Issuer == is && x.Mode == "warm" })
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f | %s | %.0f | %.0f | %.0f |\n", is, c.p50, c.p99, w.p50, w.p99, ratio(c.p50, w.p50), c.cpu, w.cpu, c.errs+w.errs)
		}
		b.WriteString("\n")
	}

	hasRSS := false
	for _, rec := range r.recs {
		if rec.Bench == "rss" {
			if !hasRSS {
				b.WriteString("## Memory with idle connections\n\n| agent | connections | RSS before KiB | RSS after KiB | KiB per connection |\n|---|--:|--:|--:|--:|\n")
				hasRSS = true
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %.1f |\n", rec.Target, rec.Clients, rec.RSSBefore, rec.RSSAfter, rec.PerConnKiB)
		}
	}
	if hasRSS {
		b.WriteString("\n")
	}
	if lw.n > 0 {
		b.WriteString("## Full `ssh` login to a loopback sshd\n\n| agent | logins | median ms | p90 ms | errors |\n|---|--:|--:|--:|--:|\n")
		for _, rec := range r.recs {
			if rec.Bench == "login" {
				fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %d |\n", rec.Target, rec.Ops, rec.P50us/1e3, rec.P90us/1e3, rec.Errors)
			}
		}
		b.WriteString("\n")
	}
	return os.WriteFile(filepath.Join(r.dir, "latest.md"), []byte(b.String()), 0o644)
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
