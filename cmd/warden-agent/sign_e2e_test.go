package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2ESignCommand: `sign` prints only a certificate line that
// ssh-keygen -L shows with the requested principal; a real ssh through
// the agent then logs in with it without another issuance; --out writes a
// key pair that ssh uses with IdentitiesOnly and no agent at all.
func TestE2ESignCommand(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)

	r := e.warden("sign", "--principal", user, "--host", "127.0.0.1")
	if r.code != 0 || len(nonEmptyLines(r.stdout)) != 1 || !strings.HasPrefix(r.stdout, "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("sign: %s", r)
	}
	principals, serial := certPrincipals(t, e.dir, strings.TrimSpace(r.stdout))
	if strings.Join(principals, ",") != user {
		t.Fatalf("ssh-keygen -L principals %v, want [%s]", principals, user)
	}

	e.mustLogin(cfg, nil, user, "target")
	recs := a.audit(t)
	if n := len(events(recs, "cert.issued")); n != 1 {
		t.Fatalf("%d issuances after sign and a login, want 1", n)
	}
	// ssh-keygen -L prints the serial in decimal, as sshd logs it.
	if used := events(recs, "cert.used"); len(used) != 1 || used[0].str("serial_dec") != serial {
		t.Fatalf("cert.used records %v, want one with the signed certificate's serial %s", used, serial)
	}

	// A principal the route refuses: exit 1, the reason on stderr, no stdout.
	if r := e.warden("sign", "--principal", "nobody", "--host", "127.0.0.1"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "does not allow user nobody") {
		t.Fatalf("sign for a refused principal: %s", r)
	}

	out := filepath.Join(e.dir, "export")
	r = e.warden("sign", "--principal", user, "--host", "127.0.0.1", "--out", out)
	if r.code != 0 || !strings.Contains(r.stderr, "now exists on disk") {
		t.Fatalf("sign --out: %s", r)
	}
	fi, err := os.Stat(filepath.Join(out, "id_ed25519"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v", err, fi.Mode())
	}
	if len(events(a.audit(t), "cert.exported")) != 1 {
		t.Fatal("no cert.exported record for the key written to disk")
	}
	word := "exported-key-login"
	r = e.run(nil, "ssh", "-F", cfg, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-i", filepath.Join(out, "id_ed25519"), user+"@target", "echo", word)
	if r.code != 0 || strings.TrimSpace(r.stdout) != word {
		t.Fatalf("login with the exported files: %s", r)
	}
}
