package catalog

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

func FuzzLoadCatalog(f *testing.F) {
	f.Add([]byte(goodCatalog))
	f.Add([]byte("routes:\n  - name: a\n    hosts: [a]\n    principle: x\n"))
	f.Add([]byte("a: &a [*a, *a]\nroutes: *a\n"))
	f.Add([]byte("routes: [{name: x, hosts: ['*a*a*a*b'], principals: [u], ttl: 1h}]\nlanes: [{need: n, exec: '{id'}]"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxFileSize+1 {
			return
		}
		c, err := Parse("fuzz.yaml", data)
		fs := Lint("fuzz.yaml", data)
		if err == nil {
			if HasErrorsBlocking(fs) {
				t.Fatalf("Parse accepted what lint calls unloadable: %v", fs)
			}
			for _, r := range c.Routes {
				c.RouteForHost(r.Name)
			}
		}
	})
}

// HasErrorsBlocking is test-only: whether a finding would make Load fail.
func HasErrorsBlocking(fs []Finding) bool {
	for _, f := range fs {
		if f.blocking {
			return true
		}
	}
	return false
}

func FuzzKnownHosts(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(nil)
	key, _ := ssh.NewPublicKey(pub)
	line := string(ssh.MarshalAuthorizedKey(key))
	f.Add([]byte("db1.prod.example.com,10.0.0.1 " + line))
	f.Add([]byte("[db1.prod.example.com]:2222 " + line))
	f.Add([]byte("@cert-authority *.prod.example.com " + line))
	f.Add([]byte("|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= " + line))
	f.Add([]byte("@revoked * " + line + "\n# comment\n\n!bad " + line))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		kh := ParseKnownHosts(data)
		r := &Route{Name: "r", Hosts: []string{"*.prod.example.com", "db1.prod.example.com"}, Principals: []string{"u"}}
		kh.KeyMatchesRoute(key, r)
	})
}

// TestRecordedCatalogs: the example catalog and the agent.yaml of the
// recording load without blocking findings.
func TestRecordedCatalogs(t *testing.T) {
	for _, name := range []string{"examples-catalog-yaml", "recorded-routes"} {
		data := fuzzseed.Recorded(t, "FuzzLoadCatalog", name)[name]
		if _, err := Parse(name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if fs := Lint(name, data); HasErrorsBlocking(fs) {
			t.Errorf("%s: lint: %v", name, fs)
		}
	}
}

// TestRecordedKnownHosts: known_hosts files written by real ssh
// (accept-new) and ssh-keyscan parse to one entry per line, and every
// unhashed entry is found for a route naming its host.
func TestRecordedKnownHosts(t *testing.T) {
	for name, data := range fuzzseed.Recorded(t, "FuzzKnownHosts", "known-hosts-") {
		kh := ParseKnownHosts(data)
		lines := 0
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines++
			_, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(l))
			if err != nil {
				t.Errorf("%s: x/crypto refuses %q: %v", name, l, err)
				continue
			}
			for _, h := range hosts {
				if strings.HasPrefix(h, "|") {
					continue // hashed: the host is not in the file
				}
				r := &Route{Name: "r", Hosts: []string{hostOnly(h)}, Principals: []string{"u"}}
				if !kh.KeyMatchesRoute(key, r) {
					t.Errorf("%s: key of %s not found for a route to %s", name, h, hostOnly(h))
				}
			}
		}
		if len(kh.entries) != lines {
			t.Errorf("%s: %d entries from %d lines", name, len(kh.entries), lines)
		}
	}
}

// FuzzMatchHostKey: any key blob a session-bind could carry (a host
// certificate in particular) goes through MatchHostKey, with a route
// host_ca and a known_hosts @cert-authority line for the same CA,
// without panicking; whatever matches is a certificate that verifies.
func FuzzMatchHostKey(f *testing.F) {
	_, caPriv, _ := ed25519.GenerateKey(nil)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	hostPub, _, _ := ed25519.GenerateKey(nil)
	host, _ := ssh.NewPublicKey(hostPub)
	now := time.Unix(1_800_000_000, 0)
	for _, principals := range [][]string{{"db1.prod.example.com"}, {"x"}, {}} {
		c := &ssh.Certificate{Key: host, CertType: ssh.HostCert, ValidPrincipals: principals,
			ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
		if err := c.SignCert(rand.Reader, ca); err == nil {
			f.Add(c.Marshal())
		}
	}
	f.Add(host.Marshal())
	line := string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
	cat := &Catalog{Routes: []Route{
		{Name: "ca", Hosts: []string{"*.prod.example.com"}, HostCA: []string{line}, Principals: []string{"u"}},
		{Name: "kh", Hosts: []string{"*.example.com"}, Principals: []string{"u"}},
	}}
	if err := cat.Prepare(); err != nil {
		f.Fatal(err)
	}
	kh := ParseKnownHosts([]byte("@cert-authority *.example.com " + line))
	f.Fuzz(func(t *testing.T, blob []byte) {
		if len(blob) > 64<<10 {
			return
		}
		key, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return
		}
		for _, hint := range []string{"", "db1.prod.example.com"} {
			m, err := cat.MatchHostKey(key, kh, hint, now)
			if err != nil {
				continue
			}
			cert, ok := key.(*ssh.Certificate)
			if !ok {
				t.Fatalf("plain key %s matched %s via %s", ssh.FingerprintSHA256(key), m.Route.Name, m.Via)
			}
			principal := m.Names[0]
			for _, p := range cert.ValidPrincipals {
				if strings.EqualFold(p, principal) {
					principal = p // a hint matches case-insensitively
				}
			}
			checker := &ssh.CertChecker{Clock: func() time.Time { return now }}
			if cert.CertType != ssh.HostCert || checker.CheckCert(principal, cert) != nil {
				t.Fatalf("unverifiable certificate matched %s via %s", m.Route.Name, m.Via)
			}
		}
	})
}
