package signer

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ClockSkew is how far the issuer's clock may be from ours when a
// certificate's validity window is checked.
const ClockSkew = time.Minute

// DefaultMaxBackdate bounds how far in the past a certificate's valid-after
// may lie: OpenBao back-dates by the role's not_before_duration (30s by
// default; the 2.6.2 transcript shows valid_after 30s before the request)
// plus two minutes of clock skew. A certificate valid from further back
// was made earlier than asked for, or for someone else.
const DefaultMaxBackdate = BackDate + 2*time.Minute

// ErrInvalidCertificate marks a certificate that must not be listed.
var ErrInvalidCertificate = errors.New("invalid certificate")

// Validate checks a certificate an issuer returned for req before it is
// listed: it certifies req.PublicKey, is a user certificate, carries exactly
// req.Principals, req.Extensions and req.CriticalOptions, is valid now, was
// not back-dated by more than DefaultMaxBackdate, is no longer than asked
// (plus skew), and is signed by ca. Every failure wraps
// ErrInvalidCertificate and names what differed.
func Validate(cert *ssh.Certificate, req Request, ca ssh.PublicKey, now time.Time) error {
	return validate(cert, req, ca, now, DefaultMaxBackdate)
}

func validate(cert *ssh.Certificate, req Request, ca ssh.PublicKey, now time.Time, maxBackdate time.Duration) error {
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
	if maxBackdate > 0 && after.Before(now.Add(-maxBackdate)) {
		return fail("valid from %s, %s before now; more back-dating than the %s allowed (OpenBao back-dates by the role's not_before_duration, 30s by default; raise signer.openbao.max_backdate only if the role sets a larger one)",
			after.UTC().Format(time.RFC3339), now.Sub(after).Round(time.Second), maxBackdate)
	}
	if req.TTL > 0 && before.After(now.Add(req.TTL+ClockSkew)) {
		return fail("valid until %s, longer than the %s asked for", before.UTC().Format(time.RFC3339), req.TTL)
	}
	if d := mapDiff(cert.Extensions, req.Extensions); d != "" {
		return fail("extensions differ from the request: %s", d)
	}
	if d := mapDiff(cert.CriticalOptions, req.CriticalOptions); d != "" {
		return fail("critical options differ from the request: %s", d)
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

// mapDiff describes how got differs from want ("extra permit-agent-forwarding;
// missing force-command; source-address is \"0.0.0.0/0\", asked \"10.0.0.0/8\""),
// or "" when they are equal. Values of critical options are not secrets.
func mapDiff(got, want map[string]string) string {
	var extra, missing, changed []string
	for k, v := range got {
		w, ok := want[k]
		switch {
		case !ok:
			extra = append(extra, clip(k))
		case w != v:
			changed = append(changed, fmt.Sprintf("%s is %q, asked %q", k, clip(v), clip(w)))
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			missing = append(missing, clip(k))
		}
	}
	var parts []string
	for _, p := range []struct {
		label string
		names []string
	}{{"extra ", extra}, {"missing ", missing}, {"", changed}} {
		if len(p.names) > 0 {
			slices.Sort(p.names)
			parts = append(parts, p.label+strings.Join(p.names, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// clip keeps an error readable when a value is long.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
