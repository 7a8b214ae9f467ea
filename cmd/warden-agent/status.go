package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/agentproxy"
	"github.com/netkingdom/ops-warden/signer"
)

// wiringStatus is the part of status the command wiring knows: the
// issuer, the catalog and policy files, and the audit log.
type wiringStatus struct {
	Issuer  issuerStatus `json:"issuer"`
	Catalog fileStatus   `json:"catalog"`
	Policy  fileStatus   `json:"policy"`
	Audit   auditStatus  `json:"audit"`
}

type issuerStatus struct {
	Kind    string `json:"kind"`
	Address string `json:"address"`
	// Health is active, standby, sealed, unreachable… (sampled in the
	// background), or "local" for the local CA.
	Health      string    `json:"health"`
	HealthError string    `json:"health_error,omitempty"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	// Nodes are OpenBao's listed nodes, each with its own state.
	Nodes []nodeStatus `json:"nodes,omitempty"`
	// Token is OpenBao's token as checked when status asked; nil for
	// the local CA.
	Token *tokenStatus `json:"token,omitempty"`
	// Issuance is the issuer's recent record.
	Issuance issuanceStatus `json:"issuance"`
}

// tokenStatus describes the OpenBao token; it never holds the token.
type tokenStatus struct {
	// State is unchecked, missing, valid or invalid.
	State         string    `json:"state"`
	Source        string    `json:"source,omitempty"`
	TTLSec        int64     `json:"ttl_seconds"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	Renewable     bool      `json:"renewable"`
	MaxTTLReached bool      `json:"max_ttl_reached,omitempty"`
	Relogin       bool      `json:"relogin,omitempty"`
	Policies      []string  `json:"policies,omitempty"`
	CheckedAt     time.Time `json:"checked_at,omitzero"`
	RenewError    string    `json:"renew_error,omitempty"`
	// Problem says what is wrong and how to fix it.
	Problem string `json:"problem,omitempty"`
}

