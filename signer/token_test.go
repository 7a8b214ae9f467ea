package signer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

func waitState(t *testing.T, o *OpenBao, want TokenState) TokenInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti := o.TokenInfo()
		if ti.State == want {
			return ti
		}
		if time.Now().After(deadline) {
			t.Fatalf("token state %q, want %q: %+v", ti.State, want, ti)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTokenLookedUpAtStartRenewedWhileIdle: a short renewable token is
// looked up without any issuance and kept alive by renewal alone; after
// three TTLs of idleness it still signs.
func TestTokenLookedUpAtStartRenewedWhileIdle(t *testing.T) {
	t.Parallel()
	tg := server(t)
	tok := tg.NewTokenSpec(t, openbaotest.TokenSpec{TTL: 6 * time.Second, Renewable: true})
	h := newIssuer(t, tg, OpenBaoConfig{}, env{"BAO_TOKEN": tok}, nil)
	ti := waitState(t, h.o, TokenValid)
	if ti.Source != SourceBaoToken || ti.TTL <= 0 || ti.TTL > 6*time.Second || !ti.Renewable {
		t.Fatalf("token info at start: %+v", ti)
	}
	if s := tg.Fake; s != nil && s.Requests(tg.Mount+"/sign/eng") != 0 {
		t.Fatal("a sign was needed to look the token up")
	}
	for end := time.Now().Add(18 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if ti := h.o.TokenInfo(); ti.Problem != "" || ti.TTL < time.Second {
			t.Fatalf("idle renewable token: %+v", ti)
		}
	}
	if s := tg.Fake; s != nil && s.Requests("auth/token/renew-self") < 3 {
		t.Errorf("%d renewals in three TTLs, want at least 3", s.Requests("auth/token/renew-self"))
	}
	if _, err := h.issue("alice"); err != nil {
		t.Fatalf("sign after three idle TTLs: %v", err)
	}
}

// TestTokenRevokedThenFreshTokenFile: a revoked token is told apart from a
// policy refusal, status says so with the fix, and a fresh token written
// to the token file is picked up without a restart.
func TestTokenRevokedThenFreshTokenFile(t *testing.T) {
	t.Parallel()
	tg := server(t)
	file := filepath.Join(t.TempDir(), "vault-token")
	write := func(tok string) {
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tok1 := tg.NewToken(t, time.Hour)
	write(tok1)
	h := newIssuer(t, tg, OpenBaoConfig{}, env{"BAO_TOKEN_PATH": file}, nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	tg.RevokeToken(t, tok1)

	ti := h.o.CheckToken(context.Background())
	if ti.State != TokenInvalid || !strings.Contains(ti.Problem, "expired or revoked") || !strings.Contains(ti.Problem, "write a fresh token to "+file) {
		t.Fatalf("token info after revocation: %+v", ti)
	}
	_, err := h.issue("alice")
	var ie *TokenInvalidError
	if !errors.As(err, &ie) || strings.Contains(err.Error(), "policies") {
		t.Fatalf("sign with a revoked token: %v, want TokenInvalidError without a word on policies", err)
	}

	tok2 := tg.NewToken(t, time.Hour)
	write(tok2)
	if _, err := h.issue("alice"); err != nil {
		t.Fatalf("sign after a fresh token file: %v", err)
	}
	if ti := h.o.TokenInfo(); ti.State != TokenValid || ti.Problem != "" {
		t.Errorf("token info after a fresh token file: %+v", ti)
	}
	h.mustNotLeak(err, tok1, tok2)
}

// TestTokenRevokedPickedUpWhileIdle: the schedule (here the status check)
// replaces a revoked token from the file without any issuance.
func TestTokenRevokedPickedUpWhileIdle(t *testing.T) {
	t.Parallel()
	tg := server(t)
	file := filepath.Join(t.TempDir(), "vault-token")
	tok1 := tg.NewToken(t, time.Hour)
	os.WriteFile(file, []byte(tok1), 0o600)
	h := newIssuer(t, tg, OpenBaoConfig{}, env{"BAO_TOKEN_PATH": file}, nil)
	waitState(t, h.o, TokenValid)
	tg.RevokeToken(t, tok1)
	os.WriteFile(file, []byte(tg.NewToken(t, time.Hour)), 0o600)
	if ti := h.o.CheckToken(context.Background()); ti.State != TokenValid || ti.Problem != "" {
		t.Fatalf("token info after revocation and a fresh file: %+v", ti)
	}
	if s := tg.Fake; s != nil && s.Requests(tg.Mount+"/sign/eng") != 0 {
		t.Error("a sign was needed to replace the token")
	}
}

// TestTokenRenewalAfterSeal: renewal during a seal says so; once the
// token expired meanwhile, the refused renewal is explained as an expired
// token, not as a bare 403.
func TestTokenRenewalAfterSeal(t *testing.T) {
	clock := newClock()
	s := fake(t, openbaotest.Options{Now: clock.Now})
	tok := s.CreateToken([]string{"default", "warden-eng"}, 30*time.Minute, true)
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, env{"BAO_TOKEN": tok}, clock.Now)
	waitState(t, h.o, TokenValid)
	s.Seal()
	clock.Advance(21 * time.Minute)
	h.o.tokens.tick(context.Background())
	ti := h.o.TokenInfo()
	if !strings.Contains(ti.RenewError, "sealed") || !strings.Contains(ti.RenewError, "bao operator unseal") ||
		!strings.Contains(ti.Problem, "expires in 9m0s and its renewal fails") {
		t.Fatalf("token info while sealed with 9m left: %+v", ti)
	}
	clock.Advance(10 * time.Minute) // expired while sealed
	s.Unseal()
	h.o.tokens.tick(context.Background())
	ti = h.o.TokenInfo()
	if ti.State != TokenInvalid || !strings.Contains(ti.Problem, "expired or revoked") || strings.Contains(ti.Problem, `403 "permission denied"`) {
		t.Fatalf("token info after the seal: %+v", ti)
	}
	_, err := h.issue("alice")
	if err == nil || !strings.Contains(err.Error(), "restart it with a fresh one") {
		t.Errorf("sign after the seal: %v", err)
	}
}

// TestTokenMaxTTL: a renewal capped by the max TTL is noticed, not
// repeated, and the token is reported before it runs out.
func TestTokenMaxTTL(t *testing.T) {
	clock := newClock()
	s := fake(t, openbaotest.Options{Now: clock.Now})
	tok := s.CreateTokenSpec(openbaotest.TokenSpec{TTL: 30 * time.Minute, MaxTTL: 40 * time.Minute, Renewable: true})
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, env{"BAO_TOKEN": tok}, clock.Now)
	waitState(t, h.o, TokenValid)
	clock.Advance(21 * time.Minute)
	h.o.tokens.tick(context.Background())
	ti := h.o.TokenInfo()
	if !ti.MaxTTLReached || ti.TTL != 19*time.Minute || ti.Problem != "" {
		t.Fatalf("after a capped renewal: %+v", ti)
	}
	clock.Advance(10 * time.Minute)
	h.o.tokens.tick(context.Background())
	if n := s.Requests("auth/token/renew-self"); n != 1 {
		t.Errorf("%d renewals, want 1 (a capped token gains nothing)", n)
	}
	if ti := h.o.TokenInfo(); !strings.Contains(ti.Problem, "has reached its max TTL") || !strings.Contains(ti.Problem, "restart it with a fresh one") {
		t.Errorf("9m before the max TTL: %+v", ti)
	}
}

// TestTokenMissingAndCommandHint: with no source the state is missing
// from the start; a failing token_command is named as the fix instead of
// the built-in broker command.
func TestTokenMissingAndCommandHint(t *testing.T) {
	t.Parallel()
	s := fake(t, openbaotest.Options{})
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, nil, nil)
	if ti := waitState(t, h.o, TokenMissing); !strings.Contains(ti.Problem, "no OpenBao token") || !strings.Contains(ti.Problem, "credential exec") {
		t.Errorf("no source: %+v", ti)
	}
	h = newIssuer(t, s.Target(), OpenBaoConfig{TokenCommand: []string{"/bin/false"}}, nil, nil)
	_, err := h.issue("alice")
	if err == nil || !strings.Contains(err.Error(), "fix the configured token_command (/bin/false)") || strings.Contains(err.Error(), "credential exec") {
		t.Errorf("failing token_command: %v", err)
	}
}

// TestTokenLookupsDoNotDelayRenewal: status looks the token up often;
// renewal still happens when a third of the lease is left, not two thirds
// of whatever was left at the last lookup.
func TestTokenLookupsDoNotDelayRenewal(t *testing.T) {
	clock := newClock()
	s := fake(t, openbaotest.Options{Now: clock.Now})
	tok := s.CreateToken([]string{"default", "warden-eng"}, 30*time.Minute, true)
	h := newIssuer(t, s.Target(), OpenBaoConfig{}, env{"BAO_TOKEN": tok}, clock.Now)
	waitState(t, h.o, TokenValid)
	for range 4 {
		clock.Advance(5 * time.Minute)
		h.o.CheckToken(context.Background())
	}
	clock.Advance(1 * time.Minute) // 21m: 9m left, less than a third of 30m
	h.o.tokens.tick(context.Background())
	if n := s.Requests("auth/token/renew-self"); n != 1 {
		t.Fatalf("%d renewals at 21m after four lookups, want 1", n)
	}
	if ti := h.o.TokenInfo(); ti.TTL != 30*time.Minute {
		t.Errorf("TTL after renewal %s, want 30m", ti.TTL)
	}
}
