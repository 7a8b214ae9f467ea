package signer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
	"golang.org/x/crypto/ssh"
)

// server returns a real OpenBao prepared by openbaotest.Real when
// WARDEN_TEST_BAO_ADDR and WARDEN_TEST_BAO_TOKEN are set, else a fresh
// test server. Tests that need the test server's knobs use fake instead.
func server(t *testing.T) *openbaotest.Target {
	t.Helper()
	if tg := openbaotest.Real(t); tg != nil {
		return tg
	}
	return openbaotest.NewServer(t, openbaotest.Options{}).Target()
}

// fake returns a test server, never a real one.
func fake(t *testing.T, opts openbaotest.Options) *openbaotest.Server {
	t.Helper()
	return openbaotest.NewServer(t, opts)
}

// fakeClock is a settable clock shared by the test server and the issuer.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is an injected environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

type harness struct {
	t   *testing.T
	tg  *openbaotest.Target
	o   *OpenBao
	log *syncBuffer
}

// newIssuer builds an issuer for tg with cfg (address and mount filled in
// when empty), an empty environment plus e, and an empty home directory.
func newIssuer(t *testing.T, tg *openbaotest.Target, cfg OpenBaoConfig, e env, now func() time.Time) *harness {
	t.Helper()
	if cfg.Address == "" && len(cfg.Addresses) == 0 {
		cfg.Address = tg.Address
	}
	if cfg.Mount == "" {
		cfg.Mount = tg.Mount
	}
	logs := &syncBuffer{}
	o, err := NewOpenBao(cfg, OpenBaoDeps{
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        now,
		Getenv:     e.get,
		HomeDir:    t.TempDir(),
		HTTPClient: tg.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	o.StartTokenLifecycle()
	t.Cleanup(func() { o.Close() })
	return &harness{t: t, tg: tg, o: o, log: logs}
}

func ephemeral(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (h *harness) request(principals ...string) Request {
	return Request{
		PublicKey:     ephemeral(h.t),
		Principals:    principals,
		TTL:           2 * time.Minute,
		Extensions:    map[string]string{"permit-pty": ""},
		Mount:         h.tg.Mount,
		Role:          h.tg.Role,
		RouteName:     "test",
		CorrelationID: "conn-42",
		AuditHead:     "sha256:abc",
	}
}

func (h *harness) issue(principals ...string) (*Issued, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.o.Issue(ctx, h.request(principals...))
}

// mustNotLeak fails if any secret appears in the issuer's logs or in err.
func (h *harness) mustNotLeak(err error, secrets ...string) {
	h.t.Helper()
	logs := h.log.String()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			h.t.Errorf("a secret appears in the log:\n%s", logs)
		}
		if err != nil && strings.Contains(err.Error(), s) {
			h.t.Errorf("a secret appears in the error: %v", err)
		}
	}
}

func TestOpenBaoIssue(t *testing.T) {
	tg := server(t)
	tok := tg.NewToken(t, time.Hour)
	h := newIssuer(t, tg, OpenBaoConfig{Token: tok}, nil, nil)
	req := h.request("alice")
	iss, err := h.o.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := iss.Cert.ValidPrincipals; len(got) != 1 || got[0] != "alice" {
		t.Errorf("principals %q", got)
	}
	if !bytes.Equal(iss.Cert.Key.Marshal(), req.PublicKey.Marshal()) {
		t.Error("certificate is for another key")
	}
	if iss.RequestID == "" || iss.IssuerID == "" {
		t.Errorf("provenance missing: %+v", iss)
	}
	if iss.CAFingerprint != ssh.FingerprintSHA256(tg.CAPublicKey) {
		t.Errorf("CA fingerprint %s, want %s", iss.CAFingerprint, ssh.FingerprintSHA256(tg.CAPublicKey))
	}
	ca, err := h.o.CAPublicKey(context.Background())
	if err != nil || !bytes.Equal(ca.Marshal(), tg.CAPublicKey.Marshal()) {
		t.Errorf("CAPublicKey = %v, %v", ca, err)
	}
	if h.o.Kind() != "openbao" || h.o.Address() != tg.Address {
		t.Errorf("Kind %q Address %q", h.o.Kind(), h.o.Address())
	}
	info := h.o.TokenInfo()
	if info.Source != SourceConfig || !strings.Contains(strings.Join(info.Policies, ","), tg.Policy) {
		t.Errorf("TokenInfo %+v", info)
	}
	h.mustNotLeak(nil, tok)

	if s := tg.Fake; s != nil {
		hs := s.SignHeaders()
		if len(hs) != 1 {
			t.Fatalf("%d sign requests", len(hs))
		}
		if hs[0].Get(HeaderRequest) != "conn-42" || hs[0].Get(HeaderAuditHead) != "sha256:abc" {
			t.Errorf("headers %v", hs[0])
		}
		// The serial is the one the server put in the certificate and its
		// answer (parseSignResponse refuses a mismatch; see TamperSerial).
		if iss.Cert.Serial == 0 {
			t.Error("serial 0")
		}
	}
}

func TestOpenBaoAuditHeaderOmittedWhenEmpty(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
	req := h.request("alice")
	req.AuditHead = ""
	if _, err := h.o.Issue(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if hs := s.SignHeaders(); len(hs[0].Values(HeaderAuditHead)) != 0 {
		t.Errorf("empty audit head sent: %v", hs[0])
	}
}

func TestOpenBaoRoleRefusals(t *testing.T) {
	tg := server(t)
	h := newIssuer(t, tg, OpenBaoConfig{Token: tg.NewToken(t, time.Hour)}, nil, nil)
	root := ""
	if tg.Fake != nil {
		root = tg.Fake.RootToken()
	}
	tests := []struct {
		name string
		mod  func(*Request)
		want []string
	}{
		{"principal", func(r *Request) { r.Principals = []string{"mallory"} },
			[]string{`role eng does not allow principal mallory: OpenBao said "mallory is not a valid value for valid_principals"`}},
		{"ttl", func(r *Request) { r.TTL = 48 * time.Hour },
			[]string{"role eng refused ttl 48h0m0s for principal alice", "ttl is larger than maximum allowed 3600"}},
		{"extension", func(r *Request) { r.Extensions = map[string]string{"permit-X11-forwarding": ""} },
			[]string{"role eng refused extensions", "extensions [permit-X11-forwarding] are not on allowed list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := h.request("alice")
			tt.mod(&req)
			_, err := h.o.Issue(context.Background(), req)
			var re *RoleRefusedError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want RoleRefusedError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("unknown role", func(t *testing.T) {
		if root == "" {
			t.Skip("needs a token allowed on any role: test server only")
		}
		hr := newIssuer(t, tg, OpenBaoConfig{Token: root}, nil, nil)
		req := hr.request("alice")
		req.Role = "nope"
		_, err := hr.o.Issue(context.Background(), req)
		var re *RoleRefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), `role nope does not exist on mount ssh: OpenBao said "Unknown role: nope"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOpenBaoPermissionDenied(t *testing.T) {
	tg := server(t)
	h := newIssuer(t, tg, OpenBaoConfig{Token: tg.NewToken(t, time.Hour)}, nil, nil)
	req := h.request("alice")
	req.Role = "other"
	_, err := h.o.Issue(context.Background(), req)
	var pe *PermissionDeniedError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want PermissionDeniedError", err)
	}
	want := "permission denied on " + tg.Mount + "/sign/other: the token from config token works (lookup-self accepts it) but its policies (default, " + tg.Policy + ") do not allow this path"
	if tg.Fake == nil {
		want = "permission denied on " + tg.Mount + "/sign/other: the token from config token works (lookup-self accepts it) but its policies ("
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestOpenBaoRevokedStaticTokenIsNotRetried(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	tok := s.CreateToken([]string{"default", "warden-eng"}, time.Hour, true)
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, env{"BAO_TOKEN": tok}, nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	s.RevokeToken(tok)
	_, err := h.issue("alice")
	// Revoked, not a policy: lookup-self refuses it too, and the
	// environment cannot hold a new one, so the fix is a restart.
	var ie *TokenInvalidError
	if !errors.As(err, &ie) || ie.Source != SourceBaoToken || !strings.Contains(err.Error(), "restart it with a fresh one") {
		t.Fatalf("err = %v, want TokenInvalidError from BAO_TOKEN", err)
	}
	if n := s.Requests("ssh/sign/eng"); n != 2 {
		t.Errorf("%d sign requests, want 2", n)
	}
	h.mustNotLeak(err, tok)
}

func TestOpenBaoTokenSources(t *testing.T) {
	tg := server(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := tg.NewToken(t, time.Hour)
	secretFile := write("secret-id", tg.SecretID)
	tests := []struct {
		name   string
		cfg    OpenBaoConfig
		env    env
		home   bool // write ~/.vault-token
		source string
		fake   bool
	}{
		{name: "config", cfg: OpenBaoConfig{Token: tok}, source: SourceConfig},
		{name: "BAO_TOKEN", env: env{"BAO_TOKEN": tok, "VAULT_TOKEN": "wrong"}, source: SourceBaoToken},
		{name: "VAULT_TOKEN", env: env{"VAULT_TOKEN": tok}, source: SourceVaultToken},
		{name: "BAO_TOKEN_PATH", env: env{"BAO_TOKEN_PATH": write("tokfile", tok)}, source: SourceTokenFile + " " + filepath.Join(dir, "tokfile")},
		{name: "home token file", home: true, source: SourceTokenFile},
		{name: "approle", cfg: OpenBaoConfig{AppRole: &AppRoleConfig{RoleID: tg.RoleID, SecretIDFile: secretFile, Mount: tg.AppRoleMount}}, source: SourceAppRole},
		{name: "jwt", cfg: OpenBaoConfig{JWT: &JWTConfig{JWTFile: write("jwt", "eyJ.test.jwt"), Role: "tunnel"}}, source: SourceJWT, fake: true},
		{name: "token_command", cfg: OpenBaoConfig{TokenCommand: []string{"sh", "-c", `printf '%s\n' "$0"`, tok}}, source: SourceTokenCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fake {
				if tg.Fake == nil {
					t.Skip("test server only")
				}
				tg.Fake.AddJWTRole("tunnel", "eyJ.test.jwt", []string{"default", "warden-eng"}, 10*time.Minute)
			}
			h := newIssuer(t, tg, tt.cfg, tt.env, nil)
			if tt.home {
				// Rebuild with a home that has ~/.vault-token.
				home := t.TempDir()
				if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte(tok), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg := tt.cfg
				cfg.Address, cfg.Mount = tg.Address, tg.Mount
				o, err := NewOpenBao(cfg, OpenBaoDeps{Getenv: env{}.get, HomeDir: home, HTTPClient: tg.HTTPClient, Logger: slog.New(slog.NewTextHandler(h.log, nil))})
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				h.o = o
				tt.source = SourceTokenFile + " " + filepath.Join(home, ".vault-token")
			}
			if _, err := h.issue("alice"); err != nil {
				t.Fatal(err)
			}
			if got := h.o.TokenInfo().Source; got != tt.source {
				t.Errorf("source %q, want %q", got, tt.source)
			}
			h.mustNotLeak(nil, tok, tg.SecretID, "eyJ.test.jwt")
		})
	}
}

func TestOpenBaoNoToken(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, nil, nil)
	_, err := h.issue("alice")
	var nt *NoTokenError
	if !errors.As(err, &nt) {
		t.Fatalf("err = %v, want NoTokenError", err)
	}
	for _, w := range []string{
		"no OpenBao token: tried config token (not set), BAO_TOKEN (not set), VAULT_TOKEN (not set), token file ",
		".vault-token (no such file), approle (not configured), jwt (not configured), token_command (not configured); ",
		`run the agent through your credential broker, e.g. "credential exec ops-warden-warden-sign-token -- warden-agent run", or set BAO_TOKEN`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if n := s.Requests("ssh/sign/eng"); n != 0 {
		t.Errorf("%d sign requests without a token", n)
	}
}

func TestOpenBaoFailedLoginsListed(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	dir := t.TempDir()
	bad := filepath.Join(dir, "secret")
	if err := os.WriteFile(bad, []byte("not-the-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	rid, _ := s.AppRole()
	h := newIssuer(t, s.Target(), OpenBaoConfig{
		AppRole:      &AppRoleConfig{RoleID: rid, SecretIDFile: bad},
		TokenCommand: []string{"sh", "-c", "echo broker says no >&2; exit 3"},
	}, nil, nil)
	_, err := h.issue("alice")
	var nt *NoTokenError
	if !errors.As(err, &nt) {
		t.Fatalf("err = %v, want NoTokenError", err)
	}
	for _, w := range []string{`OpenBao said "invalid role or secret ID"`, "exit status 3", `broker says no`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	h.mustNotLeak(err, "not-the-secret")
}

func TestTokenCommandNeverLeaksToken(t *testing.T) {
	_, err := runTokenCommand(context.Background(), []string{"sh", "-c", "echo s.SECRET; echo leaked s.SECRET >&2; exit 1"}, 5*time.Second)
	if err == nil || strings.Contains(err.Error(), "s.SECRET") || !strings.Contains(err.Error(), "leaked <redacted>") {
		t.Fatalf("err = %v", err)
	}
	start := time.Now()
	_, err = runTokenCommand(context.Background(), []string{"sleep", "10"}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 200ms") || time.Since(start) > 3*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
}

func TestOpenBaoRenewsBeforeExpiry(t *testing.T) {
	clock := newClock()
	s := fake(t, openbaotest.Options{Now: clock.Now})
	tok := s.CreateToken([]string{"default", "warden-eng"}, 30*time.Minute, true)
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, env{"BAO_TOKEN": tok}, clock.Now)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	if n := s.Requests("auth/token/renew-self"); n != 0 {
		t.Fatalf("renewed too early: %d", n)
	}
	clock.Advance(19 * time.Minute) // before two thirds of 30m
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	if n := s.Requests("auth/token/renew-self"); n != 0 {
		t.Fatalf("renewed before two thirds of the TTL: %d", n)
	}
	clock.Advance(2 * time.Minute) // 21m: past 20m, before the 30m expiry
	h.o.tokens.refreshIfDue(context.Background())
	if n := s.Requests("auth/token/renew-self"); n != 1 {
		t.Fatalf("%d renewals at 21m, want 1", n)
	}
	exp, _ := s.TokenExpiry(tok)
	if want := clock.Now().Add(30 * time.Minute); !exp.Equal(want) {
		t.Errorf("expiry %s, want %s", exp, want)
	}
	if info := h.o.TokenInfo(); info.TTL != 30*time.Minute || !info.Renewable {
		t.Errorf("TokenInfo %+v", info)
	}
	clock.Advance(15 * time.Minute) // 36m: the original expiry has passed
	if _, err := h.issue("alice"); err != nil {
		t.Fatalf("token expired despite renewal: %v", err)
	}
	if n := s.Requests("auth/token/renew-self"); n != 1 {
		t.Errorf("%d renewals, want 1", n)
	}
}

func TestOpenBaoAppRoleReloginOnce(t *testing.T) {
	tg := server(t)
	secret := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secret, []byte(tg.SecretID), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newIssuer(t, tg, OpenBaoConfig{AppRole: &AppRoleConfig{RoleID: tg.RoleID, SecretIDFile: secret, Mount: tg.AppRoleMount}}, nil, nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	tg.RevokeAppRoleTokens(t)
	if _, err := h.issue("alice"); err != nil {
		t.Fatalf("no re-login after a revoked token: %v", err)
	}
	if s := tg.Fake; s != nil {
		if n := s.Requests("auth/approle/login"); n != 2 {
			t.Errorf("%d logins, want 2", n)
		}
		if n := s.Requests("ssh/sign/eng"); n != 3 {
			t.Errorf("%d sign requests, want 3 (ok, 403, retry)", n)
		}
		// A 403 while lookup-self still accepts the token is a policy
		// refusal: no new login, no second sign.
		before, logins := s.Requests("ssh/sign/eng"), s.Requests("auth/approle/login")
		s.FailNextPath("ssh/sign/eng", 403, `{"errors":["permission denied"]}`)
		_, err := h.issue("alice")
		var pe *PermissionDeniedError
		if !errors.As(err, &pe) {
			t.Fatalf("err = %v, want PermissionDeniedError", err)
		}
		if n := s.Requests("ssh/sign/eng") - before; n != 1 {
			t.Errorf("%d sign requests after a policy 403, want 1", n)
		}
		if n := s.Requests("auth/approle/login") - logins; n != 0 {
			t.Errorf("%d logins after a policy 403, want 0", n)
		}
	}
	h.mustNotLeak(nil, tg.SecretID)
}

func TestOpenBaoSealed(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
	if st, err := h.o.Health(context.Background()); st != HealthActive || err != nil {
		t.Fatalf("health %s %v", st, err)
	}
	s.Seal()
	_, err := h.issue("alice")
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != ReasonSealed {
		t.Fatalf("err = %v, want sealed", err)
	}
	want := "OpenBao at " + s.URL + ` is sealed (503 "Vault is sealed")`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if st, _ := h.o.Health(context.Background()); st != HealthSealed {
		t.Errorf("health %s", st)
	}
	s.Unseal()
	if _, err := h.issue("alice"); err != nil {
		t.Fatalf("after unseal: %v", err)
	}
	s.SetStandby(true)
	if st, _ := h.o.Health(context.Background()); st != HealthStandby {
		t.Errorf("health %s", st)
	}
}

// deadAddress returns the URL of a port that nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	return addr
}

func TestOpenBaoConnectionRefusedAndFailover(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	dead := deadAddress(t)
	h := newIssuer(t, s.Target(), OpenBaoConfig{Address: dead, Token: s.RootToken()}, nil, nil)
	_, err := h.issue("alice")
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != ReasonRefused || !strings.Contains(err.Error(), "OpenBao at "+dead+" refused the connection") {
		t.Fatalf("err = %v", err)
	}
	if st, _ := h.o.Health(context.Background()); st != HealthUnreachable {
		t.Errorf("health %s", st)
	}

	h2 := newIssuer(t, s.Target(), OpenBaoConfig{Addresses: []string{dead, s.URL}, Token: s.RootToken()}, nil, nil)
	if _, err := h2.issue("alice"); err != nil {
		t.Fatalf("no failover: %v", err)
	}
	if h2.o.Address() != s.URL {
		t.Errorf("Address %s after failover", h2.o.Address())
	}
	if n := s.Requests("ssh/sign/eng"); n != 1 {
		t.Errorf("%d sign requests", n)
	}
}

func TestOpenBaoHangTimesOut(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken(), Timeout: 300 * time.Millisecond}, nil, nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	s.SetDelay(10 * time.Second)
	defer s.SetDelay(0)
	start := time.Now()
	_, err := h.issue("alice")
	took := time.Since(start)
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != ReasonTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
	if took > 2*time.Second {
		t.Errorf("took %s", took)
	}
	if !strings.Contains(err.Error(), "OpenBao at "+s.URL+" did not answer within 300ms") {
		t.Errorf("error %q", err)
	}
}

func TestOpenBaoCallerDeadline(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
	s.SetDelay(10 * time.Second)
	defer s.SetDelay(0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h.o.Issue(ctx, h.request("alice")); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
}

func TestOpenBaoTamperedCertificates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper openbaotest.Tamper
	}{
		{"other key", openbaotest.TamperOtherKey},
		{"extra principal", openbaotest.TamperExtraPrincipal},
		{"other CA", openbaotest.TamperOtherCA},
		{"serial", openbaotest.TamperSerial},
		{"long ttl", openbaotest.TamperLongTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fake(t, openbaotest.Options{})
			h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
			s.SetTamper(tc.tamper)
			iss, err := h.issue("alice")
			if !errors.Is(err, ErrInvalidCertificate) || iss != nil {
				t.Fatalf("err = %v, want ErrInvalidCertificate", err)
			}
			if !strings.Contains(h.log.String(), "certificate refused") {
				t.Errorf("refusal not logged:\n%s", h.log)
			}
			if tc.tamper == openbaotest.TamperOtherCA {
				// Looks like a CA rotation: the key is fetched once more.
				if n := s.Requests("ssh/public_key"); n != 2 {
					t.Errorf("public_key fetched %d times, want 2", n)
				}
			}
		})
	}
}

func TestOpenBaoSignNeverRetried(t *testing.T) {
	for _, status := range []int{500, 502, 429} {
		s := fake(t, openbaotest.Options{})
		h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
		s.FailNext(status, `{"errors":["internal error"]}`)
		_, err := h.issue("alice")
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.Status != status {
			t.Fatalf("%d: err = %v", status, err)
		}
		if n := s.Requests("ssh/sign/eng"); n != 1 {
			t.Errorf("%d: %d sign requests, want 1", status, n)
		}
	}
}

func TestOpenBaoOversizedResponse(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken()}, nil, nil)
	s.FailNext(200, `{"data":{"signed_key":"`+strings.Repeat("A", 2<<20)+`"}}`)
	_, err := h.issue("alice")
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != ReasonBadResponse {
		t.Fatalf("err = %v", err)
	}
	s.FailNext(400, `{"errors":["`+strings.Repeat("A", 2<<20)+`"]}`)
	if _, err = h.issue("alice"); !errors.As(err, &ue) || ue.Reason != ReasonBadResponse {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenBaoConcurrentColdStartLogsInOnce(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	rid, sid := s.AppRole()
	secret := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secret, []byte(sid), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newIssuer(t, s.Target(), OpenBaoConfig{AppRole: &AppRoleConfig{RoleID: rid, SecretIDFile: secret}}, nil, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := h.issue("alice"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := s.Requests("auth/approle/login"); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

func TestOpenBaoTLS(t *testing.T) {
	s := fake(t, openbaotest.Options{TLS: true})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(cfg OpenBaoConfig, e env) (*OpenBao, error) {
		cfg.Address, cfg.Token = s.URL, s.RootToken()
		return NewOpenBao(cfg, OpenBaoDeps{Getenv: e.get, HomeDir: t.TempDir()})
	}
	for name, o := range map[string]func() (*OpenBao, error){
		"ca_cert":    func() (*OpenBao, error) { return mk(OpenBaoConfig{CACert: caFile}, nil) },
		"BAO_CACERT": func() (*OpenBao, error) { return mk(OpenBaoConfig{}, env{"BAO_CACERT": caFile}) },
		"skip verify": func() (*OpenBao, error) {
			return mk(OpenBaoConfig{TLSSkipVerify: true, TLSSkipVerifyIUnderstand: true}, nil)
		},
	} {
		o, err := o()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := o.CAPublicKey(context.Background()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		o.Close()
	}
	o, err := mk(OpenBaoConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	_, err = o.CAPublicKey(context.Background())
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != ReasonTLS || !strings.Contains(err.Error(), "TLS to OpenBao at "+s.URL+" failed") {
		t.Fatalf("err = %v, want a TLS error", err)
	}
}

func TestOpenBaoConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  OpenBaoConfig
		env  env
		want string
	}{
		{"no address", OpenBaoConfig{}, nil, "no server address"},
		{"bad address", OpenBaoConfig{Address: "bao:8200"}, nil, "not an http(s) URL"},
		{"skip verify alone", OpenBaoConfig{Address: "https://bao:8200", TLSSkipVerify: true}, nil, "tls_skip_verify_i_understand: true"},
		{"approle half", OpenBaoConfig{Address: "https://bao:8200", AppRole: &AppRoleConfig{RoleID: "x"}}, nil, "approle needs both"},
		{"jwt half", OpenBaoConfig{Address: "https://bao:8200", JWT: &JWTConfig{Role: "x"}}, nil, "jwt needs both"},
		{"client cert half", OpenBaoConfig{Address: "https://bao:8200", ClientCert: "x"}, nil, "client_cert and client_key"},
		{"missing ca file", OpenBaoConfig{Address: "https://bao:8200", CACert: "/nonexistent/ca.pem"}, nil, "reading ca_cert"},
	} {
		_, err := NewOpenBao(tc.cfg, OpenBaoDeps{Getenv: tc.env.get})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "openbao: ") {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	o, err := NewOpenBao(OpenBaoConfig{}, OpenBaoDeps{Getenv: env{"VAULT_ADDR": "https://vault:8200/"}.get})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Address() != "https://vault:8200" {
		t.Errorf("Address %q", o.Address())
	}
	cfg := OpenBaoConfig{Address: "https://bao:8200", Token: "s.secret"}
	if strings.Contains(cfg.String(), "s.secret") {
		t.Errorf("String leaks the token: %s", cfg)
	}
}