type nodeStatus struct {
	Address     string    `json:"address"`
	State       string    `json:"state"`
	Up          bool      `json:"up"`
	InUse       bool      `json:"in_use,omitempty"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

type fileStatus struct {
	Path      string    `json:"path,omitempty"`
	Hash      string    `json:"hash,omitempty"`
	LoadedAt  time.Time `json:"loaded_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

type auditStatus struct {
	Path        string `json:"path"`
	Size        int64  `json:"size"`
	Seq         uint64 `json:"seq"`
	Head        string `json:"head"`
	Unavailable bool   `json:"unavailable"`
	LastError   string `json:"last_error,omitempty"`
	// RotationRefused: rotation would have deleted a file younger than
	// audit.min_age; the log grows instead (degraded).
	RotationRefused string `json:"rotation_refused,omitempty"`
}

// healthSampler checks the issuer's health in the background; status
// checks it again when asked and keeps the newer answer.
type healthSampler struct {
	mu        sync.Mutex // guards the fields below
	state     string
	err       string
	checkedAt time.Time
}

// healthChecker is what an issuer with a health endpoint offers.
type healthChecker interface {
	Health(ctx context.Context) (signer.HealthState, error)
}

// check asks the issuer once and keeps the answer.
func (h *healthSampler) check(ctx context.Context, hc healthChecker) {
	state, err := hc.Health(ctx)
	h.mu.Lock()
	h.state, h.err, h.checkedAt = string(state), "", time.Now()
	if err != nil {
		h.err = err.Error()
	}
	h.mu.Unlock()
}

// sample runs until ctx ends.
func (h *healthSampler) sample(ctx context.Context, hc healthChecker, every time.Duration) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h.check(cctx, hc)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (h *healthSampler) get() (string, string, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.err, h.checkedAt
}

// statusExtra builds the wiring's status. For OpenBao it asks the server
// now (sys/health, and lookup-self for the token, in parallel and within
// ctx's deadline): status reports facts, not the last success.
func statusExtra(iss signer.Issuer, obs *observedIssuer, health *healthSampler, src *sources, rec auditRecorder) func(context.Context) any {
	return func(ctx context.Context) any {
		w := wiringStatus{Issuer: issuerStatus{Kind: iss.Kind(), Address: iss.Address(), Health: "local"}}
		if ob, ok := iss.(*signer.OpenBao); ok {
			// Health (every node, sampled now) and the token, in parallel.
			var ti signer.TokenInfo
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); health.check(ctx, ob) }()
			go func() { defer wg.Done(); ti = ob.CheckToken(ctx) }()
			wg.Wait()
			w.Issuer.Address = ob.Address()
			// The issuer knows each node's state and which one it uses.
			w.Issuer.Health, w.Issuer.HealthError, w.Issuer.CheckedAt = ob.HealthSummary()
			for _, n := range ob.Nodes() {
				w.Issuer.Nodes = append(w.Issuer.Nodes, nodeStatus{Address: n.Address, State: string(n.State), Up: n.Up, InUse: n.InUse,
					CheckedAt: n.CheckedAt, LastError: n.LastError, LastErrorAt: n.LastErrorAt})
			}
			if w.Issuer.Health == "" {
				w.Issuer.Health = "unknown"
			}
			w.Issuer.Token = &tokenStatus{
				State: string(ti.State), Source: ti.Source, TTLSec: int64(ti.TTL.Seconds()), ExpiresAt: ti.ExpiresAt,
				Renewable: ti.Renewable, MaxTTLReached: ti.MaxTTLReached, Relogin: ti.Relogin, Policies: ti.Policies,
				CheckedAt: ti.CheckedAt, RenewError: ti.RenewError, Problem: ti.Problem,
			}
		}
		if obs != nil {
			w.Issuer.Issuance = obs.status()
		}
		if src.catStore != nil {
			w.Catalog = fileStatusOf(src.catStore.Path(), src.catStore.Hash(), src.catStore.LoadedAt(), src.catStore.LastError())
		}
		if src.polStore != nil && (src.polStore.Hash() != "" || src.polStore.LastError() != nil) { // Hash "": the default path, no file yet
			w.Policy = fileStatusOf(src.polStore.Path(), src.polStore.Hash(), src.polStore.LoadedAt(), src.polStore.LastError())
		}
		a := rec.log.Status()
		w.Audit = auditStatus{Path: a.Path, Size: a.Size, Seq: a.Seq, Head: a.Head, Unavailable: a.Unavailable, LastError: a.LastError, RotationRefused: a.RotationRefused}
		return w
	}
}

func fileStatusOf(path, hash string, loaded time.Time, err error) fileStatus {
	f := fileStatus{Path: path, Hash: hash, LoadedAt: loaded}
	if err != nil {
		f.LastError = err.Error()
	}
	return f
}

// healthy reports whether the issuer can issue: the local CA, or an
// OpenBao node that answered active or standby.
func (is issuerStatus) healthy() bool {
	switch is.Health {
	case "local", "active", "standby", "perfstandby":
		return true
	}
	return false
}

type namedFile struct {
	name string
	fileStatus
}

// files lists the catalog and the policy in a fixed order, so output and
// problems do not change order between runs.
func (w wiringStatus) files() []namedFile {
	return []namedFile{{"catalog", w.Catalog}, {"policy", w.Policy}}
}

// statusReply is agentproxy.Status with the wiring's part decoded.
type statusReply struct {
	agentproxy.Status
	Extra wiringStatus `json:"extra"`
}

