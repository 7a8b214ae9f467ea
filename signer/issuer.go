// Package signer obtains short-lived OpenSSH user certificates: the Issuer
// interface, the embedded local CA, the OpenBao issuer, the ephemeral keys
// they certify and the cache that keeps one certificate per target.
package signer

import (
	"context"
	"time"

	"golang.org/x/crypto/ssh"
)

// Request is what an Issuer is asked to certify.
type Request struct {
	// PublicKey is the ephemeral public key to certify.
	PublicKey ssh.PublicKey
	// Principals are exactly the principals the certificate must carry.
	Principals []string
	// TTL is the requested lifetime; an issuer may not exceed it.
	TTL time.Duration
	// Extensions are exactly the certificate extensions (e.g. permit-pty);
	// a certificate with more, fewer or other ones is refused. OpenBao
	// applies the role's default_extensions when a request names none, so
	// an empty map is only met by a role without defaults.
	Extensions map[string]string
	// CriticalOptions are exactly the certificate's critical options
	// (force-command, source-address); compared like Extensions.
	CriticalOptions map[string]string
	// KeyID is the certificate key id (the local CA sets it; OpenBao sets
	// it only when the role allows user key ids).
	KeyID string
	// Mount and Role locate the OpenBao SSH role (<mount>/sign/<role>).
	Mount, Role string
	// RouteName names the catalog route, for logs and errors.
	RouteName string
	// CorrelationID is sent as X-Warden-Request so OpenBao's audit log
	// can be joined with ours.
	CorrelationID string
	// AuditHead is the audit chain head at request time, sent as
	// X-Warden-Audit-Head to anchor our log in OpenBao's.
	AuditHead string
}

// Issued is a certificate plus where it came from.
type Issued struct {
	Cert *ssh.Certificate
	// RequestID is the issuer's request id (OpenBao's request_id, which
	// equals the id in OpenBao's own audit record); empty for the local CA.
	RequestID string
	// IssuerID is OpenBao's issuer_id; empty for the local CA.
	IssuerID string
	// CAFingerprint is the SHA256 fingerprint of the signing CA key.
	CAFingerprint string
}

// Issuer mints user certificates. Implementations must be safe for
// concurrent use and must honour ctx's deadline on every network call.
// Signing is not idempotent: an Issuer never retries a sign call that may
// have reached the server.
type Issuer interface {
	// Issue certifies req.PublicKey. The returned certificate has already
	// been validated against req (see Validate).
	Issue(ctx context.Context, req Request) (*Issued, error)
	// CAPublicKey returns the key that signs user certificates, for
	// TrustedUserCAKeys.
	CAPublicKey(ctx context.Context) (ssh.PublicKey, error)
	// Kind is "local" or "openbao".
	Kind() string
	// Address is where the issuer lives: a file path or a URL.
	Address() string
}
