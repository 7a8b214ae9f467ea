package signer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
	"golang.org/x/crypto/ssh"
)

// lie is how the rewriting proxy changes OpenBao's answers.
type lie int

const (
	lieNone      lie = iota
	lieOtherCA       // serve and sign with another CA on both endpoints
	lieExtraExt      // add permit-agent-forwarding
	lieStripCrit     // drop force-command and source-address
	lieRepeatSer     // reuse the first serial it saw
	lieBackdate      // valid from an hour ago
)

// liar is a reverse proxy in front of the test server that rewrites its
// answers the way a lying server or a man in the middle holding the CA key
// would: every rewritten certificate is re-signed, so only warden's
// comparison with its request can refuse it.
type liar struct {
	URL     string
	ca      ssh.Signer // the server's real CA
	otherCA ssh.Signer

	mu    sync.Mutex
	mode  lie
	first uint64 // serial of the first certificate seen
}

func newLiar(t *testing.T) (*liar, *openbaotest.Server) {
	t.Helper()
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	s := fake(t, openbaotest.Options{CAKey: caKey})
	l := &liar{}
	var err error
	if l.ca, err = ssh.NewSignerFromSigner(caKey); err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if l.otherCA, err = ssh.NewSignerFromSigner(other); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.URL)
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = l.rewrite
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	l.URL = ts.URL
	return l, s
}

func (l *liar) set(m lie) { l.mu.Lock(); l.mode = m; l.mu.Unlock() }

func (l *liar) rewrite(resp *http.Response) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	path := resp.Request.URL.Path
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(path, "/public_key") && l.mode == lieOtherCA:
		body = ssh.MarshalAuthorizedKey(l.otherCA.PublicKey())
	case strings.Contains(path, "/sign/") && resp.StatusCode == http.StatusOK:
		if body, err = l.rewriteSign(body); err != nil {
			return err
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func (l *liar) rewriteSign(body []byte) ([]byte, error) {
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	data, _ := env["data"].(map[string]any)
	signed, _ := data["signed_key"].(string)
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(signed))
	if err != nil {
		return nil, err
	}
	cert := pub.(*ssh.Certificate)
	if l.first == 0 {
		l.first = cert.Serial
	}
	signer := l.ca
	switch l.mode {
	case lieNone:
		return body, nil
	case lieOtherCA:
		signer = l.otherCA
	case lieExtraExt:
		cert.Extensions["permit-agent-forwarding"] = ""
	case lieStripCrit:
		delete(cert.CriticalOptions, "force-command")
		delete(cert.CriticalOptions, "source-address")
	case lieRepeatSer:
		cert.Serial = l.first
	case lieBackdate:
		cert.ValidAfter = uint64(time.Now().Add(-time.Hour).Unix())
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return nil, err
	}
	data["signed_key"] = string(ssh.MarshalAuthorizedKey(cert))
	data["serial_number"] = strconv.FormatUint(cert.Serial, 16)
	return json.Marshal(env)
}

// liarIssuer builds an issuer that talks to OpenBao through l and keeps its
// CA pin record in stateDir.
func liarIssuer(t *testing.T, l *liar, s *openbaotest.Server, stateDir string, cfg OpenBaoConfig) *harness {
	t.Helper()
	cfg.Address, cfg.Token, cfg.Mount = l.URL, s.RootToken(), s.Mount()
	logs := &syncBuffer{}
	o, err := NewOpenBao(cfg, OpenBaoDeps{
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Getenv:   env{}.get,
		HomeDir:  t.TempDir(),
		StateDir: stateDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &harness{t: t, tg: s.Target(), o: o, log: logs}
}

// TestOpenBaoLyingServerRefused puts a rewriting proxy between the issuer and
// the test server: each lie is refused, nothing is returned, and the error
// names what differed and no secret.
func TestOpenBaoLyingServerRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		lie  lie
		crit map[string]string
		want string
	}{
		{"extra extension", lieExtraExt, nil, "extensions differ from the request: extra permit-agent-forwarding"},
		{"stripped critical options", lieStripCrit, map[string]string{"force-command": "/usr/bin/true", "source-address": "10.0.0.0/8"},
			"critical options differ from the request: missing force-command, source-address"},
		{"repeated serial", lieRepeatSer, nil, "was already issued to this agent"},
		{"backdated", lieBackdate, nil, "before now; more back-dating than the 2m30s allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, s := newLiar(t)
			h := liarIssuer(t, l, s, t.TempDir(), OpenBaoConfig{})
			req := h.request("alice")
			req.CriticalOptions = tc.crit
			if _, err := h.o.Issue(context.Background(), req); err != nil {
				t.Fatalf("honest answer refused: %v", err)
			}
			l.set(tc.lie)
			req = h.request("alice")
			req.CriticalOptions = tc.crit
			iss, err := h.o.Issue(context.Background(), req)
			if !errors.Is(err, ErrInvalidCertificate) || iss != nil {
				t.Fatalf("lie accepted: %v", err)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), l.URL) {
				t.Errorf("error %q does not say %q at %s", err, tc.want, l.URL)
			}
			h.mustNotLeak(err, s.RootToken())
		})
	}
}

