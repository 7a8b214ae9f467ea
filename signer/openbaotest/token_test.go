package openbaotest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestTokenLimits: lookup-self counts the TTL down, renewal stops at the
// max TTL with a shorter grant, revoke-self ends the token, and
// auth/token/create makes what `bao token create` asks for.
func TestTokenLimits(t *testing.T) {
	c := &clock{t: time.Now()}
	s := NewServer(t, Options{Now: c.now})
	tok := s.CreateTokenSpec(TokenSpec{TTL: time.Minute, MaxTTL: 90 * time.Second, Renewable: true})
	ttl := func() int {
		t.Helper()
		status, body := call(t, s, "GET", "auth/token/lookup-self", tok, "")
		if status != 200 {
			t.Fatalf("lookup-self: %d %s", status, body)
		}
		var out struct{ Data struct{ TTL int } }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out.Data.TTL
	}
	c.add(20 * time.Second)
	if got := ttl(); got != 40 {
		t.Errorf("ttl after 20s = %d, want 40", got)
	}
	renew := func() int {
		t.Helper()
		status, body := call(t, s, "POST", "auth/token/renew-self", tok, `{"increment":"60s"}`)
		if status != 200 {
			t.Fatalf("renew-self: %d %s", status, body)
		}
		var out struct {
			Auth struct {
				LeaseDuration int `json:"lease_duration"`
			}
		}
		_ = json.Unmarshal([]byte(body), &out)
		return out.Auth.LeaseDuration
	}
	if got := renew(); got != 60 {
		t.Errorf("first renewal granted %d, want 60", got)
	}
	c.add(50 * time.Second) // 70s of 90s max
	if got := renew(); got != 20 {
		t.Errorf("renewal near the max TTL granted %d, want 20", got)
	}
	c.add(21 * time.Second)
	if status, _ := call(t, s, "GET", "auth/token/lookup-self", tok, ""); status != 403 {
		t.Errorf("lookup-self after the max TTL: %d, want 403", status)
	}

	tok2 := s.CreateToken([]string{"default"}, time.Hour, true)
	if status, body := call(t, s, "POST", "auth/token/revoke-self", tok2, ""); status != 204 {
		t.Fatalf("revoke-self: %d %s", status, body)
	}
	if status, _ := call(t, s, "GET", "auth/token/lookup-self", tok2, ""); status != 403 {
		t.Errorf("lookup-self after revoke-self: %d, want 403", status)
	}

	status, body := call(t, s, "POST", "auth/token/create", s.RootToken(), `{"policies":["warden-eng"],"ttl":"1h"}`)
	if status != 200 {
		t.Fatalf("token create: %d %s", status, body)
	}
	var out struct {
		Auth struct {
			ClientToken   string   `json:"client_token"`
			Policies      []string `json:"policies"`
			LeaseDuration int      `json:"lease_duration"`
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Auth.LeaseDuration != 3600 || len(out.Auth.Policies) != 2 {
		t.Fatalf("token create answer %s (%v)", body, err)
	}
	if status, _ := call(t, s, "POST", "auth/token/create", out.Auth.ClientToken, `{}`); status != 403 {
		t.Errorf("a warden-eng token created a token: %d", status)
	}
}
