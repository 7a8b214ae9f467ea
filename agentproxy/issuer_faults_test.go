package agentproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// Issuer faults under concurrent logins (issue 7): every client gets an
// answer within the list deadline, the issuer is not stormed (the cache's
// single flight and back-off bound the calls), and the agent recovers
// without a restart once the fault ends.

const (
	faultClients      = 20
	faultListDeadline = time.Second
	// faultSlack covers a loaded two-core CI machine; the point is that a
	// list answers at all, not how fast.
	faultSlack = 4 * time.Second
)

// faultBurst has faultClients clients bind to host and list at the same
// moment; each must answer within the list deadline with no warden key.
func faultBurst(t *testing.T, socket string, host ssh.Signer, what string) {
	t.Helper()
	for i, r := range listBurst(t, socket, host, faultClients, faultListDeadline+faultSlack) {
		switch {
		case r.err != nil:
			t.Errorf("client %d (%s): %v", i, what, r.err)
		case len(wardenKeys(r.keys)) != 0:
			t.Errorf("client %d listed a certificate while the issuer fails (%s)", i, what)
		}
	}
}

// waitLoginRecovers retries a full login (bind, list, sign, verify) until
// one succeeds; the back-off after the fault is at most 15 s.
func waitLoginRecovers(t *testing.T, socket string, host ssh.Signer) {
	t.Helper()
	var last error
	if !waitFor(20*time.Second, func() bool {
		if last = loginAndSign(socket, host); last != nil {
			time.Sleep(200 * time.Millisecond)
		}
		return last == nil
	}) {
		t.Fatalf("no certificate 20s after the fault ended: %v", last)
	}
}

// faultIssuer wraps a local CA with switchable faults.
type faultIssuer struct {
	*signer.LocalCA
	mode  atomic.Value // string: "", "error", "hang", "invalid"
	calls atomic.Int64
}

func (f *faultIssuer) Issue(ctx context.Context, req signer.Request) (*signer.Issued, error) {
	f.calls.Add(1)
	switch m, _ := f.mode.Load().(string); m {
	case "error":
		return nil, errors.New("issuer refused: connection refused")
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	case "invalid":
		return nil, fmt.Errorf("%w: signed by another CA", signer.ErrInvalidCertificate)
	}
	return f.LocalCA.Issue(ctx, req)
}

// TestFaultIssuerUnderConcurrentLogins runs the faults as the issuer
// interface reports them, on the local CA.
func TestFaultIssuerUnderConcurrentLogins(t *testing.T) {
	modes := []string{"error", "hang", "invalid"}
	hosts := map[string]ssh.Signer{}
	iss := &faultIssuer{}
	iss.mode.Store("")
	env := startServer(t, func(cfg *Config, cat *catalog.Catalog) {
		ca, err := signer.OpenLocalCA(filepath.Join(t.TempDir(), "ca"), nil)
		if err != nil {
			t.Fatal(err)
		}
		iss.LocalCA = ca
		cfg.Issuer = iss
		cfg.ListDeadline = faultListDeadline
		// One route per fault, so each starts without back-off.
		for _, m := range modes {
			h := newHostKey(t)
			hosts[m] = h
			cat.Routes = append(cat.Routes, catalog.Route{
				Name: "fault-" + m, HostKeys: []string{string(ssh.MarshalAuthorizedKey(h.PublicKey()))}, Principals: []string{"deploy"},
			})
		}
	})
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			host := hosts[mode]
			iss.mode.Store(mode)
			iss.calls.Store(0)
			faultBurst(t, env.socket, host, mode)
			if n := iss.calls.Load(); n < 1 || n > 3 {
				t.Errorf("issuer called %d times for %d concurrent logins during the fault, want 1..3", n, faultClients)
			}
			if got := env.rec.count(evIssueFailed); got < 1 {
				t.Errorf("no issue.failed record")
			}
			iss.mode.Store("")
			waitLoginRecovers(t, env.socket, host)
			if n := iss.calls.Load(); n > 6 {
				t.Errorf("issuer called %d times in all for this fault and its recovery", n)
			}
		})
	}
}

