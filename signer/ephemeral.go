package signer

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// EphemeralKey is a fresh ed25519 key pair that lives only in memory. It
// is never marshalled to disk by this package; the one exception is
// `warden-agent sign --out`, which writes it only when asked to.
type EphemeralKey struct {
	Private ed25519.PrivateKey
	Signer  ssh.Signer
}

// NewEphemeralKey makes a key for one certificate.
func NewEphemeralKey() (*EphemeralKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	return &EphemeralKey{Private: priv, Signer: s}, nil
}

// PublicKey is the key to certify.
func (k *EphemeralKey) PublicKey() ssh.PublicKey { return k.Signer.PublicKey() }
