package catalog

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newTestSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// hostCert signs host as a certificate with x/crypto, then round-trips it
// through the wire form, as a session-bind carries it.
func hostCert(t *testing.T, host ssh.PublicKey, ca ssh.Signer, mutate func(*ssh.Certificate)) ssh.PublicKey {
	t.Helper()
	c := &ssh.Certificate{
		Key: host, CertType: ssh.HostCert, KeyId: "test", Serial: 7,
		ValidPrincipals: []string{"db1.prod.example.com"},
		ValidAfter:      uint64(testNow.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(testNow.Add(time.Hour).Unix()),
	}
	if mutate != nil {
		mutate(c)
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParsePublicKey(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testNow = time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)

func prepared(t *testing.T, routes ...Route) *Catalog {
	t.Helper()
	c := &Catalog{Routes: routes}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHostCertForgeriesGiveNoRoute: a host certificate selects a route
// through the route's host_ca, or a known_hosts @cert-authority line, only
// when the CA's signature verifies, it is a host certificate, it is valid
// now and it names the host. Each forgery gives no route and an error that
// says what was wrong; the genuine certificate gives the route and the
// names it proves.
func TestHostCertForgeriesGiveNoRoute(t *testing.T) {
	ca, other := newTestSigner(t), newTestSigner(t)
	host := newTestSigner(t).PublicKey()
	good := hostCert(t, host, ca, nil)
	forged := func() ssh.PublicKey {
		// Signed by another key, then labelled as the trusted CA's.
		c := hostCert(t, host, other, nil).(*ssh.Certificate)
		c.SignatureKey = ca.PublicKey()
		k, err := ssh.ParsePublicKey(c.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}()
	cases := []struct {
		name    string
		key     ssh.PublicKey
		hint    string
		wantErr string // "" = match
	}{
		{"genuine", good, "", ""},
		{"genuine with hint", good, "db1.prod.example.com", ""},
		{"wrong CA signature", forged, "", "signature"},
		{"signed by an untrusted CA", hostCert(t, host, other, nil), "", "no route pins"},
		{"expired", hostCert(t, host, ca, func(c *ssh.Certificate) {
			c.ValidBefore = uint64(testNow.Add(-time.Minute).Unix())
		}), "", "expired at 2026-12-05T08:59:00Z"},
		{"not yet valid", hostCert(t, host, ca, func(c *ssh.Certificate) {
			c.ValidAfter = uint64(testNow.Add(time.Minute).Unix())
		}), "", "not valid before"},
		{"principal outside the route", hostCert(t, host, ca, func(c *ssh.Certificate) {
			c.ValidPrincipals = []string{"db1.dev.example.com"}
		}), "", "no trusted host pattern matches"},
		{"principal is not the hinted host", good, "db2.prod.example.com", "not db2.prod.example.com"},
		{"user certificate", hostCert(t, host, ca, func(c *ssh.Certificate) { c.CertType = ssh.UserCert }), "", "user certificate"},
		{"critical option", hostCert(t, host, ca, func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "true"}
		}), "", "refused"},
	}
	route := Route{Name: "prod", Hosts: []string{"*.prod.example.com"}, Principals: []string{"deploy"}}
	pinned := route
	pinned.HostCA = []string{authorized(ca.PublicKey())}
	viaRoute := prepared(t, pinned)
	viaKnown := prepared(t, route)
	known := ParseKnownHosts([]byte("@cert-authority *.prod.example.com " + authorized(ca.PublicKey()) + "\n"))
	for _, tc := range cases {
		for _, how := range []struct {
			via   string
			cat   *Catalog
			known *KnownHosts
		}{{ViaHostCA, viaRoute, nil}, {ViaCertAuthority, viaKnown, known}} {
			t.Run(tc.name+"/"+how.via, func(t *testing.T) {
				m, err := how.cat.MatchHostKey(tc.key, how.known, tc.hint, testNow)
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("MatchHostKey: %v", err)
					}
					want := []string{"db1.prod.example.com"}
					if m.Route.Name != "prod" || m.Via != how.via || !slices.Equal(m.Names, want) {
						t.Fatalf("match = %s via %s names %v, want prod via %s names %v", m.Route.Name, m.Via, m.Names, how.via, want)
					}
					return
				}
				if err == nil {
					t.Fatalf("forged certificate matched route %s via %s", m.Route.Name, m.Via)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not say %q", err, tc.wantErr)
				}
				// The wrappers on the wall clock refuse what does not
				// depend on the clock.
				if timed := strings.Contains(tc.name, "valid") || strings.Contains(tc.name, "expired"); !timed && tc.hint == "" {
					if how.known != nil && how.known.KeyMatchesRoute(tc.key, &how.cat.Routes[0]) {
						t.Fatal("KeyMatchesRoute accepts it")
					}
					if how.known == nil && how.cat.RouteForHostKey(tc.key, nil) != nil {
						t.Fatal("RouteForHostKey accepts it")
					}
				}
			})
		}
	}
	// CheckHostKey is the same check for one route.
	r := &viaRoute.Routes[0]
	if err := r.CheckHostKey(good, "db1.prod.example.com", testNow); err != nil {
		t.Errorf("CheckHostKey(genuine): %v", err)
	}
	if err := r.CheckHostKey(forged, "db1.prod.example.com", testNow); err == nil {
		t.Error("CheckHostKey accepts a certificate the CA did not sign")
	}
	if err := r.CheckHostKey(good, "db1.prod.example.com", testNow.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("CheckHostKey(expired) = %v", err)
	}
	if err := r.CheckHostKey(host, "db1.prod.example.com", testNow); err == nil || !strings.Contains(err.Error(), "pins no host key") {
		t.Errorf("CheckHostKey(plain unpinned key) = %v", err)
	}
}

// TestHostCertFromSSHKeygen: certificates made by OpenSSH's own
// ssh-keygen -s -h verify; one whose validity window has passed and one
// signed for another host do not.
func TestHostCertFromSSHKeygen(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
	}
	read := func(name string) ssh.PublicKey {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	run("-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "ca"))
	run("-q", "-t", "ecdsa", "-N", "", "-f", filepath.Join(dir, "host"))
	sign := func(principals, validity string) ssh.PublicKey {
		run("-q", "-s", filepath.Join(dir, "ca"), "-h", "-I", "db1", "-n", principals, "-V", validity, filepath.Join(dir, "host.pub"))
		return read("host-cert.pub")
	}
	cat := prepared(t, Route{Name: "prod", Hosts: []string{"*.prod.example.com"}, HostCA: []string{authorized(read("ca.pub"))}, Principals: []string{"deploy"}})
	now := time.Now()

	good := sign("db1.prod.example.com,10.1.2.3", "-5m:+1h")
	m, err := cat.MatchHostKey(good, nil, "", now)
	if err != nil || m.Via != ViaHostCA || !slices.Equal(m.Names, []string{"db1.prod.example.com"}) {
		t.Fatalf("ssh-keygen host certificate: match %+v, err %v", m, err)
	}
	if _, err := cat.MatchHostKey(sign("db1.prod.example.com", "20200101:20200102"), nil, "", now); err == nil || !strings.Contains(err.Error(), "expired at 2020-01-02") {
		t.Errorf("expired ssh-keygen certificate: %v", err)
	}
	if _, err := cat.MatchHostKey(sign("db1.dev.example.com", "-5m:+1h"), nil, "db1.prod.example.com", now); err == nil {
		t.Error("a certificate for db1.dev matched a hint for db1.prod")
	}
	run("-q", "-s", filepath.Join(dir, "ca"), "-h", "-I", "any", "-V", "-5m:+1h", filepath.Join(dir, "host.pub"))
	if _, err := cat.MatchHostKey(read("host-cert.pub"), nil, "db1.prod.example.com", now); err == nil || !strings.Contains(err.Error(), "names no host") {
		t.Errorf("host certificate without principals (OpenSSH would accept it for any host): %v", err)
	}
	run("-q", "-s", filepath.Join(dir, "ca"), "-I", "user", "-n", "db1.prod.example.com", "-V", "-5m:+1h", filepath.Join(dir, "host.pub"))
	if _, err := cat.MatchHostKey(read("host-cert.pub"), nil, "", now); err == nil || !strings.Contains(err.Error(), "user certificate") {
		t.Errorf("user certificate from ssh-keygen: %v", err)
	}
}

// TestMatchHostKeyNames: the names a pin, a known_hosts line (plain or
// hashed) give for a plain host key, and what a hint changes.
func TestMatchHostKeyNames(t *testing.T) {
	pin, plain, hashed := newTestSigner(t).PublicKey(), newTestSigner(t).PublicKey(), newTestSigner(t).PublicKey()
	cat := prepared(t,
		Route{Name: "pinned", Hosts: []string{"bastion.example.com", "*.edge.example.com"}, HostKeys: []string{authorized(pin)}, Principals: []string{"jump"}},
		Route{Name: "prod", Hosts: []string{"*.prod.example.com", "db9.prod.example.com"}, Principals: []string{"deploy"}},
	)
	kh := ParseKnownHosts([]byte(
		"db1.prod.example.com,10.0.0.1,bastion.example.com,* " + authorized(plain) + "\n" +
			"|1|" + hashLine("db9.prod.example.com") + " " + authorized(hashed) + "\n"))
	for _, tc := range []struct {
		key       ssh.PublicKey
		hint      string
		route     string
		via       string
		names     []string
		wantError bool
	}{
		{key: pin, route: "pinned", via: ViaPin, names: []string{"bastion.example.com"}},
		{key: pin, hint: "x.edge.example.com", route: "pinned", via: ViaPin, names: []string{"x.edge.example.com"}},
		{key: pin, hint: "db1.prod.example.com", wantError: true},
		{key: plain, route: "prod", via: ViaKnownHosts, names: []string{"db1.prod.example.com", "10.0.0.1", "bastion.example.com"}},
		{key: plain, hint: "db1.prod.example.com", route: "prod", via: ViaKnownHosts, names: []string{"db1.prod.example.com"}},
		{key: hashed, route: "prod", via: ViaKnownHosts, names: []string{"db9.prod.example.com"}},
		{key: newTestSigner(t).PublicKey(), wantError: true},
		// known_hosts never selects a route that pins other keys.
		{key: plain, hint: "bastion.example.com", wantError: true},
	} {
		m, err := cat.MatchHostKey(tc.key, kh, tc.hint, testNow)
		if tc.wantError {
			if err == nil {
				t.Errorf("hint %q: matched %s via %s, want no route", tc.hint, m.Route.Name, m.Via)
			}
			continue
		}
		if err != nil {
			t.Errorf("hint %q: %v", tc.hint, err)
			continue
		}
		if m.Route.Name != tc.route || m.Via != tc.via || !slices.Equal(m.Names, tc.names) {
			t.Errorf("hint %q: %s via %s names %v, want %s via %s names %v", tc.hint, m.Route.Name, m.Via, m.Names, tc.route, tc.via, tc.names)
		}
	}
}

// hashLine hashes host as HashKnownHosts does ("salt|hash" after "|1|").
func hashLine(host string) string {
	salt := make([]byte, 20)
	_, _ = rand.Read(salt)
	return knownHostsHash(salt, host)
}
