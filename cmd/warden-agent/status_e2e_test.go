package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// TestE2EStatus: status against a running agent when healthy, with the
// upstream agent down, and after a refused policy reload; --json parsed
// field by field; exit 2 with a one-line hint when no agent runs.
func TestE2EStatus(t *testing.T) {
	needPrograms(t, "ssh", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)

	// No agent yet: exit 2 and how to start it; --quiet prints nothing.
	r := e.warden("status")
	if r.code != 2 || !strings.Contains(r.stderr, "warden-agent run") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("status without an agent: %s", r)
	}
	if r := e.warden("status", "--quiet"); r.code != 2 || r.stdout+r.stderr != "" {
		t.Fatalf("status --quiet without an agent: %s", r)
	}

	up := startSSHAgent(t, e)
	policyPath := filepath.Join(e.dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte("rules:\n  - name: everyone\n    effect: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte("policy:\n  path: "+policyPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, e, []string{"SSH_AUTH_SOCK=" + up.socket}, "--config", cfgPath)
	s := startSSHD(t, a.ca)
	e.mustLogin(e.sshConfig(s, a.socket), nil, user, "target")

	// Healthy.
	r = e.warden("status", "--config", cfgPath)
	if r.code != 0 {
		t.Fatalf("healthy status: %s", r)
	}
	for _, want := range []string{"healthy", "upstream  " + up.socket + "  reachable", "issuer    local", "default  " + user + "  serial", "issued 1  used 1", "policy"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, r.stdout)
		}
	}
	prom := e.warden("status", "--prometheus", "--config", cfgPath)
	for _, want := range []string{"warden_up 1", "warden_healthy 1", "warden_certificates_issued_total 1", "warden_signatures_total 1",
		"# TYPE warden_issuance_latency_seconds histogram", `warden_issuance_latency_seconds_bucket{le="+Inf"} 1`,
		"warden_certificate_expiry_seconds{route=\"default\",principal=\"" + user + "\"}", "warden_audit_write_failing 0"} {
		if !strings.Contains(prom.stdout, want) {
			t.Errorf("status --prometheus lacks %q:\n%s", want, prom.stdout)
		}
	}
	if !strings.Contains(r.stdout, "issuance  1 in") {
		t.Errorf("status lacks the issuance latency line:\n%s", r.stdout)
	}

	type statusJSON struct {
		Healthy      bool     `json:"healthy"`
		Problems     []string `json:"problems"`
		Pid          int      `json:"pid"`
		Socket       string   `json:"socket"`
		PeerIdentity string   `json:"peer_identity"`
		Certificates []struct {
			Route, Principal, Serial string
			ExpiresInSeconds         int64 `json:"expires_in_seconds"`
		} `json:"certificates"`
		Counters struct{ Issued, Used uint64 } `json:"counters"`
		Upstream struct {
			Reachable bool
			Keys      int
		} `json:"upstream"`
		Extra struct {
			Issuer struct{ Kind, Health string } `json:"issuer"`
			Policy struct {
				Path, Hash string
				LastError  string `json:"last_error"`
			} `json:"policy"`
			Audit struct {
				Path string
				Seq  uint64
				Head string
			} `json:"audit"`
		} `json:"extra"`
	}
	var st statusJSON
	decode := func() {
		t.Helper()
		st = statusJSON{} // Unmarshal leaves fields the answer omits
		r := e.warden("status", "--json", "--config", cfgPath)
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
	}
	decode()
	switch {
	case !st.Healthy, st.Pid != a.cmd.Process.Pid, st.Socket != a.socket:
		t.Errorf("json: healthy=%v pid=%d socket=%s", st.Healthy, st.Pid, st.Socket)
	case !strings.Contains(st.PeerIdentity, "SO_PEERCRED"):
		t.Errorf("json peer_identity = %q, want the Linux source", st.PeerIdentity)
	case len(st.Certificates) != 1 || st.Certificates[0].Principal != user || st.Certificates[0].ExpiresInSeconds <= 0:
		t.Errorf("json certificates: %+v", st.Certificates)
	case st.Counters.Issued != 1 || st.Counters.Used != 1:
		t.Errorf("json counters: %+v", st.Counters)
	case !st.Upstream.Reachable || st.Upstream.Keys != 0:
		t.Errorf("json upstream: %+v", st.Upstream)
	case st.Extra.Issuer.Kind != "local" || st.Extra.Policy.Path != policyPath || len(st.Extra.Policy.Hash) != 64:
		t.Errorf("json extra: %+v", st.Extra)
	case st.Extra.Audit.Path != e.auditPath() || st.Extra.Audit.Seq == 0 || len(st.Extra.Audit.Head) != 64:
		t.Errorf("json audit: %+v", st.Extra.Audit)
	}

	// A refused reload: degraded, exit 1, the error named.
	if err := os.WriteFile(policyPath, []byte("rules:\n  - name: x\n    efect: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { decode(); return st.Extra.Policy.LastError != "" }) {
		t.Fatal("status never showed the refused policy reload")
	}
	if r := e.warden("status", "--config", cfgPath); r.code != 1 || !strings.Contains(r.stdout, "DEGRADED") || !strings.Contains(r.stdout, "policy.yaml:3") {
		t.Errorf("status after a refused reload: %s", r)
	}
	os.WriteFile(policyPath, []byte("rules:\n  - name: everyone\n    effect: allow\n"), 0o600)
	if !waitFor(5*time.Second, func() bool { decode(); return st.Extra.Policy.LastError == "" }) {
		t.Fatal("status kept the reload error after a good version")
	}

	// Upstream down: degraded, exit 1, --quiet prints nothing.
	up.kill()
	r = e.warden("status", "--config", cfgPath)
	if r.code != 1 || !strings.Contains(r.stdout, "UNREACHABLE") {
		t.Errorf("status with the upstream down: %s", r)
	}
	if r := e.warden("status", "--quiet", "--config", cfgPath); r.code != 1 || r.stdout != "" {
		t.Errorf("status --quiet with the upstream down: %s", r)
	}
}

