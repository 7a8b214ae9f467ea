package signer

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// ClockSkew is how far the issuer's clock may be from ours when a
// certificate's validity window is checked.
const ClockSkew = time.Minute

// ErrInvalidCertificate marks a certificate that must not be listed.
var ErrInvalidCertificate = errors.New("invalid certificate")

// Validate checks a certificate an issuer returned for req before it is
// listed: it certifies req.PublicKey, is a user certificate, carries exactly
// req.Principals, is valid now, is no longer than asked (plus back-date and
// skew), and is signed by ca. Every failure wraps ErrInvalidCertificate.
func Validate(cert *ssh.Certificate, req Request, ca ssh.PublicKey, now time.Time) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidCertificate, fmt.Sprintf(format, args...))
	}
	if cert == nil {
		return fail("no certificate")
	}
	if !bytes.Equal(cert.Key.Marshal(), req.PublicKey.Marshal()) {
		return fail("certifies key %s, not our ephemeral key %s",
			ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(req.PublicKey))
	}
	if cert.CertType != ssh.UserCert {
		return fail("certificate type %d is not a user certificate", cert.CertType)
	}
	got := slices.Clone(cert.ValidPrincipals)
	want := slices.Clone(req.Principals)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fail("principals %q, asked for %q", cert.ValidPrincipals, req.Principals)
	}
	if cert.ValidBefore == ssh.CertTimeInfinity {
		return fail("certificate never expires")
	}
	after := time.Unix(int64(cert.ValidAfter), 0)
	before := time.Unix(int64(cert.ValidBefore), 0)
	if after.After(now.Add(ClockSkew)) || !before.After(now) {
		return fail("validity %s to %s does not cover now (%s)",
			after.UTC().Format(time.RFC3339), before.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if req.TTL > 0 && before.After(now.Add(req.TTL+ClockSkew)) {
		return fail("valid until %s, longer than the %s asked for", before.UTC().Format(time.RFC3339), req.TTL)
	}
	if ca == nil || !bytes.Equal(cert.SignatureKey.Marshal(), ca.Marshal()) {
		return fail("signed by %s, not by the issuer's CA", ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if len(cert.ValidPrincipals) == 0 {
		return fail("certificate has no principals")
	}
	checkAt := now
	if checkAt.Before(after) { // tolerated skew, checked above
		checkAt = after
	}
	checker := &ssh.CertChecker{
		Clock:                    func() time.Time { return checkAt },
		SupportedCriticalOptions: []string{"force-command", "source-address", "verify-required"},
	}
	// CheckCert verifies the CA signature over the certificate body.
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		return fail("%v", err)
	}
	return nil
}