// TestFaultOpenBaoUnderConcurrentLogins runs the same bursts against the
// OpenBao issuer talking HTTP to the OpenBao-compatible test server, with
// the faults a real server shows: nothing listening, no answer, 403, 429,
// 500, sealed, and a certificate that fails validation.
func TestFaultOpenBaoUnderConcurrentLogins(t *testing.T) {
	fake := openbaotest.NewServer(t, openbaotest.Options{})
	tg := fake.Target()
	proxy := newSwitchProxy(t, tg.Address)
	iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Address: proxy.url, Token: tg.NewToken(t, time.Hour)})

	type fault struct {
		name       string
		start, end func()
		// reason is what issue.failed must say, so an operator reading the
		// audit log knows which fault it was.
		reason string
	}
	faults := []fault{
		{"refused", proxy.down, proxy.up, "refused"},
		{"hang", func() { fake.SetDelay(time.Hour) }, func() { fake.SetDelay(0) }, "check the server and network, or raise list_deadline"},
		{"403", func() { fake.FailSigns(403, `{"errors":["permission denied"]}`) }, func() { fake.FailSigns(0, "") }, "permission denied"},
		{"429", func() { fake.FailSigns(429, `{"errors":["request path \"ssh/sign/eng\": rate limit quota exceeded"]}`) }, func() { fake.FailSigns(0, "") }, "rate limiting this token"},
		{"500", func() { fake.FailSigns(500, `{"errors":["internal error"]}`) }, func() { fake.FailSigns(0, "") }, "internal error"},
		{"sealed", fake.Seal, fake.Unseal, "sealed"},
		{"invalid certificate", func() { fake.SetTamper(openbaotest.TamperOtherCA) }, func() { fake.SetTamper(openbaotest.TamperNone) }, "invalid"},
	}
	hosts := map[string]ssh.Signer{}
	env := startServer(t, func(cfg *Config, cat *catalog.Catalog) {
		cfg.Issuer = iss
		cfg.ListDeadline = faultListDeadline
		// One route per fault, so each starts without back-off.
		cat.Routes = nil
		for _, f := range faults {
			h := newHostKey(t)
			hosts[f.name] = h
			r := baoRoute(tg, "fault-"+strings.ReplaceAll(f.name, " ", "-"), "deploy")
			r.HostKeys = []string{string(ssh.MarshalAuthorizedKey(h.PublicKey()))}
			cat.Routes = append(cat.Routes, r)
		}
	})
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			host := hosts[f.name]
			route := "fault-" + strings.ReplaceAll(f.name, " ", "-")
			before := len(wl.exchanges())
			f.start()
			faultBurst(t, env.socket, host, f.name)
			// Each issuance attempt writes one issue.failed; a 403 earns
			// one re-login and retry, so two sign requests per attempt.
			failures := routeRecords(env.rec, evIssueFailed, route)
			if n := len(failures); n < 1 || n > 3 {
				t.Errorf("%d issuance attempts for %d concurrent logins during the fault, want 1..3", n, faultClients)
			}
			if n := len(wl.exchanges()) - before; n > 2*len(failures) {
				t.Errorf("%d sign requests reached OpenBao for %d issuance attempts", n, len(failures))
			}
			if len(failures) == 0 {
				t.FailNow()
			}
			failed := failures[0]
			if msg := fmt.Sprint(failed["error"]); !strings.Contains(msg, f.reason) {
				t.Errorf("issue.failed says %q, want it to mention %q", msg, f.reason)
			}
			f.end()
			waitLoginRecovers(t, env.socket, host)
			if n := len(wl.exchanges()) - before; n > 8 {
				t.Errorf("%d sign requests in all for this fault and its recovery", n)
			}
		})
	}
}

func routeRecords(rec *memRecorder, event, route string) []map[string]any {
	var out []map[string]any
	for _, r := range baoRecords(rec, event) {
		if r["route"] == route {
			out = append(out, r)
		}
	}
	return out
}

// switchProxy is a TCP relay in front of the test server that can stop
// listening, so the issuer sees a refused connection, and listen again on
// the same port.
type switchProxy struct {
	t      *testing.T
	url    string
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool // open client connections, closed by down
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{t: t, target: u.Host}
	p.up()
	p.addr = p.ln.Addr().String()
	p.url = u.Scheme + "://" + p.addr
	t.Cleanup(p.down)
	return p
}

func (p *switchProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("switch proxy: %v", err)
	}
	p.ln = ln
	go p.accept(ln)
}

func (p *switchProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	// A server that goes away drops its connections too; the issuer's
	// pooled keep-alive connection (its token lookup at start) must not
	// outlive the fault.
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *switchProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.conns == nil {
			p.conns = map[net.Conn]bool{}
		}
		p.conns[c] = true
		p.mu.Unlock()
		go func() {
			defer c.Close()
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer s.Close()
			go func() { io.Copy(s, c); s.Close() }()
			io.Copy(c, s)
		}()
	}
}