// TestE2EStatusIssuerUnreachable: with OpenBao configured at an address
// where nothing listens, the agent still starts (upstream keys keep
// working) and status reports the issuer unreachable: exit 1.
func TestE2EStatusIssuerUnreachable(t *testing.T) {
	e := newTestEnv(t)
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	cfg := "signer:\n  kind: openbao\n  openbao:\n    address: http://127.0.0.1:1\n    token: not-a-real-token\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, e, nil, "--config", cfgPath, "--upstream", "none")
	var r result
	if !waitFor(10*time.Second, func() bool {
		r = e.warden("status", "--config", cfgPath)
		return strings.Contains(r.stdout, "unreachable")
	}) {
		t.Fatalf("status never reported the issuer unreachable: %s", r)
	}
	if r.code != 1 || !strings.Contains(r.stdout, "http://127.0.0.1:1") {
		t.Errorf("status with OpenBao unreachable: %s", r)
	}
	if strings.Contains(a.stdout.String()+a.stderr.String()+r.stdout, "not-a-real-token") {
		t.Error("the token appears in the agent's output or in status")
	}
}

// TestE2EStatusTokenNearExpiry: an OpenBao token with less than ten
// minutes left makes status degraded (exit 1) and names the source.
func TestE2EStatusTokenNearExpiry(t *testing.T) {
	user := loginUser(t)
	role := openbaotest.EngRole()
	role.AllowedUsers = []string{user}
	srv := openbaotest.NewServer(t, openbaotest.Options{Roles: map[string]openbaotest.Role{"eng": role}})
	tok := srv.CreateToken([]string{"default", "warden-eng"}, 5*time.Minute, false)
	e := newTestEnv(t)
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	cfg := "signer:\n  kind: openbao\n  openbao:\n    address: " + srv.Target().Address + "\n" +
		"routes:\n  - name: lab\n    hosts: [127.0.0.1]\n    mount: ssh\n    role: eng\n    principals: [" + user + "]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, e, []string{"BAO_TOKEN=" + tok}, "--config", cfgPath, "--upstream", "none")
	if r := e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("sign through OpenBao: %s", r)
	}
	r := e.warden("status", "--config", cfgPath)
	if r.code != 1 || !strings.Contains(r.stdout, "token (BAO_TOKEN) expires in") {
		t.Fatalf("status with a token near expiry: %s", r)
	}
	if strings.Contains(r.stdout, tok) {
		t.Fatal("status prints the token")
	}
}