// Exit codes of `warden-agent status`.
const (
	statusHealthy  = 0
	statusDegraded = 1
	statusDown     = 2
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running agent's state (exit 0 healthy, 1 degraded, 2 not running)",
		UsageText: "warden-agent status [--json | --prometheus | --quiet]\n\n" +
			"--json and --prometheus print even when the agent is down (\"running\": false, warden_up 0).\n\nExamples:\n" +
			"   warden-agent status\n" +
			"   warden-agent status --quiet || alert   # health check\n" +
			"   f=/var/lib/node_exporter/textfile/warden.prom; warden-agent status --prometheus > \"$f.$$\"; mv \"$f.$$\" \"$f\"",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the state as one JSON object"},
			&cli.BoolFlag{Name: "prometheus", Usage: "print counters and gauges in Prometheus text format (node_exporter textfile collector)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing; only set the exit code"},
		},
		Action: func(c *cli.Context) error {
			socket, err := socketFor(c)
			if err != nil {
				return err
			}
			var st statusReply
			err = agentproxy.CallExtension(socket, agentproxy.ExtStatus, struct{}{}, &st, 5*time.Second)
			if err != nil {
				msg := err.Error()
				if errors.Is(err, agentproxy.ErrNoAgent) {
					msg = fmt.Sprintf("warden-agent is not running on %s; start it with `warden-agent run` (or `systemctl --user start warden-agent`)", socket)
				}
				// Monitoring reads these: a down agent must still
				// produce an answer, never an empty or stale file.
				switch {
				case c.Bool("quiet"):
					msg = ""
				case c.Bool("prometheus"):
					writeDownPrometheus(c.App.Writer)
				case c.Bool("json"):
					if err := writeJSON(c.App.Writer, map[string]any{"running": false, "healthy": false, "socket": socket, "problems": []string{msg}}); err != nil {
						return err
					}
				}
				return cli.Exit(msg, statusDown)
			}
			problems := st.problems()
			switch {
			case c.Bool("quiet"):
			case c.Bool("prometheus"):
				st.writePrometheus(c.App.Writer, problems)
			case c.Bool("json"):
				if problems == nil {
					problems = []string{}
				}
				if err := writeJSON(c.App.Writer, struct {
					Running bool `json:"running"`
					statusReply
					Healthy  bool     `json:"healthy"`
					Problems []string `json:"problems"`
				}{true, st, len(problems) == 0, problems}); err != nil {
					return err
				}
			default:
				st.print(c.App.Writer, problems)
			}
			if len(problems) > 0 {
				return cli.Exit("", statusDegraded)
			}
			return nil
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// problems lists what makes the agent degraded, each with its fix.
func (st *statusReply) problems() []string {
	var p []string
	if st.Upstream.Path != "" && !st.Upstream.Reachable {
		p = append(p, "upstream agent unreachable: "+st.Upstream.Error)
	}
	is := st.Extra.Issuer
	if !is.healthy() {
		p = append(p, strings.TrimSpace(fmt.Sprintf("issuer %s is %s %s", is.Address, is.Health, is.HealthError)))
	}
	if tk := is.Token; tk != nil && tk.Problem != "" && is.healthy() {
		// While the server is down the token cannot be checked; the
		// issuer's problem says all there is to say.
		p = append(p, "OpenBao token: "+tk.Problem)
	}
	if n := is.Issuance; n.FailuresInARow >= failingAfter {
		p = append(p, fmt.Sprintf("the last %d issuances failed (%s); the last error: %s", n.FailuresInARow, n.LastReason, n.LastError))
	}
	if st.Extra.Audit.Unavailable {
		p = append(p, "audit log failing: "+st.Extra.Audit.LastError)
	}
	if r := st.Extra.Audit.RotationRefused; r != "" {
		p = append(p, "audit log rotation refused: "+r)
	}
	for _, nf := range st.Extra.files() {
		name, f := nf.name, nf.fileStatus
		if f.LastError != "" {
			p = append(p, fmt.Sprintf("%s reload refused (last good version in force): %s", name, f.LastError))
		}
	}
	return p
}

func (st *statusReply) print(w io.Writer, problems []string) {
	state := "healthy"
	if len(problems) > 0 {
		state = "DEGRADED"
	}
	fmt.Fprintf(w, "warden-agent %s  %s  pid %d  up %s\n", st.Version, state, st.Pid, time.Duration(st.UptimeSec)*time.Second)
	fmt.Fprintf(w, "socket    %s%s\n", st.Socket, map[bool]string{true: "  (LOCKED)"}[st.Locked])
	switch {
	case st.Upstream.Path == "":
		fmt.Fprintln(w, "upstream  none")
	case st.Upstream.Reachable:
		fmt.Fprintf(w, "upstream  %s  reachable, %d keys\n", st.Upstream.Path, st.Upstream.Keys)
	default:
		fmt.Fprintf(w, "upstream  %s  UNREACHABLE: %s\n", st.Upstream.Path, st.Upstream.Error)
	}
	is := st.Extra.Issuer
	fmt.Fprintf(w, "issuer    %s %s  %s\n", is.Kind, is.Address, is.Health)
	if tk := is.Token; tk != nil {
		fmt.Fprintf(w, "token     %s", tk.State)
		if tk.Source != "" {
			fmt.Fprintf(w, "  from %s", tk.Source)
		}
		if tk.State == string(signer.TokenValid) {
			left := "does not expire"
			if !tk.ExpiresAt.IsZero() {
				left = (time.Duration(tk.TTLSec) * time.Second).String() + " left"
			}
			fmt.Fprintf(w, ", %s, renewable %v", left, tk.Renewable)
			if tk.MaxTTLReached {
				fmt.Fprint(w, " (max TTL reached)")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if len(is.Nodes) > 1 {
		for _, n := range is.Nodes {
			fmt.Fprintf(w, "  node    %s  %s%s", n.Address, n.State, map[bool]string{true: "  (in use)"}[n.InUse])
			if n.LastError != "" {
				fmt.Fprintf(w, "  last failure %s: %s", n.LastErrorAt.Local().Format(time.DateTime), n.LastError)
			}
			fmt.Fprintln(w)
		}
	}
	for _, nf := range st.Extra.files() {
		name, f := nf.name, nf.fileStatus
		if f.Path == "" {
			continue
		}
		fmt.Fprintf(w, "%-9s %s  loaded %s", name, f.Path, f.LoadedAt.Local().Format(time.DateTime))
		if f.LastError != "" {
			fmt.Fprintf(w, "  RELOAD REFUSED: %s", f.LastError)
		}
		fmt.Fprintln(w)
	}
	a := st.Extra.Audit
	fmt.Fprintf(w, "audit     %s  %d bytes, seq %d, head %.16s", a.Path, a.Size, a.Seq, a.Head)
	if a.Unavailable {
		fmt.Fprintf(w, "  FAILING: %s", a.LastError)
	}
	fmt.Fprintln(w)
	if len(st.UnboundRoutes) > 0 {
		fmt.Fprintf(w, "routes without session-bind (tunnels): %s\n", strings.Join(st.UnboundRoutes, ", "))
	}
	if len(st.Certificates) == 0 {
		fmt.Fprintln(w, "certificates: none cached")
	} else {
		fmt.Fprintln(w, "certificates:")
		for _, cs := range st.Certificates {
			fmt.Fprintf(w, "  %s  %s  serial %s  expires in %s\n", cs.Route, cs.Principal, cs.Serial, time.Duration(cs.ExpiresInSec)*time.Second)
		}
	}
	k := st.Counters
	fmt.Fprintf(w, "counters  issued %d  used %d  denied %d  upstream signatures %d  issuance failures %d\n",
		k.Issued, k.Used, k.Denied, k.UpstreamSigned, k.IssueFailed)
	if h := st.IssueLatency; h.Count > 0 {
		fmt.Fprintf(w, "issuance  %d in %.3fs total, p50 ≤ %s, p99 ≤ %s\n", h.Count, h.SumSec, bound(h.P50Sec), bound(h.P99Sec))
	}
	for _, p := range problems {
		fmt.Fprintf(w, "problem   %s\n", p)
	}
}

// bound prints a histogram bucket bound.
func bound(sec float64) string {
	if sec < 0 {
		return "more than 10s"
	}
	return time.Duration(sec * float64(time.Second)).String()
}
