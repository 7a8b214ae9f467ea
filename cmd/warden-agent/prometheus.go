package main

import (
	"fmt"
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
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"warden_certificates_issued_total", "Certificates issued.", k.Issued},
		{"warden_issuance_failures_total", "Issuances that failed or were refused.", k.IssueFailed},
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
	is := st.Extra.Issuer
	if is.TokenSource != "" {
		metric("warden_token_ttl_seconds", "gauge", "Seconds left on the OpenBao token (0: does not expire).")
		fmt.Fprintf(w, "warden_token_ttl_seconds{source=%s} %d\n", label(is.TokenSource), is.TokenTTLSec)
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

// label quotes a Prometheus label value.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}
