package main

import (
	"fmt"

	"github.com/netkingdom/ops-warden/signer"
	"io"
	"strconv"
	"strings"
)

// writePrometheus prints status in the Prometheus text format, for
// node_exporter's textfile collector: fleets alert on agents without the
// agent opening a network port.
func (st *statusReply) writePrometheus(w io.Writer, problems []string) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	metric("warden_up", "gauge", "1 when the agent answered status.")
	fmt.Fprintln(w, "warden_up 1")
	metric("warden_healthy", "gauge", "1 when status found no problem (exit code 0).")
	fmt.Fprintf(w, "warden_healthy %d\n", b2i(len(problems) == 0))
	metric("warden_uptime_seconds", "gauge", "Seconds since the agent started.")
	fmt.Fprintf(w, "warden_uptime_seconds %d\n", st.UptimeSec)

	k := st.Counters
	is := st.Extra.Issuer
	metric("warden_issuance_failures_total", "counter", "Issuances that failed or were refused, by reason (policy_or_audit: refused by policy, or the audit log failed).")
	var byIssuer uint64
	for _, r := range failureReasons {
		n := is.Issuance.Failures[r]
		byIssuer += n
		fmt.Fprintf(w, "warden_issuance_failures_total{reason=%s} %d\n", label(r), n)
	}
	fmt.Fprintf(w, "warden_issuance_failures_total{reason=\"policy_or_audit\"} %d\n", k.IssueFailed-min(byIssuer, k.IssueFailed))
	metric("warden_issuance_failures_in_a_row", "gauge", "Issuer failures since the last success.")
	fmt.Fprintf(w, "warden_issuance_failures_in_a_row %d\n", is.Issuance.FailuresInARow)
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"warden_certificates_issued_total", "Certificates issued.", k.Issued},
		{"warden_signatures_total", "Signatures made with warden certificates.", k.Used},
		{"warden_signatures_denied_total", "Signatures refused by the sign-time checks.", k.Denied},
		{"warden_upstream_signatures_total", "Signatures proxied to the upstream agent.", k.UpstreamSigned},
		{"warden_refused_peers_total", "Connections refused for their peer uid.", k.RefusedPeers},
	} {
		metric(c.name, "counter", c.help)
		fmt.Fprintf(w, "%s %d\n", c.name, c.v)
	}

	metric("warden_certificate_expiry_seconds", "gauge", "Seconds until each cached certificate expires.")
	for _, c := range st.Certificates {
		fmt.Fprintf(w, "warden_certificate_expiry_seconds{route=%s,principal=%s} %d\n", label(c.Route), label(c.Principal), c.ExpiresInSec)
	}
	metric("warden_upstream_reachable", "gauge", "1 when the upstream agent answers (or none is configured).")
	fmt.Fprintf(w, "warden_upstream_reachable %d\n", b2i(st.Upstream.Path == "" || st.Upstream.Reachable))
	if tk := is.Token; tk != nil {
		metric("warden_token_ttl_seconds", "gauge", "Seconds left on the OpenBao token (-1: does not expire; 0: none, expired or revoked).")
		ttl := tk.TTLSec
		switch {
		case tk.State != string(signer.TokenValid):
			ttl = 0
		case tk.ExpiresAt.IsZero():
			ttl = -1
		}
		fmt.Fprintf(w, "warden_token_ttl_seconds{source=%s} %d\n", label(tk.Source), ttl)
		metric("warden_token_valid", "gauge", "1 when OpenBao accepts the token (lookup-self, a login, a renewal or a sign).")
		fmt.Fprintf(w, "warden_token_valid %d\n", b2i(tk.State == string(signer.TokenValid)))
	}
	metric("warden_issuer_healthy", "gauge", "1 when the issuer is local or OpenBao answered active/standby.")
	fmt.Fprintf(w, "warden_issuer_healthy{kind=%s} %d\n", label(is.Kind), b2i(is.healthy()))
	if len(is.Nodes) > 0 {
		metric("warden_openbao_node_up", "gauge", "1 when the listed OpenBao node answered active or standby.")
		for _, n := range is.Nodes {
			fmt.Fprintf(w, "warden_openbao_node_up{address=%s} %d\n", label(n.Address), b2i(n.Up))
		}
	}
	metric("warden_audit_write_failing", "gauge", "1 while audit records cannot be made durable (signatures are refused).")
	fmt.Fprintf(w, "warden_audit_write_failing %d\n", b2i(st.Extra.Audit.Unavailable))
	metric("warden_audit_seq", "gauge", "Sequence number of the last durable audit record.")
	fmt.Fprintf(w, "warden_audit_seq %d\n", st.Extra.Audit.Seq)
	metric("warden_reload_failing", "gauge", "1 while the newest catalog or policy file is refused.")
	for _, nf := range st.Extra.files() {
		name, f := nf.name, nf.fileStatus
		if f.Path != "" {
			fmt.Fprintf(w, "warden_reload_failing{file=%s} %d\n", label(name), b2i(f.LastError != ""))
		}
	}

	h := st.IssueLatency
	metric("warden_issuance_latency_seconds", "histogram", "Time to obtain a certificate from the issuer.")
	for _, b := range h.Buckets {
		fmt.Fprintf(w, "warden_issuance_latency_seconds_bucket{le=\"%s\"} %d\n", strconv.FormatFloat(b.LE, 'g', -1, 64), b.Count)
	}
	fmt.Fprintf(w, "warden_issuance_latency_seconds_bucket{le=\"+Inf\"} %d\n", h.Count)
	fmt.Fprintf(w, "warden_issuance_latency_seconds_sum %g\n", h.SumSec)
	fmt.Fprintf(w, "warden_issuance_latency_seconds_count %d\n", h.Count)
}

// writeDownPrometheus is the answer when no agent answers: up 0, healthy
// 0, so an alert fires instead of a stale file staying in place.
func writeDownPrometheus(w io.Writer) {
	fmt.Fprintf(w, "# HELP warden_up 1 when the agent answered status.\n# TYPE warden_up gauge\nwarden_up 0\n")
	fmt.Fprintf(w, "# HELP warden_healthy 1 when status found no problem (exit code 0).\n# TYPE warden_healthy gauge\nwarden_healthy 0\n")
}

// label quotes a Prometheus label value.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}
