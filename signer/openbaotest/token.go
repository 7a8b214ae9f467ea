package openbaotest

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"
)

// TokenSpec describes a token to create: what `bao token create -policy=…
// -ttl=… -explicit-max-ttl=…` makes.
type TokenSpec struct {
	// Policies default to default and the target's policy.
	Policies []string
	TTL      time.Duration
	// MaxTTL caps renewals (explicit_max_ttl): a renewal past it is
	// granted only up to it. Zero: no cap.
	MaxTTL    time.Duration
	Renewable bool
}

// CreateTokenSpec returns a new service token as spec describes.
func (s *Server) CreateTokenSpec(spec TokenSpec) string {
	if spec.Policies == nil {
		spec.Policies = []string{"default", "warden-eng"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.addTokenLocked(token{displayName: "token", policies: spec.Policies, creationTTL: spec.TTL, renewable: spec.Renewable, path: "auth/token/create"})
	if spec.MaxTTL > 0 {
		t := s.tokens[id]
		t.maxExpires = t.issued.Add(spec.MaxTTL)
		t.expires = capExpiry(t, t.expires)
	}
	return id
}

// capExpiry limits a new expiry to the token's max TTL, as OpenBao does
// (it answers a shorter lease_duration than asked, with a warning).
func capExpiry(t *token, e time.Time) time.Time {
	if !t.maxExpires.IsZero() && e.After(t.maxExpires) {
		return t.maxExpires
	}
	return e
}

// serveTokenAPI answers the token endpoints beyond lookup-self and
// renew-self: auth/token/create (for the docs' `bao token create`),
// auth/token/revoke-self and auth/token/revoke. It reports whether path
// was one of them.
func (s *Server) serveTokenAPI(w http.ResponseWriter, r *http.Request, path string) bool {
	switch path {
	case "auth/token/revoke-self":
		// OpenBao's default policy grants it to every token.
		s.mu.Lock()
		t := s.validTokenLocked(r.Header.Get("X-Vault-Token"))
		if t != nil {
			t.revoked = true
		}
		s.mu.Unlock()
		if t == nil {
			writeErr(w, http.StatusForbidden, "permission denied")
			return true
		}
		w.WriteHeader(http.StatusNoContent)
	case "auth/token/revoke":
		s.withToken(w, r, path, "update", func(w http.ResponseWriter, r *http.Request, t *token) {
			var in struct {
				Token string `json:"token"`
			}
			if err := decodeBody(r, &in); err != nil || in.Token == "" {
				writeErr(w, http.StatusBadRequest, "missing token")
				return
			}
			s.RevokeToken(in.Token)
			w.WriteHeader(http.StatusNoContent)
		})
	case "auth/token/create":
		s.withToken(w, r, path, "update", func(w http.ResponseWriter, r *http.Request, t *token) {
			var in struct {
				Policies       []string `json:"policies"`
				TTL            any      `json:"ttl"`
				ExplicitMaxTTL any      `json:"explicit_max_ttl"`
				Renewable      *bool    `json:"renewable"`
			}
			if err := decodeBody(r, &in); err != nil {
				writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
				return
			}
			ttl, err := parseDuration(in.TTL)
			if err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			maxTTL, err := parseDuration(in.ExplicitMaxTTL)
			if err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			if ttl <= 0 {
				ttl = 768 * time.Hour // OpenBao's default max lease TTL
			}
			policies := append([]string{"default"}, in.Policies...)
			id := s.CreateTokenSpec(TokenSpec{Policies: policies, TTL: ttl, MaxTTL: maxTTL, Renewable: in.Renewable == nil || *in.Renewable})
			s.mu.Lock()
			cp := *s.tokens[id]
			s.mu.Unlock()
			cp.creationTTL = cp.expires.Sub(s.now())
			s.writeAuth(w, &cp, nil)
		})
	default:
		return false
	}
	return true
}

// NewTokenSpec returns a fresh token as spec describes, on the test server
// or on the real one (Real), whose root token creates it.
func (tg *Target) NewTokenSpec(t testing.TB, spec TokenSpec) string {
	t.Helper()
	if tg.Fake != nil {
		if spec.Policies == nil {
			spec.Policies = []string{"default", tg.Policy}
		}
		return tg.Fake.CreateTokenSpec(spec)
	}
	cfg := api.DefaultConfig()
	cfg.Address = tg.Address
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("openbaotest: client for %s: %v", tg.Address, err)
	}
	c.SetToken(os.Getenv(EnvToken))
	if spec.Policies == nil {
		spec.Policies = []string{tg.Policy}
	}
	req := &api.TokenCreateRequest{Policies: spec.Policies, TTL: spec.TTL.String(), Renewable: ptr(spec.Renewable)}
	if spec.MaxTTL > 0 {
		req.ExplicitMaxTTL = spec.MaxTTL.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sec, err := c.Auth().Token().CreateWithContext(ctx, req)
	if err != nil || sec == nil || sec.Auth == nil {
		t.Fatalf("openbaotest: create token: %v", err)
	}
	tok := sec.Auth.ClientToken
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Auth().Token().RevokeTreeWithContext(ctx, tok)
	})
	return tok
}
