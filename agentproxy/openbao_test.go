package agentproxy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// These tests run the agent with the OpenBao issuer against
// signer/openbaotest's server, or against a real OpenBao when
// WARDEN_TEST_BAO_ADDR and WARDEN_TEST_BAO_TOKEN are set (baoTarget). Tests
// that need the test server's knobs (seal, delay, tamper) always use it.

// baoTarget returns a real OpenBao prepared by openbaotest.Real when one is
// configured, else a fresh test server.
func baoTarget(t *testing.T) *openbaotest.Target {
	t.Helper()
	if tg := openbaotest.Real(t); tg != nil {
		return tg
	}
	return openbaotest.NewServer(t, openbaotest.Options{}).Target()
}

// signExchange is one sign request seen on the wire and its answer.
type signExchange struct {
	Header http.Header
	Status int
	// Serial is data.serial_number of the answer, as OpenBao wrote it (hex).
	Serial string
	Err    error
}

// baoWireLog sits under the issuer's HTTP client and records every sign
// request and the serial OpenBao answered with. It works the same against
// the test server and a real one.
type baoWireLog struct {
	base  http.RoundTripper
	mount string

	mu    sync.Mutex
	signs []signExchange
}

func (w *baoWireLog) RoundTrip(req *http.Request) (*http.Response, error) {
	isSign := strings.HasPrefix(req.URL.Path, "/v1/"+w.mount+"/sign/")
	hdr := req.Header.Clone()
	resp, err := w.base.RoundTrip(req)
	if !isSign {
		return resp, err
	}
	ex := signExchange{Header: hdr, Err: err}
	if resp != nil {
		ex.Status = resp.StatusCode
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr == nil {
			var env struct {
				Data struct {
					SerialNumber string `json:"serial_number"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &env) == nil {
				ex.Serial = env.Data.SerialNumber
			}
		}
	}
	w.mu.Lock()
	w.signs = append(w.signs, ex)
	w.mu.Unlock()
	return resp, err
}

func (w *baoWireLog) exchanges() []signExchange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.signs)
}

// newBaoIssuer builds the OpenBao issuer for tg with a hermetic
// environment (no BAO_*/VAULT_* variables, an empty home directory). cfg's
// Address and Mount default to tg's.
func newBaoIssuer(t *testing.T, tg *openbaotest.Target, cfg signer.OpenBaoConfig) (*signer.OpenBao, *baoWireLog) {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = tg.Address
	}
	if cfg.Mount == "" {
		cfg.Mount = tg.Mount
	}
	var base http.RoundTripper = http.DefaultTransport
	if tg.HTTPClient != nil && tg.HTTPClient.Transport != nil {
		base = tg.HTTPClient.Transport
	}
	wl := &baoWireLog{base: base, mount: tg.Mount}
	iss, err := signer.NewOpenBao(cfg, signer.OpenBaoDeps{
		Getenv:     func(string) string { return "" },
		HomeDir:    t.TempDir(),
		HTTPClient: &http.Client{Transport: wl},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	return iss, wl
}

// startBao runs a warden server whose issuer is iss and whose catalog is
// routes(pinned), pinned being the authorized_keys line of env.host.
func startBao(t *testing.T, iss signer.Issuer, listDeadline time.Duration, upstream string, routes func(pinned string) []catalog.Route) *testEnv {
	t.Helper()
	return startServer(t, func(cfg *Config, cat *catalog.Catalog) {
		cfg.Issuer = iss
		if listDeadline > 0 {
			cfg.ListDeadline = listDeadline
		}
		cfg.Upstream = upstream
		cat.Routes = routes(cat.Routes[0].HostKeys[0])
	})
}

// baoRoute is a route to tg's role for principals.
func baoRoute(tg *openbaotest.Target, name string, principals ...string) catalog.Route {
	return catalog.Route{Name: name, Mount: tg.Mount, Role: tg.Role, Principals: principals}
}

// waitBaoRecord polls for a record of event that satisfies ok.
func waitBaoRecord(rec *memRecorder, event string, timeout time.Duration, ok func(map[string]any) bool) map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		rec.mu.Lock()
		for _, e := range rec.events {
			if e["event"] == event && (ok == nil || ok(e)) {
				rec.mu.Unlock()
				return e
			}
		}
		rec.mu.Unlock()
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func baoRecords(rec *memRecorder, event string) []map[string]any {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []map[string]any
	for _, e := range rec.events {
		if e["event"] == event {
			out = append(out, e)
		}
	}
	return out
}

func baoStr(v any) string { s, _ := v.(string); return s }

func TestOpenBaoLoginWithRealSSH(t *testing.T) {
	tg := baoTarget(t)
	sshd := startSSHD(t, tg.CAPublicKey)
	if tg.Fake != nil {
		role := openbaotest.EngRole()
		if !slices.Contains(role.AllowedUsers, sshd.User) {
			role.AllowedUsers = append(role.AllowedUsers, sshd.User)
			tg.Fake.SetRole(tg.Role, role)
		}
	} else if !slices.Contains([]string{"deploy", "alice", "root"}, sshd.User) {
		t.Skipf("the real server's role eng does not allow %s; run as root", sshd.User)
	}
	iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour)})
	env := startBao(t, iss, 0, "", func(string) []catalog.Route {
		r := baoRoute(tg, "sshd", sshd.User)
		r.HostKeys = []string{sshd.HostKeyLine}
		return []catalog.Route{r}
	})

	res := sshd.runSSH(t, env.socket, sshd.User, "echo", "ok")
	if res.Err != nil || strings.TrimSpace(res.Stdout) != "ok" {
		t.Fatalf("ssh: err=%v stdout=%q stderr=%q\nissue_failed: %v\nsshd log:\n%s",
			res.Err, res.Stdout, res.Stderr, env.rec.last(evIssueFailed), sshd.Log())
	}

	issued := baoRecords(env.rec, evCertIssued)
	if len(issued) != 1 {
		t.Fatalf("%d cert.issued records, want 1", len(issued))
	}
	rec := issued[0]
	if rec["issuer"] != "openbao" || rec["route"] != "sshd" || rec["source"] != "host-key" || baoStr(rec["request_id"]) == "" {
		t.Errorf("cert.issued record %v: want issuer openbao, route sshd, source host-key and a request_id", rec)
	}

	// Exactly one sign request reached OpenBao, and the certificate carries
	// the serial OpenBao answered with.
	exs := wl.exchanges()
	if len(exs) != 1 || exs[0].Status != http.StatusOK {
		t.Fatalf("sign requests on the wire: %+v, want one answered 200", exs)
	}
	if tg.Fake != nil {
		if n := tg.Fake.Requests(tg.Mount + "/sign/" + tg.Role); n != 1 {
			t.Errorf("test server counted %d sign requests, want 1", n)
		}
	}
	baoSerial, err := strconv.ParseUint(strings.ReplaceAll(exs[0].Serial, ":", ""), 16, 64)
	if err != nil {
		t.Fatalf("serial_number %q from OpenBao: %v", exs[0].Serial, err)
	}
	if want := fmt.Sprintf("%x", baoSerial); rec["serial"] != want {
		t.Errorf("audit serial %v, OpenBao returned %s", rec["serial"], want)
	}
	if want := strconv.FormatUint(baoSerial, 10); rec["serial_dec"] != want {
		t.Errorf("audit serial_dec %v, OpenBao returned %s", rec["serial_dec"], want)
	}
	// sshd logged the same serial (in decimal) for the login it accepted.
	if got, ok := sshd.AcceptedSerial(sshd.User, 5*time.Second); !ok {
		t.Errorf("sshd logged no accepted certificate login:\n%s", sshd.Log())
	} else if got != strconv.FormatUint(baoSerial, 10) {
		t.Errorf("sshd accepted serial %s, OpenBao returned %d", got, baoSerial)
	}
	// The agent holds the same certificate (an unbound client no longer
	// sees a require_bind certificate it could not use).
	valid := env.srv.Cache().Valid()
	if len(valid) != 1 {
		t.Fatalf("%d certificates held, want 1", len(valid))
	}
	cert := valid[0].Cert
	if got := fmt.Sprintf("%x", cert.Serial); got != rec["serial"] {
		t.Errorf("listed certificate serial %s, audit record %v", got, rec["serial"])
	}
	if !slices.Equal(cert.ValidPrincipals, []string{sshd.User}) {
		t.Errorf("principals %v, want exactly [%s]", cert.ValidPrincipals, sshd.User)
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), tg.CAPublicKey.Marshal()) {
		t.Errorf("certificate signed by %s, want the OpenBao CA %s", ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(tg.CAPublicKey))
	}

	// The sign request carried the connection id and the audit head, so
	// OpenBao's audit log joins ours.
	if got := exs[0].Header.Get(signer.HeaderRequest); got == "" || got != rec["conn"] {
		t.Errorf("%s = %q, want the connection id %v", signer.HeaderRequest, got, rec["conn"])
	}
	if got := exs[0].Header.Get(signer.HeaderAuditHead); got != "head" {
		t.Errorf("%s = %q, want the audit head %q", signer.HeaderAuditHead, got, "head")
	}
	if tg.Fake != nil {
		h := tg.Fake.SignHeaders()
		if len(h) != 1 || h[0].Get(signer.HeaderRequest) != rec["conn"] || h[0].Get(signer.HeaderAuditHead) != "head" {
			t.Errorf("headers at the test server: %v", h)
		}
	}
	// The login signature was recorded with the same serial.
	used := baoRecords(env.rec, evCertUsed)
	if len(used) != 1 || used[0]["serial"] != rec["serial"] || used[0]["user"] != sshd.User {
		t.Errorf("cert.used records %v, want one for serial %v and user %s", used, rec["serial"], sshd.User)
	}
}

// TestOpenBaoRealSSHLoginRefusedByRole: the route allows the login user but
// the OpenBao role does not; the real ssh login fails, nothing was listed
// to sshd, and the refusal is logged with OpenBao's message.
func TestOpenBaoRealSSHLoginRefusedByRole(t *testing.T) {
	fake := openbaotest.NewServer(t, openbaotest.Options{})
	tg := fake.Target()
	sshd := startSSHD(t, tg.CAPublicKey)
	role := openbaotest.EngRole()
	role.AllowedUsers = []string{"deploy"}
	fake.SetRole(tg.Role, role)
	iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour)})
	env := startBao(t, iss, 0, "", func(string) []catalog.Route {
		r := baoRoute(tg, "sshd", sshd.User)
		r.HostKeys = []string{sshd.HostKeyLine}
		return []catalog.Route{r}
	})
	res := sshd.runSSH(t, env.socket, sshd.User, "echo", "ok")
	if res.Err == nil || strings.Contains(res.Stdout, "ok") {
		t.Fatalf("ssh as %s succeeded although the role refuses it: stdout=%q", sshd.User, res.Stdout)
	}
	if !strings.Contains(res.Stderr, "Permission denied") {
		t.Errorf("ssh stderr %q, want Permission denied", res.Stderr)
	}
	f := waitBaoRecord(env.rec, evIssueFailed, 2*time.Second, nil)
	want := sshd.User + " is not a valid value for valid_principals"
	if f == nil || !strings.Contains(baoStr(f["error"]), want) || !strings.Contains(baoStr(f["error"]), "role "+tg.Role) {
		t.Errorf("cert.issue_failed record %v, want the role and %q", f, want)
	}
	if n := env.rec.count(evCertIssued); n != 0 {
		t.Errorf("%d cert.issued records", n)
	}
	if exs := wl.exchanges(); len(exs) != 1 || exs[0].Status != http.StatusBadRequest {
		t.Errorf("sign requests %+v, want one answered 400", exs)
	}
	if _, ok := sshd.AcceptedSerial(sshd.User, 0); ok {
		t.Errorf("sshd accepted a login:\n%s", sshd.Log())
	}
}

func TestOpenBaoHintPrincipalRefusedByRole(t *testing.T) {
	tg := baoTarget(t)
	iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour)})
	env := startBao(t, iss, 0, "", func(string) []catalog.Route {
		r := baoRoute(tg, "mallory-hosts", "mallory")
		r.Hosts = []string{"*.mallory.test"}
		return []catalog.Route{r}
	})
	var reply HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: os.Getpid(), User: "mallory", Host: "db1.mallory.test", Port: 22}, &reply, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.OK || reply.Serial != "" {
		t.Fatalf("hint for a principal the role refuses: %+v, want refused", reply)
	}
	for _, want := range []string{
		"role " + tg.Role,
		"mallory is not a valid value for valid_principals", // OpenBao's own words
		"does not allow principal mallory",
	} {
		if !strings.Contains(reply.Error, want) {
			t.Errorf("hint error %q does not contain %q", reply.Error, want)
		}
	}
	if reply.Route != "mallory-hosts" || reply.Principal != "mallory" {
		t.Errorf("hint reply route %q principal %q", reply.Route, reply.Principal)
	}
	exs := wl.exchanges()
	if len(exs) != 1 || exs[0].Status != http.StatusBadRequest {
		t.Errorf("sign requests: %+v, want one answered 400", exs)
	}
	f := waitBaoRecord(env.rec, evIssueFailed, 2*time.Second, nil)
	if f == nil || !strings.Contains(baoStr(f["error"]), "mallory is not a valid value for valid_principals") {
		t.Errorf("cert.issue_failed record %v", f)
	}
	if n := env.rec.count(evCertIssued); n != 0 {
		t.Errorf("%d cert.issued records after a refusal", n)
	}
	// The ssh process behind the hint then gets no certificate.
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(wardenKeys(keys)) != 0 {
		t.Fatalf("listed %v for a principal the role refuses", keys)
	}
}

func TestOpenBaoHintMissingTokenNamesEverySource(t *testing.T) {
	tg := baoTarget(t)
	home := t.TempDir()
	iss, err := signer.NewOpenBao(signer.OpenBaoConfig{Address: tg.Address, Mount: tg.Mount}, signer.OpenBaoDeps{
		Getenv:     func(string) string { return "" },
		HomeDir:    home,
		HTTPClient: tg.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	env := startBao(t, iss, 0, "", func(string) []catalog.Route {
		r := baoRoute(tg, "hinted", "alice")
		r.Hosts = []string{"*.example.com"}
		return []catalog.Route{r}
	})
	var reply HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: os.Getpid(), User: "alice", Host: "db1.example.com", Port: 22}, &reply, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.OK {
		t.Fatalf("hint without any token: %+v, want refused", reply)
	}
	// Every source, in the order tried, then the fix.
	last := -1
	for _, want := range []string{
		"config token (not set)",
		"BAO_TOKEN (not set)",
		"VAULT_TOKEN (not set)",
		"token file " + filepath.Join(home, ".vault-token") + " (no such file)",
		"approle (not configured)",
		"jwt (not configured)",
		"token_command (not configured)",
		"credential exec ops-warden-warden-sign-token -- warden-agent run",
	} {
		i := strings.Index(reply.Error, want)
		if i < 0 {
			t.Errorf("hint error %q does not name %q", reply.Error, want)
			continue
		}
		if i < last {
			t.Errorf("hint error %q: %q out of order", reply.Error, want)
		}
		last = i
	}
	if tg.Fake != nil {
		if n := tg.Fake.Requests(tg.Mount + "/sign/" + tg.Role); n != 0 {
			t.Errorf("%d sign requests without a token", n)
		}
	}
	if f := waitBaoRecord(env.rec, evIssueFailed, 2*time.Second, nil); f == nil || !strings.Contains(baoStr(f["error"]), "no OpenBao token") {
		t.Errorf("cert.issue_failed record %v", f)
	}
}

// refusingPort is a loopback port that refuses connections (a bound socket
// that does not listen) until open serves a handler on it. Holding the
// port bound keeps anyone else from taking it meanwhile.
type refusingPort struct {
	fd     int
	Addr   string
	opened bool
}

func newRefusingPort(t *testing.T) *refusingPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	p := &refusingPort{fd: fd, Addr: fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)}
	t.Cleanup(func() {
		if !p.opened {
			syscall.Close(p.fd)
		}
	})
	return p
}

// open starts listening and serves h.
func (p *refusingPort) open(t *testing.T, h http.Handler) {
	t.Helper()
	if err := syscall.Listen(p.fd, 128); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(p.fd), "listener")
	p.opened = true
	ln, err := net.FileListener(f) // dups the descriptor
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestOpenBaoOutageFallsBackToUpstreamKeys(t *testing.T) {
	const listDeadline = 2 * time.Second
	cases := []struct {
		name string
		// brk makes the server unusable and returns the address to use
		// and the function that repairs it.
		brk  func(t *testing.T, fake *openbaotest.Server) (addr string, repair func())
		want string // in the cert.issue_failed error
	}{
		{"sealed", func(t *testing.T, fake *openbaotest.Server) (string, func()) {
			fake.Seal()
			return fake.URL, fake.Unseal
		}, "is sealed"},
		{"connection refused", func(t *testing.T, fake *openbaotest.Server) (string, func()) {
			p := newRefusingPort(t)
			u, _ := url.Parse(fake.URL)
			return p.Addr, func() { p.open(t, httputil.NewSingleHostReverseProxy(u)) }
		}, "refused the connection"},
		{"10s hang", func(t *testing.T, fake *openbaotest.Server) (string, func()) {
			fake.SetDelay(10 * time.Second)
			return fake.URL, func() { fake.SetDelay(0) }
		}, "did not answer within"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			upSock, _ := startSSHAgent(t)
			_, userKey, _ := ed25519.GenerateKey(rand.Reader)
			if err := agentClient(t, upSock).Add(agent.AddedKey{PrivateKey: userKey, Comment: "user-key"}); err != nil {
				t.Fatal(err)
			}
			userSigner, _ := ssh.NewSignerFromKey(userKey)

			fake := openbaotest.NewServer(t, openbaotest.Options{})
			tg := fake.Target()
			addr, repair := tc.brk(t, fake)
			// Several logins at once during the outage, each to its own
			// host (so each waits on its own issuance until its own list
			// deadline); each must get the upstream key within the list
			// deadline, and none a warden key.
			const logins = 8
			hosts := make([]ssh.Signer, logins)
			for i := range hosts {
				hosts[i] = newHostKey(t)
			}
			iss, _ := newBaoIssuer(t, tg, signer.OpenBaoConfig{Address: addr, Token: tg.NewToken(t, time.Hour), Timeout: 5 * time.Second})
			env := startBao(t, iss, listDeadline, upSock, func(pinned string) []catalog.Route {
				r := baoRoute(tg, "pinned", "alice")
				r.HostKeys = []string{pinned}
				routes := []catalog.Route{r}
				for i, h := range hosts {
					r := baoRoute(tg, fmt.Sprintf("host%d", i), "alice")
					r.HostKeys = []string{string(ssh.MarshalAuthorizedKey(h.PublicKey()))}
					routes = append(routes, r)
				}
				return routes
			})

			type listed struct {
				keys []*agent.Key
				took time.Duration
				err  error
			}
			results := make([]listed, logins)
			var wg sync.WaitGroup
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("unix", env.socket)
					if err != nil {
						results[i].err = err
						return
					}
					defer c.Close()
					a := agent.NewClient(c)
					sid := make([]byte, 32)
					rand.Read(sid)
					if err := bind(a, hosts[i], sid, false); err != nil {
						results[i].err = err
						return
					}
					start := time.Now()
					results[i].keys, results[i].err = a.List()
					results[i].took = time.Since(start)
				}()
			}
			wg.Wait()
			dropped := 0
			for i, r := range results {
				if r.err != nil {
					t.Fatalf("login %d: list during the outage: %v", i, r.err)
				}
				if r.took >= listDeadline+time.Second {
					t.Errorf("login %d: list took %s, want under the list deadline %s (+1s)", i, r.took, listDeadline)
				}
				if len(wardenKeys(r.keys)) != 0 {
					t.Errorf("login %d: listed a warden key during the outage: %v", i, r.keys)
				}
				if len(r.keys) != 1 || r.keys[0].Comment != "user-key" {
					dropped++
					t.Logf("login %d: list during the outage (took %s) = %v, want only the upstream user-key", i, r.took, r.keys)
				}
			}
			if dropped > 0 {
				t.Errorf("%d of %d logins during the outage did not get the upstream user-key", dropped, logins)
			}
			f := waitBaoRecord(env.rec, evIssueFailed, 5*time.Second, func(r map[string]any) bool {
				return strings.Contains(baoStr(r["error"]), tc.want) && strings.Contains(baoStr(r["error"]), addr)
			})
			if f == nil {
				t.Errorf("no cert.issue_failed record names %s and %q; last one: %v", addr, tc.want, env.rec.last(evIssueFailed))
			}
			// The agent stays healthy: the user's own key still signs.
			_, a := dial(t, env.socket)
			sid := randomSID(t)
			if err := bind(a, env.host, sid, false); err != nil {
				t.Fatal(err)
			}
			data := userauthData(sid, "alice", userSigner.PublicKey(), nil)
			sig, err := a.Sign(userSigner.PublicKey(), data)
			if err != nil {
				t.Fatalf("upstream sign during the outage: %v", err)
			}
			if err := userSigner.PublicKey().Verify(data, sig); err != nil {
				t.Fatal(err)
			}

			// The server recovers; once the failure back-off has passed the
			// next login gets a certificate.
			repair()
			var cert *ssh.Certificate
			var last []*agent.Key
			deadline := time.Now().Add(20 * time.Second)
			for cert == nil && time.Now().Before(deadline) {
				_, b := dial(t, env.socket)
				sid2 := randomSID(t)
				if err := bind(b, env.host, sid2, false); err != nil {
					t.Fatal(err)
				}
				keys, err := b.List()
				if err != nil {
					t.Fatal(err)
				}
				last = keys
				if c := wardenKeys(keys); len(c) == 1 {
					cert = parseCert(t, c[0])
					if keys[0] != c[0] || len(keys) != 2 {
						t.Errorf("list after recovery = %v, want [warden cert, user-key]", keys)
					}
					if _, err := b.Sign(cert, userauthData(sid2, "alice", cert, nil)); err != nil {
						t.Errorf("sign with the new certificate: %v", err)
					}
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if cert == nil {
				t.Fatalf("no certificate within 20s of the server recovering; last list %v, last failure %v", last, env.rec.last(evIssueFailed))
			}
			if !slices.Equal(cert.ValidPrincipals, []string{"alice"}) {
				t.Errorf("principals %v", cert.ValidPrincipals)
			}
		})
	}
}

func TestOpenBaoTamperedCertificateIsNotListed(t *testing.T) {
	cases := []struct {
		name   string
		tamper openbaotest.Tamper
		want   string
	}{
		{"another key", openbaotest.TamperOtherKey, "not our ephemeral key"},
		{"extra principal", openbaotest.TamperExtraPrincipal, "principals"},
		{"another CA", openbaotest.TamperOtherCA, "not by the issuer's CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := openbaotest.NewServer(t, openbaotest.Options{})
			tg := fake.Target()
			fake.SetTamper(tc.tamper)
			iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour)})
			env := startBao(t, iss, 5*time.Second, "", func(pinned string) []catalog.Route {
				r := baoRoute(tg, "pinned", "alice")
				r.HostKeys = []string{pinned}
				return []catalog.Route{r}
			})
			_, a := dial(t, env.socket)
			if err := bind(a, env.host, randomSID(t), false); err != nil {
				t.Fatal(err)
			}
			keys, err := a.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 0 {
				t.Fatalf("listed %v from a tampered answer", keys)
			}
			f := waitBaoRecord(env.rec, evIssueFailed, 2*time.Second, nil)
			if f == nil || !strings.Contains(baoStr(f["error"]), "invalid certificate") || !strings.Contains(baoStr(f["error"]), tc.want) {
				t.Errorf("cert.issue_failed record %v, want 'invalid certificate' and %q", f, tc.want)
			}
			if n := env.rec.count(evCertIssued); n != 0 {
				t.Errorf("%d cert.issued records", n)
			}
			if n := len(env.srv.Cache().Valid()); n != 0 {
				t.Errorf("%d certificates in the cache", n)
			}
			// No blind retry of the sign call.
			if exs := wl.exchanges(); len(exs) != 1 || fake.Requests(tg.Mount+"/sign/"+tg.Role) != 1 {
				t.Errorf("sign requests: wire %d, server %d; want 1", len(exs), fake.Requests(tg.Mount+"/sign/"+tg.Role))
			}
		})
	}
}

func TestOpenBaoConcurrentLoginsShareOneSignRequest(t *testing.T) {
	tg := baoTarget(t)
	if tg.Fake != nil {
		tg.Fake.SetDelay(100 * time.Millisecond) // keep the issuance in flight while the others ask
	}
	iss, wl := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour)})
	env := startBao(t, iss, 10*time.Second, "", func(pinned string) []catalog.Route {
		r := baoRoute(tg, "pinned", "alice")
		r.HostKeys = []string{pinned}
		return []catalog.Route{r}
	})
	const clients = 50
	results := listBurst(t, env.socket, env.host, clients, 30*time.Second)
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("client: %v (last failure %v)", r.err, env.rec.last(evIssueFailed))
		}
	}
	serial := oneSharedCertificate(t, results)
	exs := wl.exchanges()
	if len(exs) != 1 {
		t.Fatalf("%d sign requests reached OpenBao for %d concurrent logins, want exactly 1", len(exs), clients)
	}
	if tg.Fake != nil {
		if n := tg.Fake.Requests(tg.Mount + "/sign/" + tg.Role); n != 1 {
			t.Fatalf("test server counted %d sign requests, want exactly 1", n)
		}
	}
	if want, err := strconv.ParseUint(exs[0].Serial, 16, 64); err != nil || want != serial {
		t.Errorf("clients got serial %x, OpenBao returned %q", serial, exs[0].Serial)
	}
	if n := env.rec.count(evCertIssued); n != 1 {
		t.Errorf("%d cert.issued records, want 1", n)
	}
}

// TestOpenBaoHintDuringHangNamesAddress: while OpenBao hangs, the hint
// (whose error is what `warden-agent hint` prints on ssh's terminal) must
// say which address did not answer (issue 3: "503 sealed, connection
// refused, TLS failure, timeout: say which address and what happened"), for
// one login alone and for two logins at once on a cold agent, where one of
// them waits for the other's token lookup.
func TestOpenBaoHintDuringHangNamesAddress(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d logins", n), func(t *testing.T) {
			t.Parallel()
			fake := openbaotest.NewServer(t, openbaotest.Options{})
			tg := fake.Target()
			fake.SetDelay(10 * time.Second)
			iss, _ := newBaoIssuer(t, tg, signer.OpenBaoConfig{Token: tg.NewToken(t, time.Hour), Timeout: 5 * time.Second})
			env := startBao(t, iss, 2*time.Second, "", func(string) []catalog.Route {
				a := baoRoute(tg, "a", "alice")
				a.Hosts = []string{"a.example.com"}
				b := baoRoute(tg, "b", "alice")
				b.Hosts = []string{"b.example.com"}
				return []catalog.Route{a, b}
			})
			hosts := []string{"a.example.com", "b.example.com"}[:n]
			replies := make([]HintReply, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i, host := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Each login is its own ssh process.
					replies[i], errs[i] = hintFromChild(t, env.socket, "alice", host)
				}()
			}
			wg.Wait()
			for i, r := range replies {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				if r.OK || !strings.Contains(r.Error, tg.Address) || !strings.Contains(r.Error, "did not answer within") {
					t.Errorf("hint for %s during a hang: error %q, want it to name %s and say 'did not answer within'", hosts[i], r.Error, tg.Address)
				}
			}
		})
	}
}
