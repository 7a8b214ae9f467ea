package main

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// meta identifies the run and every tool measured in it; it is repeated
// in every record.
type meta struct {
	Commit          string `json:"commit"`  // of the tree the bench runs in
	Go              string `json:"go"`      // that built warden-bench
	OpenSSH         string `json:"openssh"` // ssh -V of the ssh on PATH
	Warden          string `json:"warden"`
	WardenVersion   string `json:"warden_version"`
	SSHAgent        string `json:"ssh_agent"`
	SSHAgentVersion string `json:"ssh_agent_version"`
	SSHD            string `json:"sshd"`
	SSHDVersion     string `json:"sshd_version"`
	Kernel          string `json:"kernel"`
	CPUs            int    `json:"cpus"`
	Started         string `json:"started"`
}

func collectMeta(o *options) meta {
	m := meta{Go: runtime.Version(), CPUs: runtime.NumCPU(), Started: time.Now().UTC().Format(time.RFC3339),
		Warden: o.warden, WardenVersion: wardenVersion(o.warden), SSHAgent: o.sshAgent, SSHAgentVersion: sshAgentVersion(o.sshAgent),
		SSHD: sshdPath()}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += "-dirty"
		}
	}
	m.OpenSSH = toolVersion("ssh", "-V")
	m.SSHDVersion = toolVersion(m.SSHD, "-V")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// toolVersion is the first line bin prints for its version flag, or "".
func toolVersion(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// wardenVersion is what `warden-agent --version` says, with the commit
// Go stamped into the binary when it differs (bench/run.sh sets the
// version to `git describe`; a plain `go build` leaves 0.1.0-dev).
func wardenVersion(bin string) string {
	v := toolVersion(bin, "--version")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(v, rev[:7]) {
		v += " (vcs " + rev + modified + ")"
	}
	return v + ", " + info.GoVersion
}

// sshAgentVersion: ssh-agent has no version flag. The ssh installed
// beside it is from the same build; failing that, the OpenSSH_x.y string
// compiled into the binary, if any.
func sshAgentVersion(bin string) string {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(data)
	id := fmt.Sprintf("sha256 %x", sum[:6])
	if v := toolVersion(filepath.Join(filepath.Dir(bin), "ssh"), "-V"); strings.HasPrefix(v, "OpenSSH") {
		return v + " (ssh -V beside it; " + id + ")"
	}
	if v := opensshVersion.Find(data); v != nil {
		return string(v) + " (string in the binary; " + id + ")"
	}
	return "unknown (no ssh beside it, no OpenSSH_ string in it; " + id + ")"
}

var opensshVersion = regexp.MustCompile(`OpenSSH_[0-9]+\.[0-9]+(p[0-9]+)?`)

// sshdPath is the sshd the login phases start: the one on PATH, else
// Debian's /usr/sbin/sshd.
func sshdPath() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/usr/sbin/sshd"
}

// record is one measurement: one JSON line.
type record struct {
	meta
	Time       string         `json:"time"`
	Bench      string         `json:"bench"`  // sign, list, jit, rss, hint, login, master
	Target     string         `json:"target"` // ssh-agent, keyring, warden-cert, warden-proxy, warden, warden-routes, warden-agent hint, /bin/true
	Audit      string         `json:"audit,omitempty"`
	Key        string         `json:"key,omitempty"`
	Issuer     string         `json:"issuer,omitempty"`
	Mode       string         `json:"mode,omitempty"`
	Clients    int            `json:"clients"`
	Keys       int            `json:"keys,omitempty"`
	Rep        int            `json:"rep,omitempty"`
	ElapsedS   float64        `json:"elapsed_s,omitempty"`
	Ops        int            `json:"ops"`
	Errors     int            `json:"errors"`
	FirstErr   string         `json:"first_error,omitempty"`
	OpsPerSec  float64        `json:"ops_per_s,omitempty"`
	P50us      float64        `json:"p50_us,omitempty"`
	P90us      float64        `json:"p90_us,omitempty"`
	P99us      float64        `json:"p99_us,omitempty"`
	AgentCPU   float64        `json:"agent_cpu_us_per_op,omitempty"`
	UpCPU      float64        `json:"upstream_cpu_us_per_op,omitempty"`
	RSSBefore  int64          `json:"rss_before_kib,omitempty"`
	RSSAfter   int64          `json:"rss_after_kib,omitempty"`
	PerConnKiB float64        `json:"rss_per_conn_kib,omitempty"`
	Routes     int            `json:"routes,omitempty"`
	ClientCPU  float64        `json:"client_cpu_us_per_op,omitempty"` // mean rusage user+sys of the client process (ssh, sh -c hint)
	MakespanMs float64        `json:"makespan_ms,omitempty"`          // a concurrent batch: first start to last exit
	SSHDLogins int            `json:"sshd_logins,omitempty"`
	Events     map[string]int `json:"audit_events,omitempty"`
	Note       string         `json:"note,omitempty"`
}

// reporter writes records as they come and the table at the end.
type reporter struct {
	dir   string
	meta  meta
	f     *os.File
	w     *bufio.Writer
	recs  []*record
	times []phaseTime
}

type phaseTime struct {
	phase string
	took  time.Duration
}

func (r *reporter) took(phase string, d time.Duration) {
	r.times = append(r.times, phaseTime{phase, d})
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
	fmt.Fprintf(&b, "# warden-bench results\n\n%s · commit %s · %d CPUs · kernel %s\n\n", m.Started, m.Commit, m.CPUs, m.Kernel)
	fmt.Fprintf(&b, "- warden-agent: `%s` — %s\n", m.Warden, dash(m.WardenVersion))
	fmt.Fprintf(&b, "- ssh-agent: `%s` — %s\n", m.SSHAgent, dash(m.SSHAgentVersion))
	fmt.Fprintf(&b, "- ssh: %s\n- sshd: `%s` — %s\n- warden-bench built with %s\n\n", dash(m.OpenSSH), m.SSHD, dash(m.SSHDVersion), m.Go)
	fmt.Fprintf(&b, "Medians over repetitions. Latencies in µs unless marked ms; agent CPU is the agent process's user+system time per operation "+
		"(for warden-proxy, + the upstream ssh-agent's); client CPU is the rusage of the process a user would run (ssh, or the shell running the hint), "+
		"children included. The load generator runs on the same cores.\n\n")

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

	r.writeGoals(&b, sign, clients)

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
		if rec.Bench == "rss" && rec.Routes == 0 {
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
	for _, rec := range r.recs {
		if rec.Bench == "rss" && rec.Routes > 0 {
			fmt.Fprintf(&b, "## Memory with routes' certificates\n\n| agent | routes | certificates held | RSS before KiB | RSS after KiB | errors |\n|---|--:|--:|--:|--:|--:|\n"+
				"| %s | %d | %d | %d | %d | %d %s |\n\n", rec.Target, rec.Routes, rec.Ops, rec.RSSBefore, rec.RSSAfter, rec.Errors, rec.FirstErr)
		}
	}
	r.writeSSH(&b)
	if len(r.times) > 0 {
		b.WriteString("## Phase durations\n\n| phase | seconds |\n|---|--:|\n")
		var total time.Duration
		for _, t := range r.times {
			fmt.Fprintf(&b, "| %s | %.0f |\n", t.phase, t.took.Seconds())
			total += t.took
		}
		fmt.Fprintf(&b, "| all | %.0f |\n\n", total.Seconds())
	}
	return os.WriteFile(filepath.Join(r.dir, "latest.md"), []byte(b.String()), 0o644)
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
