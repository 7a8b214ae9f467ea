package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Ways a host key can select a route (HostKeyMatch.Via).
const (
	ViaPin           = "pin"            // the route's host_keys
	ViaKnownHosts    = "known_hosts"    // a plain known_hosts line
	ViaHostCA        = "host_ca"        // a certificate signed by the route's host_ca
	ViaCertAuthority = "cert-authority" // a certificate signed by a known_hosts @cert-authority
)

// HostKeyMatch is the route of a server known by its host key, and the
// host names that key is proven for: the names the policy's hosts rules
// see.
type HostKeyMatch struct {
	Route *Route
	// Names are the host names: the route's literal hosts for a pin, the
	// names on the matching known_hosts lines (or the literal route host a
	// hashed line matched), the principals of a verified host certificate
	// that matched; just the hinted host when there was a hint.
	Names []string
	// Via is ViaPin, ViaKnownHosts, ViaHostCA or ViaCertAuthority.
	Via string
}

// MatchHostKey finds the route for a server known by key (the host key of
// a verified session-bind). host is the host ssh hinted, or "" (no hint,
// or a forwarded connection). Routes are tried in order, first by their
// own pins (host_keys, host_ca), then by known_hosts. A host certificate
// counts only when verified in full: signed by a trusted CA, of type host,
// valid at now, and naming host (or, without a hint, a name the route's
// patterns match). The error says why nothing matched.
func (c *Catalog) MatchHostKey(key ssh.PublicKey, known *KnownHosts, host string, now time.Time) (*HostKeyMatch, error) {
	var whys []string
	for i := range c.Routes {
		r := &c.Routes[i]
		if host != "" && len(r.Hosts) > 0 && !r.MatchesHost(host) {
			continue
		}
		names, via, err := r.proveHostKey(key, host, now)
		if err == nil {
			return &HostKeyMatch{Route: r, Names: names, Via: via}, nil
		}
		switch {
		case !errors.Is(err, errNoPin):
			whys = append(whys, err.Error())
		case host != "" && r.pins():
			whys = append(whys, fmt.Sprintf("route %s for %s pins other host keys than %s", r.Name, host, ssh.FingerprintSHA256(key)))
		}
	}
	if known != nil {
		for i := range c.Routes {
			r := &c.Routes[i]
			// A route that pins keys is selected by its pins alone.
			if r.pins() || host != "" && !r.MatchesHost(host) {
				continue
			}
			names, via, err := known.match(key, r, host, now)
			if err == nil {
				return &HostKeyMatch{Route: r, Names: names, Via: via}, nil
			}
			if !errors.Is(err, errNoPin) {
				whys = append(whys, err.Error())
			}
		}
	}
	if len(whys) > 0 {
		return nil, errors.New(strings.Join(dedupe(whys), "; "))
	}
	fp := ssh.FingerprintSHA256(key)
	if host != "" {
		return nil, noRouteError(fmt.Sprintf("no route pins host key %s of %s and known_hosts does not know it for %s", fp, host, host))
	}
	return nil, noRouteError(fmt.Sprintf("no route pins host key %s and known_hosts does not know it under a name any route matches", fp))
}

// ErrNoHostKeyRoute is what MatchHostKey's error wraps when nothing pins
// or knows the key at all: a server that is not warden's, as opposed to a
// key or certificate that failed a check (a refusal worth recording).
var ErrNoHostKeyRoute = errors.New("no route for this host key")

type noRouteError string

func (e noRouteError) Error() string { return string(e) }
func (e noRouteError) Unwrap() error { return ErrNoHostKeyRoute }

// CheckHostKey returns nil when the route pins key (host_keys) or key is a
// host certificate for host signed by one of the route's host_ca keys and
// valid at now. host "" means no hint: a principal of the certificate must
// then match the route's host patterns. A route that pins nothing returns
// an error.
func (r *Route) CheckHostKey(key ssh.PublicKey, host string, now time.Time) error {
	_, _, err := r.proveHostKey(key, host, now)
	if errors.Is(err, errNoPin) {
		return fmt.Errorf("route %s pins no host key of %s: %w", r.Name, hostOrKey(host, key), err)
	}
	return err
}

// pins reports whether the route pins host keys or host CAs.
func (r *Route) pins() bool { return len(r.HostKeys) > 0 || len(r.HostCA) > 0 }

// errNoPin: nothing trusted names this key (as opposed to a certificate
// from a trusted CA that failed verification).
var errNoPin = errors.New("not pinned")

