package catalog

import (
	"crypto/ed25519"
	"testing"

	"golang.org/x/crypto/ssh"
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
