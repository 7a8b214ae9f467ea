package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
	if r.code != 1 || !strings.Contains(r.stdout, "token from BAO_TOKEN expires in") || !strings.Contains(r.stdout, "is not renewable") {
		t.Fatalf("status with a token near expiry: %s", r)
	}
	if strings.Contains(r.stdout, tok) {
		t.Fatal("status prints the token")
	}
}

// baoTarget is the real OpenBao of WARDEN_TEST_BAO_ADDR (see
// openbaotest.Real), else a test server whose role eng allows user.
func baoTarget(t *testing.T, user string) *openbaotest.Target {
	t.Helper()
	if tg := openbaotest.Real(t); tg != nil {
		return tg
	}
	role := openbaotest.EngRole()
	role.AllowedUsers = append(role.AllowedUsers, user)
	return openbaotest.NewServer(t, openbaotest.Options{Roles: map[string]openbaotest.Role{"eng": role}}).Target()
}

// baoConfig writes an agent.yaml for tg with one route to 127.0.0.1.
func baoConfig(t *testing.T, e *testEnv, tg *openbaotest.Target, user string) string {
	t.Helper()
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	cfg := "signer:\n  kind: openbao\n  openbao:\n    address: " + tg.Address + "\n    mount: " + tg.Mount + "\n" +
		"routes:\n  - name: lab\n    hosts: [127.0.0.1]\n    mount: " + tg.Mount + "\n    role: " + tg.Role + "\n    principals: [" + user + "]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// signOnce runs `warden-agent sign` once past the cache's back-off after a
// failure, so that each call reaches the issuer.
func signOnce(t *testing.T, e *testEnv, cfgPath, user string) result {
	t.Helper()
	var r result
	waitFor(20*time.Second, func() bool {
		r = e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "127.0.0.1")
		if strings.Contains(r.stderr, "backing off") {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
	return r
}

// TestE2EStatusTokenFacts: status reports the token as OpenBao sees it
// now: none at all, revoked (then replaced by a fresh ~/.vault-token
// without a restart), and issuances that keep failing with a valid token.
func TestE2EStatusTokenFacts(t *testing.T) {
	user := loginUser(t)
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		tg := baoTarget(t, user)
		e := newTestEnv(t)
		cfgPath := baoConfig(t, e, tg, user)
		startAgent(t, e, nil, "--config", cfgPath, "--upstream", "none")
		r := e.warden("status", "--config", cfgPath)
		if r.code != 1 || !strings.Contains(r.stdout, "token     missing") || !strings.Contains(r.stdout, "no OpenBao token: tried") {
			t.Fatalf("status without a token: %s", r)
		}
		if p := e.warden("status", "--prometheus", "--config", cfgPath); !strings.Contains(p.stdout, "warden_token_valid 0") || !strings.Contains(p.stdout, "warden_healthy 0") {
			t.Errorf("status --prometheus without a token:\n%s", p.stdout)
		}
	})
	t.Run("revoked then a fresh vault-token", func(t *testing.T) {
		t.Parallel()
		tg := baoTarget(t, user)
		e := newTestEnv(t)
		cfgPath := baoConfig(t, e, tg, user)
		file := filepath.Join(e.dir, "home", ".vault-token")
		tok1 := tg.NewToken(t, time.Hour)
		os.WriteFile(file, []byte(tok1+"\n"), 0o600)
		a := startAgent(t, e, nil, "--config", cfgPath, "--upstream", "none")
		if r := e.warden("status", "--config", cfgPath); r.code != 0 || !strings.Contains(r.stdout, "token     valid  from token file "+file) {
			t.Fatalf("status with a good token: %s", r)
		}
		tg.RevokeToken(t, tok1)
		r := e.warden("status", "--config", cfgPath)
		if r.code != 1 || !strings.Contains(r.stdout, "token     invalid") || !strings.Contains(r.stdout, "is expired or revoked") ||
			!strings.Contains(r.stdout, "write a fresh token to "+file) || strings.Contains(r.stdout, "s left") {
			t.Fatalf("status with a revoked token: %s", r)
		}
		if r := signOnce(t, e, cfgPath, user); r.code == 0 ||
			!strings.Contains(r.stderr, "expired or revoked") || strings.Contains(r.stderr, "policies") {
			t.Fatalf("sign with a revoked token: %s", r)
		}
		tok2 := tg.NewToken(t, time.Hour)
		os.WriteFile(file, []byte(tok2+"\n"), 0o600)
		if r := e.warden("status", "--config", cfgPath); r.code != 0 || !strings.Contains(r.stdout, "token     valid") {
			t.Fatalf("status after a fresh ~/.vault-token: %s", r)
		}
		if r := signOnce(t, e, cfgPath, user); r.code != 0 {
			t.Fatalf("sign after a fresh ~/.vault-token: %s", r)
		}
		// The serial as OpenBao writes it: hex without leading zeros.
		issued := events(a.audit(t), "cert.issued")
		dec, _ := strconv.ParseUint(issued[len(issued)-1].str("serial_dec"), 10, 64)
		var st struct{ Certificates []struct{ Serial string } }
		if r := e.warden("status", "--json", "--config", cfgPath); json.Unmarshal([]byte(r.stdout), &st) != nil ||
			len(st.Certificates) != 1 || st.Certificates[0].Serial != strconv.FormatUint(dec, 16) {
			t.Errorf("status serial %+v, want %x", st.Certificates, dec)
		}
		if out := a.stdout.String() + a.stderr.String(); strings.Contains(out, tok1) || strings.Contains(out, tok2) {
			t.Error("a token appears in the agent's output")
		}
	})
	t.Run("every issuance fails", func(t *testing.T) {
		t.Parallel()
		srv := baoTarget(t, user).Fake
		if srv == nil {
			t.Skip("needs the test server's FailSigns")
		}
		tg := srv.Target()
		e := newTestEnv(t)
		cfgPath := baoConfig(t, e, tg, user)
		startAgent(t, e, []string{"BAO_TOKEN=" + tg.NewToken(t, time.Hour)}, "--config", cfgPath, "--upstream", "none")
		srv.FailSigns(403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`)
		for i := range failingAfter {
			if r := signOnce(t, e, cfgPath, user); r.code == 0 {
				t.Fatalf("sign %d succeeded", i)
			}
			if r := e.warden("status", "--config", cfgPath); (r.code == 0) != (i < failingAfter-1) {
				t.Fatalf("status after %d failed issuances: %s", i+1, r)
			}
		}
		r := e.warden("status", "--config", cfgPath)
		if !strings.Contains(r.stdout, "the last 3 issuances failed (permission_denied)") || !strings.Contains(r.stdout, "do not allow this path") {
			t.Errorf("status after 3 refused issuances: %s", r)
		}
		p := e.warden("status", "--prometheus", "--config", cfgPath)
		for _, want := range []string{`warden_issuance_failures_total{reason="permission_denied"} 3`, `warden_issuance_failures_total{reason="sealed"} 0`, "warden_issuance_failures_in_a_row 3"} {
			if !strings.Contains(p.stdout, want) {
				t.Errorf("status --prometheus lacks %q:\n%s", want, p.stdout)
			}
		}
		srv.FailSigns(0, "")
		if r := signOnce(t, e, cfgPath, user); r.code != 0 {
			t.Fatalf("sign after the fault: %s", r)
		}
		if r := e.warden("status", "--config", cfgPath); r.code != 0 {
			t.Errorf("status after a good issuance: %s", r)
		}
	})
}

// TestE2EStatusShortRenewableToken: a 60 s renewable token, with nothing
// issued, stays alive for three minutes by renewal alone, status says
// healthy throughout (a token renewed on time is no problem), and it signs
// at the end.
func TestE2EStatusShortRenewableToken(t *testing.T) {
	if testing.Short() {
		t.Skip("three minutes")
	}
	t.Parallel()
	user := loginUser(t)
	tg := baoTarget(t, user)
	e := newTestEnv(t)
	cfgPath := baoConfig(t, e, tg, user)
	tok := tg.NewTokenSpec(t, openbaotest.TokenSpec{TTL: time.Minute, Renewable: true})
	startAgent(t, e, []string{"BAO_TOKEN=" + tok}, "--config", cfgPath, "--upstream", "none")
	ttlRe := regexp.MustCompile(`warden_token_ttl_seconds\{source="BAO_TOKEN"\} (\d+)`)
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(5 * time.Second) {
		r := e.warden("status", "--config", cfgPath)
		if r.code != 0 || !strings.Contains(r.stdout, "token     valid  from BAO_TOKEN") {
			t.Fatalf("status during the three minutes: %s", r)
		}
		p := e.warden("status", "--prometheus", "--config", cfgPath)
		m := ttlRe.FindStringSubmatch(p.stdout)
		if m == nil {
			t.Fatalf("no warden_token_ttl_seconds:\n%s", p.stdout)
		}
		if n, _ := strconv.Atoi(m[1]); n < 5 || n > 60 {
			t.Fatalf("warden_token_ttl_seconds %d", n)
		}
	}
	if s := tg.Fake; s != nil {
		if n := s.Requests("auth/token/renew-self"); n < 3 {
			t.Errorf("%d renewals in three minutes of a 60 s token, want at least 3", n)
		}
		if n := s.Requests(tg.Mount + "/sign/eng"); n != 0 {
			t.Errorf("%d signs while idle", n)
		}
	}
	if r := e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("sign after three idle minutes: %s", r)
	}
}

// textfileRecipe is the node_exporter block of troubleshooting.md.
func textfileRecipe(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- textfile-recipe -->\n```sh\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("troubleshooting.md has no textfile-recipe block")
	}
	return block
}

// TestE2EStatusAgentDown: --json and --prometheus answer when no agent
// runs (exit 2), and the docs' textfile-collector recipe replaces the file
// atomically both when the agent is down and when it runs.
func TestE2EStatusAgentDown(t *testing.T) {
	e := newTestEnv(t)
	r := e.warden("status", "--json")
	var st struct {
		Running  *bool    `json:"running"`
		Healthy  bool     `json:"healthy"`
		Socket   string   `json:"socket"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 2 || st.Running == nil || *st.Running || st.Healthy ||
		st.Socket != e.socket() || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "not running") {
		t.Fatalf("status --json without an agent (%v): %s", err, r)
	}
	r = e.warden("status", "--prometheus")
	if r.code != 2 || !strings.Contains(r.stdout, "warden_up 0\n") || !strings.Contains(r.stdout, "warden_healthy 0\n") {
		t.Fatalf("status --prometheus without an agent: %s", r)
	}

	dir := filepath.Join(e.dir, "textfile")
	os.MkdirAll(dir, 0o755)
	script := strings.ReplaceAll(textfileRecipe(t), "/var/lib/node_exporter/textfile", dir)
	if !strings.Contains(script, "mv ") {
		t.Fatalf("the recipe does not rename into place:\n%s", script)
	}
	runRecipe := func() string {
		t.Helper()
		if r := e.run(nil, "sh", "-c", "PATH="+filepath.Dir(wardenExe)+":$PATH\n"+script); r.code != 0 {
			t.Fatalf("recipe: %s", r)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 || ents[0].Name() != "warden.prom" {
			t.Fatalf("textfile directory holds %v, want only warden.prom", ents)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "warden.prom"))
		return string(b)
	}
	if got := runRecipe(); !strings.Contains(got, "warden_up 0\n") {
		t.Fatalf("recipe with the agent down wrote:\n%s", got)
	}
	startAgent(t, e, nil, "--upstream", "none")
	if got := runRecipe(); !strings.Contains(got, "warden_up 1\n") || !strings.Contains(got, `warden_issuance_failures_total{reason="no_token"} 0`) {
		t.Fatalf("recipe with the agent up wrote:\n%s", got)
	}
	if r := e.warden("status", "--json"); !strings.Contains(r.stdout, `"running": true`) {
		t.Errorf("status --json with the agent up: %s", r)
	}
}

// TestE2EStatusSocketActivation: started with a socket passed by the
// service manager (LISTEN_FDS), status reports that socket, not the
// default path.
func TestE2EStatusSocketActivation(t *testing.T) {
	e := newTestEnv(t)
	sock := filepath.Join(e.dir, "activated.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" run --upstream none`, wardenExe)
	cmd.Env = e.environ()
	cmd.ExtraFiles = []*os.File{f}
	out, _ := cmd.StdoutPipe()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { killGroup(cmd, syscall.SIGKILL); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "listening on "+sock) {
		t.Fatalf("banner %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	r := e.warden("status", "--json", "--socket", sock)
	var st struct{ Socket string }
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Socket != sock {
		t.Fatalf("status under socket activation (%v): %s", err, r)
	}
}

// TestE2ETokenAtStartOnlyInTheAgent: the agent obtains its token at start,
// before any login (here through token_command); a one-shot command such
// as `warden-agent ca`, which needs no token, never runs token_command.
func TestE2ETokenAtStartOnlyInTheAgent(t *testing.T) {
	user := loginUser(t)
	tg := baoTarget(t, user)
	e := newTestEnv(t)
	marker := filepath.Join(e.dir, "token-command-ran")
	tok := tg.NewToken(t, time.Hour)
	script := filepath.Join(e.dir, "token.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+marker+"\necho "+tok+"\n"), 0o700)
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	os.WriteFile(cfgPath, []byte("signer:\n  kind: openbao\n  openbao:\n    address: "+tg.Address+"\n    mount: "+tg.Mount+"\n    token_command: ["+script+"]\n"), 0o600)
	if r := e.warden("ca", "--config", cfgPath); r.code != 0 || !strings.HasPrefix(r.stdout, "ssh-") {
		t.Fatalf("warden-agent ca: %s", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("warden-agent ca ran token_command")
	}
	startAgent(t, e, nil, "--config", cfgPath, "--upstream", "none")
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }) {
		t.Fatal("the agent did not obtain its token at start")
	}
	if r := e.warden("status", "--config", cfgPath); r.code != 0 || !strings.Contains(r.stdout, "token     valid  from token_command") {
		t.Errorf("status: %s", r)
	}
}