// TestOpenBaoOtherCAAfterPin: once a CA key is pinned (on first use, or in
// agent.yaml), another CA served on both public_key and sign is refused
// with both fingerprints, in this process and the next.
func TestOpenBaoOtherCAAfterPin(t *testing.T) {
	l, s := newLiar(t)
	state := t.TempDir()
	h := liarIssuer(t, l, s, state, OpenBaoConfig{})
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(state, CAPinFile)
	fi, err := os.Stat(rec)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pin record %v %v", fi, err)
	}
	if !strings.Contains(h.log.String(), "trusting the CA key on first use") {
		t.Errorf("first use not logged:\n%s", h.log)
	}
	realFP, otherFP := ssh.FingerprintSHA256(l.ca.PublicKey()), ssh.FingerprintSHA256(l.otherCA.PublicKey())
	l.set(lieOtherCA)

	check := func(h *harness, err error, pinnedBy string) {
		t.Helper()
		var ce *CAKeyChangedError
		if !errors.As(err, &ce) {
			t.Fatalf("other CA accepted: %v", err)
		}
		for _, want := range []string{realFP, otherFP, pinnedBy, l.URL} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if !strings.Contains(h.log.String(), "level=ERROR") {
			t.Errorf("refusal not logged loudly:\n%s", h.log)
		}
		h.mustNotLeak(err, s.RootToken())
	}
	iss, err := h.issue("alice")
	if iss != nil {
		t.Fatal("certificate returned")
	}
	check(h, err, rec)

	// A new process finds the record.
	h2 := liarIssuer(t, l, s, state, OpenBaoConfig{})
	_, err = h2.o.CAPublicKey(context.Background())
	check(h2, err, rec)

	// A key pinned in agent.yaml: refused from the first answer on.
	h3 := liarIssuer(t, l, s, "", OpenBaoConfig{CAPublicKey: string(ssh.MarshalAuthorizedKey(l.ca.PublicKey()))})
	_, err = h3.issue("alice")
	check(h3, err, "signer.openbao.ca_public_key")

	// The fix the message names: delete the record after a deliberate
	// rotation, and the new key is trusted.
	if err := os.Remove(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.issue("alice"); err != nil {
		t.Fatalf("after deleting the record: %v", err)
	}
}

// TestOpenBaoCAPinConfig covers ca_public_key_file and its errors.
func TestOpenBaoCAPinConfig(t *testing.T) {
	s := fake(t, openbaotest.Options{})
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pub")
	if err := os.WriteFile(good, append([]byte("# OpenBao CA\n"), ssh.MarshalAuthorizedKey(s.CAPublicKey())...), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newIssuer(t, s.Target(), OpenBaoConfig{Token: s.RootToken(), CAPublicKeyFile: good}, nil, nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pub")
	_ = os.WriteFile(bad, []byte("not a key\n"), 0o600)
	for _, tc := range []struct {
		cfg  OpenBaoConfig
		want string
	}{
		{OpenBaoConfig{CAPublicKeyFile: bad}, "ca_public_key_file " + bad + ": line 1 is not an SSH public key"},
		{OpenBaoConfig{CAPublicKeyFile: filepath.Join(dir, "none")}, "reading ca_public_key_file"},
		{OpenBaoConfig{CAPublicKey: "# only a comment"}, "holds no key"},
		{OpenBaoConfig{CAPublicKey: "x", CAPublicKeyFile: good}, "not both"},
	} {
		tc.cfg.Address = s.URL
		if _, err := NewOpenBao(tc.cfg, OpenBaoDeps{Getenv: env{}.get}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestOpenBaoPlainHTTP: http:// only on loopback or with insecure_http.
func TestOpenBaoPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		cfg OpenBaoConfig
		env env
		ok  bool
	}{
		{OpenBaoConfig{Address: "http://bao.example.com:8200"}, nil, false},
		{OpenBaoConfig{Addresses: []string{"https://a:8200", "http://10.0.0.2:8200"}}, nil, false},
		{OpenBaoConfig{}, env{"BAO_ADDR": "http://bao.example.com:8200"}, false},
		{OpenBaoConfig{Address: "http://bao.example.com:8200", InsecureHTTP: true}, nil, true},
		{OpenBaoConfig{InsecureHTTP: true}, env{"BAO_ADDR": "http://bao.example.com:8200"}, true},
		{OpenBaoConfig{Address: "http://127.0.0.1:8200"}, nil, true},
		{OpenBaoConfig{Address: "http://[::1]:8200"}, nil, true},
		{OpenBaoConfig{Address: "http://localhost:8200"}, nil, true},
		{OpenBaoConfig{Address: "https://bao.example.com:8200"}, nil, true},
	} {
		o, err := NewOpenBao(tc.cfg, OpenBaoDeps{Getenv: tc.env.get})
		if tc.ok {
			if err != nil {
				t.Errorf("%+v %v: %v", tc.cfg, tc.env, err)
			} else {
				o.Close()
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "is plain http") || !strings.Contains(err.Error(), "insecure_http: true") {
			t.Errorf("%+v %v: err = %v", tc.cfg, tc.env, err)
		}
	}
}

// TestSerialSetBounded: the serial memory forgets the oldest beyond its bound.
func TestSerialSetBounded(t *testing.T) {
	var s serialSet
	for i := range uint64(maxSerials + 10) {
		if !s.add(i + 1) {
			t.Fatalf("serial %d refused on first sight", i+1)
		}
	}
	if s.add(maxSerials + 10) {
		t.Error("recent serial accepted twice")
	}
	if !s.add(1) {
		t.Error("serial older than the bound still remembered")
	}
	if len(s.seen) != maxSerials {
		t.Errorf("%d serials held", len(s.seen))
	}
}

func FuzzParsePinRecord(f *testing.F) {
	k := ssh.MarshalAuthorizedKey(ephemeralForFuzz())
	f.Add([]byte(fmt.Sprintf("# c\nhttps://bao:8200 ssh %s", k)))
	f.Add([]byte("a b c d\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parsePinRecord(b)
		if err == nil {
			for _, l := range lines {
				if l.key == nil || l.addr == "" || l.mount == "" {
					t.Fatalf("incomplete line %+v", l)
				}
			}
		}
		_, _ = parseKeyLines(b)
	})
}

func ephemeralForFuzz() ssh.PublicKey {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	return k
}
