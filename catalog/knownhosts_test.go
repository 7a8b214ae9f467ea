package catalog

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestKnownHostsHashedNonDefaultPort: ssh records a server on port 2222 as
// "[host]:2222", and HashKnownHosts hashes exactly that string. Hashed by
// OpenSSH's own ssh-keygen -H, such an entry is found for a route listing
// "[host]:2222"; plain, for a route listing the host alone too.
func TestKnownHostsHashedNonDefaultPort(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (openssh-client)")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key := signer.PublicKey()
	line := "[db1.lab]:2222 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := ParseKnownHosts([]byte(line))
	if out, err := exec.Command(keygen, "-H", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "|1|") {
		t.Fatalf("ssh-keygen -H wrote %q, want a hashed entry", data)
	}
	hashed := ParseKnownHosts(data)

	route := func(hosts ...string) *Route { return &Route{Name: "db", Hosts: hosts, Principals: []string{"u"}} }
	for _, c := range []struct {
		kh    *KnownHosts
		what  string
		route *Route
		want  bool
	}{
		{plain, "plain", route("db1.lab"), true},
		{plain, "plain", route("[db1.lab]:2222"), true},
		{plain, "plain", route("db2.lab"), false},
		{hashed, "hashed", route("db1.lab", "[db1.lab]:2222"), true},
		{hashed, "hashed", route("[DB1.lab]:2222"), true}, // ssh lower-cases before hashing
		{hashed, "hashed", route("db1.lab"), false},       // the port is part of the hashed name
		{hashed, "hashed", route("[db1.lab]:22"), false},
		{hashed, "hashed", route("*.lab"), false}, // a pattern cannot be tested against a hash
	} {
		if got := c.kh.KeyMatchesRoute(key, c.route); got != c.want {
			t.Errorf("%s entry, route hosts %v: match %v, want %v", c.what, c.route.Hosts, got, c.want)
		}
	}
}
