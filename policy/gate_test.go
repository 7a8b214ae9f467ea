package policy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// gateServer answers every POST with answer (or hangs for delay).
func gateServer(t *testing.T, status int, answer string, delay time.Duration, got *GateRequest) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if got != nil {
			json.NewDecoder(r.Body).Decode(got)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func gatedPolicy(t *testing.T, url, onError string) *Policy {
	t.Helper()
	src := "rules:\n  - effect: allow\n    max_ttl: 1m\ngate:\n  enabled: true\n  url: " + url + "\n  timeout: 200ms\n"
	if onError != "" {
		src += "  on_error: " + onError + "\n"
	}
	return mustParse(t, src)
}

var gateInput = Input{Subject: "alice", Principal: "deploy", Host: "db1.prod.example.com", Route: "prod-db",
	Callers: chain("/usr/bin/ssh", "/bin/bash"), Forwarded: true, Bound: true}

func TestGate(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		answer     string
		delay      time.Duration
		onError    string
		effect     Effect
		gateAllow  bool
		reasonPart string
	}{
		{"allow", 200, `{"allow": true, "reason": "change CHG-1 open"}`, 0, "", EffectAllow, true, "CHG-1"},
		{"deny", 200, `{"allow": false, "reason": "outside change window"}`, 0, "", EffectDeny, false, "outside change window"},
		{"timeout, on_error deny", 200, `{"allow": true}`, 2 * time.Second, "deny", EffectDeny, false, "gate unavailable (on_error: deny)"},
		{"timeout, on_error allow", 200, `{"allow": false}`, 2 * time.Second, "allow", EffectAllow, true, "gate unavailable (on_error: allow)"},
		{"timeout, on_error default is deny", 200, `{"allow": true}`, 2 * time.Second, "", EffectDeny, false, "on_error: deny"},
		{"non-2xx", 500, `{"allow": true}`, 0, "deny", EffectDeny, false, "status 500"},
		{"malformed", 200, `allow`, 0, "deny", EffectDeny, false, "malformed answer"},
		{"allow missing", 200, `{"reason": "x"}`, 0, "deny", EffectDeny, false, `no "allow" field`},
		{"oversized", 200, `{"allow": true, "reason": "` + strings.Repeat("x", 70<<10) + `"}`, 0, "deny", EffectDeny, false, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got GateRequest
			srv := gateServer(t, tt.status, tt.answer, tt.delay, &got)
			p := gatedPolicy(t, srv.URL, tt.onError)
			start := time.Now()
			d := p.Decide(context.Background(), gateInput, DecideDeps{HTTPClient: srv.Client()})
			if time.Since(start) > time.Second {
				t.Errorf("decision took %v; the gate timeout is 200ms", time.Since(start))
			}
			if d.Effect != tt.effect || d.GateAllow == nil || *d.GateAllow != tt.gateAllow || !strings.Contains(d.GateReason+" "+d.Reason, tt.reasonPart) {
				t.Fatalf("decision %+v (gate allow %v)", d, d.GateAllow)
			}
			if d.MaxTTL != time.Minute {
				t.Errorf("max_ttl lost: %v", d.MaxTTL)
			}
			if tt.delay == 0 {
				want := GateRequest{Subject: "alice", Principal: "deploy", Host: "db1.prod.example.com", Route: "prod-db", Caller: "/usr/bin/ssh", Forwarded: true}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("gate got %+v, want %+v", got, want)
				}
			}
		})
	}
}

func TestGateDisabledOrAfterDeny(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++; w.Write([]byte(`{"allow":true}`)) }))
	defer srv.Close()
	p := mustParse(t, "rules:\n  - {principals: [root], effect: deny}\n  - {effect: allow}\ngate:\n  enabled: false\n  url: "+srv.URL+"\n")
	if d := p.Decide(context.Background(), Input{Principal: "alice"}, DecideDeps{}); d.Effect != EffectAllow || d.GateAllow != nil {
		t.Errorf("disabled gate: %+v", d)
	}
	p.Gate.Enabled = true
	if d := p.Decide(context.Background(), Input{Principal: "root"}, DecideDeps{}); d.Effect != EffectDeny || d.GateAllow != nil {
		t.Errorf("deny by rule must not ask the gate: %+v", d)
	}
	if calls != 0 {
		t.Errorf("gate called %d times", calls)
	}
}

// askpass writes a test SSH_ASKPASS program that records its prompt and
// environment and answers with exit status code (or sleeps).
func askpass(t *testing.T, body string) (prog, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "asked")
	prog = filepath.Join(dir, "askpass")
	script := "#!/bin/sh\nprintf '%s|%s' \"$SSH_ASKPASS_PROMPT\" \"$1\" > " + record + "\n" + body + "\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, record
}

func TestConfirm(t *testing.T) {
	yes, rec := askpass(t, "exit 0")
	ok, err := Confirm(context.Background(), yes, "Allow deploy@db1?")
	if !ok || err != nil {
		t.Fatalf("yes: %v %v", ok, err)
	}
	if b, _ := os.ReadFile(rec); string(b) != "confirm|Allow deploy@db1?" {
		t.Errorf("askpass saw %q", b)
	}
	no, _ := askpass(t, "exit 1")
	if ok, err := Confirm(context.Background(), no, "p"); ok || err != nil {
		t.Fatalf("no: %v %v", ok, err)
	}
	slow, _ := askpass(t, "exec sleep 10")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if ok, err := Confirm(ctx, slow, "p"); ok || err == nil {
		t.Fatalf("timeout: %v %v", ok, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
	if ok, err := Confirm(context.Background(), "", "p"); ok || err == nil {
		t.Fatal("no askpass must deny with an error")
	}
}

func TestDecideConfirm(t *testing.T) {
	p := mustParse(t, "rules:\n  - name: prod\n    hosts: ['*.prod']\n    effect: confirm\n    max_ttl: 5m\n")
	in := Input{Principal: "deploy", Host: "db1.prod", Route: "prod", Callers: chain("/usr/bin/ssh", "/bin/bash")}

	yes, rec := askpass(t, "exit 0")
	d := p.Decide(context.Background(), in, DecideDeps{Askpass: yes})
	if d.Effect != EffectAllow || !d.Confirmed || d.Rule != "prod" || d.MaxTTL != 5*time.Minute {
		t.Fatalf("yes: %+v", d)
	}
	b, _ := os.ReadFile(rec)
	for _, want := range []string{"confirm|", "deploy@db1.prod", "/usr/bin/ssh < /bin/bash"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("prompt %q lacks %q", b, want)
		}
	}
	no, _ := askpass(t, "exit 1")
	if d := p.Decide(context.Background(), in, DecideDeps{Askpass: no}); d.Effect != EffectDeny || d.Confirmed || !strings.Contains(d.Reason, "refused") {
		t.Fatalf("no: %+v", d)
	}
	slow, _ := askpass(t, "exec sleep 10")
	if d := p.Decide(context.Background(), in, DecideDeps{Askpass: slow, ConfirmTimeout: 100 * time.Millisecond}); d.Effect != EffectDeny || !strings.Contains(d.Reason, "no answer in time") {
		t.Fatalf("timeout: %+v", d)
	}
	if d := p.Decide(context.Background(), in, DecideDeps{}); d.Effect != EffectDeny {
		t.Fatalf("no askpass: %+v", d)
	}
}