// proveHostKey is CheckHostKey returning the names and the way.
func (r *Route) proveHostKey(key ssh.PublicKey, host string, now time.Time) ([]string, string, error) {
	// An unprepared route has no parsed pins and so proves nothing.
	raw := rawKey(key)
	for _, k := range r.hostKeys {
		if bytes.Equal(k.Marshal(), raw) {
			if host != "" {
				return []string{host}, ViaPin, nil
			}
			return literalHosts(r.Hosts), ViaPin, nil
		}
	}
	cert, ok := key.(*ssh.Certificate)
	if !ok || len(r.hostCAs) == 0 {
		return nil, "", errNoPin
	}
	ca := cert.SignatureKey.Marshal()
	for _, k := range r.hostCAs {
		if !bytes.Equal(k.Marshal(), ca) {
			continue
		}
		// A route without host patterns trusts its CA for any name.
		names, err := verifyHostCert(cert, host, func(name string) bool { return len(r.Hosts) == 0 || r.MatchesHost(name) }, now)
		if err != nil {
			return nil, "", fmt.Errorf("route %s: %w", r.Name, err)
		}
		return names, ViaHostCA, nil
	}
	return nil, "", errNoPin
}

// verifyHostCert checks cert as OpenSSH's check_host_cert does, and more
// strictly: a host certificate, signed by its SignatureKey (the caller
// has checked that key is trusted), within its validity window at now, with
// no critical options, naming host among its principals. With host "" the
// principals that allowed() accepts are the names; none is an error. A
// certificate without principals is refused (OpenSSH would accept it for
// any host).
func verifyHostCert(cert *ssh.Certificate, host string, allowed func(string) bool, now time.Time) ([]string, error) {
	who := host
	if who == "" {
		who = strings.Join(cert.ValidPrincipals, ",")
		if who == "" {
			who = "(no principals)"
		}
	}
	ca := ssh.FingerprintSHA256(cert.SignatureKey)
	if cert.CertType != ssh.HostCert {
		return nil, fmt.Errorf("host certificate for %s signed by %s is a user certificate", who, ca)
	}
	if len(cert.ValidPrincipals) == 0 {
		return nil, fmt.Errorf("host certificate signed by %s names no host (sign it with ssh-keygen -h -n HOST)", ca)
	}
	if after := int64(cert.ValidAfter); after < 0 || now.Unix() < after {
		return nil, fmt.Errorf("host certificate for %s is not valid before %s", who, time.Unix(after, 0).UTC().Format(time.RFC3339))
	}
	if cert.ValidBefore != ssh.CertTimeInfinity {
		if before := int64(cert.ValidBefore); before < 0 || now.Unix() >= before {
			return nil, fmt.Errorf("host certificate for %s expired at %s", who, time.Unix(before, 0).UTC().Format(time.RFC3339))
		}
	}
	var names []string
	principal := ""
	if host != "" {
		for _, p := range cert.ValidPrincipals {
			if strings.EqualFold(p, host) {
				names, principal = []string{host}, p
				break
			}
		}
		if names == nil {
			return nil, fmt.Errorf("host certificate signed by %s names %s, not %s", ca, strings.Join(cert.ValidPrincipals, ", "), host)
		}
	} else {
		for _, p := range cert.ValidPrincipals {
			if allowed(p) {
				names = append(names, p)
			}
		}
		if names == nil {
			return nil, fmt.Errorf("host certificate signed by %s names %s, which no trusted host pattern matches", ca, who)
		}
		principal = names[0]
	}
	// CheckCert verifies the CA's signature over the certificate (and
	// again the window and the principal; it refuses critical options).
	checker := &ssh.CertChecker{Clock: func() time.Time { return now }}
	if err := checker.CheckCert(principal, cert); err != nil {
		return nil, fmt.Errorf("host certificate for %s signed by %s refused: %s", who, ca, strings.TrimPrefix(err.Error(), "ssh: "))
	}
	if _, isCert := cert.SignatureKey.(*ssh.Certificate); isCert {
		return nil, fmt.Errorf("host certificate for %s is signed by a certificate, not a CA key", who)
	}
	return names, nil
}

// rawKey is the marshalled plain key: a certificate's own key, as OpenSSH
// falls back to the raw key when a host certificate is not trusted.
func rawKey(key ssh.PublicKey) []byte {
	if cert, ok := key.(*ssh.Certificate); ok {
		return cert.Key.Marshal()
	}
	return key.Marshal()
}

func hostOrKey(host string, key ssh.PublicKey) string {
	if host != "" {
		return host
	}
	return ssh.FingerprintSHA256(key)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
