package signer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestLocalCAGeneratesKeyOnceWith0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "ca")
	ca, err := OpenLocalCA(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", di.Mode().Perm())
	}
	again, err := OpenLocalCA(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := ca.CAPublicKey(context.Background())
	k2, _ := again.CAPublicKey(context.Background())
	if string(k1.Marshal()) != string(k2.Marshal()) {
		t.Fatal("reopening the CA made a new key")
	}
	os.Chmod(path, 0o644)
	if _, err := OpenLocalCA(path, nil); err == nil {
		t.Fatal("a CA key readable by others was accepted")
	}
}

func TestLocalCAIssuesExactlyWhatWasAsked(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ca, err := OpenLocalCA(filepath.Join(t.TempDir(), "ca"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	eph, _ := NewEphemeralKey()
	req := Request{PublicKey: eph.PublicKey(), Principals: []string{"alice"}, TTL: 5 * time.Minute,
		Extensions: map[string]string{"permit-pty": ""}, KeyID: "k"}
	iss, err := ca.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if c.CertType != ssh.UserCert || len(c.ValidPrincipals) != 1 || c.ValidPrincipals[0] != "alice" {
		t.Fatalf("cert type %d principals %v", c.CertType, c.ValidPrincipals)
	}
	if got := time.Unix(int64(c.ValidAfter), 0); !got.Equal(now.Add(-BackDate)) {
		t.Errorf("valid after %v, want back-dated 30s", got)
	}
	if got := time.Unix(int64(c.ValidBefore), 0); !got.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("valid before %v", got)
	}
	if _, ok := c.Permissions.Extensions["permit-pty"]; !ok || len(c.Permissions.Extensions) != 1 {
		t.Errorf("extensions %v", c.Permissions.Extensions)
	}
}

func TestValidateRefusesWhatWasNotAsked(t *testing.T) {
	now := time.Now()
	ca, _ := OpenLocalCA(filepath.Join(t.TempDir(), "ca"), nil)
	other, _ := OpenLocalCA(filepath.Join(t.TempDir(), "other"), nil)
	caKey, _ := ca.CAPublicKey(context.Background())
	eph, _ := NewEphemeralKey()
	stranger, _ := NewEphemeralKey()
	req := Request{PublicKey: eph.PublicKey(), Principals: []string{"alice"}, TTL: time.Minute}
	issue := func(c *LocalCA, r Request) *ssh.Certificate {
		iss, err := c.Issue(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return iss.Cert
	}
	cases := map[string]*ssh.Certificate{
		"another key":       issue(ca, Request{PublicKey: stranger.PublicKey(), Principals: []string{"alice"}, TTL: time.Minute}),
		"extra principals":  issue(ca, Request{PublicKey: eph.PublicKey(), Principals: []string{"alice", "root"}, TTL: time.Minute}),
		"another CA":        issue(other, req),
		"longer than asked": issue(ca, Request{PublicKey: eph.PublicKey(), Principals: []string{"alice"}, TTL: time.Hour}),
	}
	for name, cert := range cases {
		if err := Validate(cert, req, caKey, now); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("%s: err = %v, want ErrInvalidCertificate", name, err)
		}
	}
	if err := Validate(issue(ca, req), req, caKey, now); err != nil {
		t.Errorf("valid certificate refused: %v", err)
	}
	if err := Validate(issue(ca, req), req, caKey, now.Add(2*time.Minute)); err == nil {
		t.Error("expired certificate accepted")
	}
}
