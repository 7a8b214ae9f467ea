package signer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// BackDate is how far certificates are back-dated for clock skew between
// the agent's machine and the server, as OpenBao does by default
// (not_before_duration 30s).
const BackDate = 30 * time.Second

// LocalCA issues certificates with an ed25519 CA key kept in the state
// directory. It is the embedded default, meant for development and single
// machines: the CA key is on this disk, so anyone who can read it can mint
// certificates.
type LocalCA struct {
	path   string
	signer ssh.Signer
	now    func() time.Time
}

var _ Issuer = (*LocalCA)(nil)

// OpenLocalCA loads the CA key at path, generating it (0600, in a 0700
// directory) on first run. now may be nil for time.Now.
func OpenLocalCA(path string, now func() time.Time) (*LocalCA, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = generateCAKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("local CA: %s is readable by others (mode %v); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("local CA: parse %s: %w", path, err)
	}
	return &LocalCA{path: path, signer: s, now: now}, nil
}

func generateCAKey(path string) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "warden-agent local CA")
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(block)
	// O_EXCL: two agents starting at once must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return data, f.Close()
}

// Issue signs req.PublicKey with the local CA.
func (l *LocalCA) Issue(ctx context.Context, req Request) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(req.Principals) == 0 {
		return nil, errors.New("local CA: no principals requested")
	}
	now := l.now()
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, fmt.Errorf("local CA: serial: %w", err)
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	cert := &ssh.Certificate{
		Key:             req.PublicKey,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.UserCert,
		KeyId:           req.KeyID,
		ValidPrincipals: append([]string(nil), req.Principals...),
		ValidAfter:      uint64(now.Add(-BackDate).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{Extensions: req.Extensions, CriticalOptions: req.CriticalOptions},
	}
	if err := cert.SignCert(rand.Reader, l.signer); err != nil {
		return nil, fmt.Errorf("local CA: sign: %w", err)
	}
	if err := Validate(cert, req, l.signer.PublicKey(), now); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	return &Issued{Cert: cert, CAFingerprint: ssh.FingerprintSHA256(l.signer.PublicKey())}, nil
}

// CAPublicKey returns the CA key for TrustedUserCAKeys.
func (l *LocalCA) CAPublicKey(context.Context) (ssh.PublicKey, error) {
	return l.signer.PublicKey(), nil
}

// Kind is "local".
func (l *LocalCA) Kind() string { return "local" }

// Address is the CA key's path.
func (l *LocalCA) Address() string { return l.path }
