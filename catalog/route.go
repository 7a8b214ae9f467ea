// Package catalog maps targets to routes: which host goes to which OpenBao
// mount and role, with which principals, lifetime and extensions. It also
// holds the lanes that name the owner of every non-SSH credential.
package catalog

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/internal/sshmatch"
)

// Route says how certificates for a set of hosts are obtained.
type Route struct {
	// Name identifies the route in logs, the audit log and status.
	Name string `yaml:"name" json:"name"`
	// Hosts are ssh_config-style patterns (*, ?, !negation).
	Hosts []string `yaml:"hosts" json:"hosts"`
	// HostKeys pins host public keys (authorized_keys form) that select
	// this route when ssh sent no hint.
	HostKeys []string `yaml:"host_keys,omitempty" json:"host_keys,omitempty"`
	// HostCA pins host CA keys: a host certificate signed by one of them
	// selects this route.
	HostCA []string `yaml:"host_ca,omitempty" json:"host_ca,omitempty"`
	// Mount and Role locate the OpenBao role (<mount>/sign/<role>).
	Mount string `yaml:"mount,omitempty" json:"mount,omitempty"`
	Role  string `yaml:"role,omitempty" json:"role,omitempty"`
	// Principals are the remote users a certificate may be issued for;
	// the requested user must be one of them.
	Principals []string `yaml:"principals,omitempty" json:"principals,omitempty"`
	// Principal, when set, is the one fixed principal every certificate on
	// this route carries (role-style principals that sshd maps through
	// AuthorizedPrincipalsFile); Principals then limits the remote users.
	Principal string `yaml:"principal,omitempty" json:"principal,omitempty"`
	// TTL is the certificate lifetime.
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// Extensions are certificate extensions; nil means permit-pty only.
	Extensions map[string]string `yaml:"extensions,omitempty" json:"extensions,omitempty"`
	// Maturity is concrete, draft or deprecated.
	Maturity string `yaml:"maturity,omitempty" json:"maturity,omitempty"`
	// RequireBind, when false, lets clients that do not send
	// session-bind@openssh.com (tunnel programs, paramiko) sign with this
	// route's certificates. Default true.
	RequireBind *bool `yaml:"require_bind,omitempty" json:"require_bind,omitempty"`

	hostKeys []ssh.PublicKey // parsed HostKeys
	hostCAs  []ssh.PublicKey // parsed HostCA
}

// DefaultTTL is the lifetime of a route that names none.
const DefaultTTL = 5 * time.Minute

// DefaultExtensions are given to certificates of a route that names none:
// an interactive shell, nothing more.
var DefaultExtensions = map[string]string{"permit-pty": ""}

// Duration is a time.Duration written as "5m" in YAML and JSON.
type Duration time.Duration

// UnmarshalText parses a Go duration such as "5m" or "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a form like 5m or 1h)", string(b))
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go's form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// String writes the duration in Go's form ("5m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// Prepare checks a route and parses its pinned keys. It must be called
// once before the route is used.
func (r *Route) Prepare() error {
	if r.Name == "" {
		return fmt.Errorf("route without a name")
	}
	if len(r.Hosts) == 0 && len(r.HostKeys) == 0 && len(r.HostCA) == 0 {
		return fmt.Errorf("route %s: no hosts, host_keys or host_ca", r.Name)
	}
	if len(r.Principals) == 0 && r.Principal == "" {
		return fmt.Errorf("route %s: no principals (list the remote users it may issue for)", r.Name)
	}
	if (r.Mount == "") != (r.Role == "") {
		return fmt.Errorf("route %s: mount and role go together (both for OpenBao, neither for the local CA)", r.Name)
	}
	if !validMaturity(r.Maturity) {
		return fmt.Errorf("route %s: maturity %q is not one of concrete, draft, deprecated", r.Name, r.Maturity)
	}
	r.hostKeys, r.hostCAs = nil, nil
	for _, s := range r.HostKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
		if err != nil {
			return fmt.Errorf("route %s: host_keys entry %q: %v", r.Name, abbreviate(s), err)
		}
		r.hostKeys = append(r.hostKeys, k)
	}
	for _, s := range r.HostCA {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
		if err != nil {
			return fmt.Errorf("route %s: host_ca entry %q: %v", r.Name, abbreviate(s), err)
		}
		if _, isCert := k.(*ssh.Certificate); isCert {
			return fmt.Errorf("route %s: host_ca entry %q is a certificate; give the CA's public key", r.Name, abbreviate(s))
		}
		r.hostCAs = append(r.hostCAs, k)
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Lifetime is the route's certificate lifetime, DefaultTTL when unset.
func (r *Route) Lifetime() time.Duration {
	if r.TTL <= 0 {
		return DefaultTTL
	}
	return time.Duration(r.TTL)
}

// CertExtensions is the route's extensions, DefaultExtensions when unset.
func (r *Route) CertExtensions() map[string]string {
	if r.Extensions == nil {
		return DefaultExtensions
	}
	return r.Extensions
}

// BindRequired reports whether a client must have sent session-bind to
// sign with this route's certificates.
func (r *Route) BindRequired() bool { return r.RequireBind == nil || *r.RequireBind }

// AllowsUser reports whether a login as user may use this route.
func (r *Route) AllowsUser(user string) bool {
	if len(r.Principals) == 0 {
		return r.Principal != "" // role-style route open to any remote user
	}
	return slices.Contains(r.Principals, user)
}

// PrincipalFor returns the principal a certificate for a login as user
// carries, or an error naming the users the route allows.
func (r *Route) PrincipalFor(user string) (string, error) {
	if !r.AllowsUser(user) {
		return "", &PrincipalError{Route: r.Name, User: user, Allowed: r.Principals}
	}
	if r.Principal != "" {
		return r.Principal, nil
	}
	return user, nil
}

// SolePrincipal returns the principal to use when the remote user is not
// known (no hint): the fixed principal, or the only allowed user.
func (r *Route) SolePrincipal() (string, bool) {
	if r.Principal != "" {
		return r.Principal, true
	}
	if len(r.Principals) == 1 {
		return r.Principals[0], true
	}
	return "", false
}

// PrincipalError is returned when a route does not allow a remote user.
type PrincipalError struct {
	Route   string
	User    string
	Allowed []string
}

// Error names the route, the refused user and the users it allows.
func (e *PrincipalError) Error() string {
	return fmt.Sprintf("route %s does not allow user %s (allowed: %s)", e.Route, e.User, strings.Join(e.Allowed, ", "))
}

// MatchesHost reports whether host matches the route's host patterns.
func (r *Route) MatchesHost(host string) bool { return MatchPatternList(r.Hosts, host) }

// PinsHostKey reports whether the route pins key, or key is a host
// certificate from one of its host CAs that verifies now for a name the
// route's patterns match. Callers that know the host use CheckHostKey.
func (r *Route) PinsHostKey(key ssh.PublicKey) bool {
	return r.CheckHostKey(key, "", time.Now()) == nil
}

// MatchPatternList matches host against ssh_config-style patterns: any
// positive pattern must match and no negated one may (ssh's
// match_pattern_list). Matching is case-insensitive; entries may also be
// comma-separated. The policy file uses the same matcher
// (internal/sshmatch), so a pattern means the same in both files.
func MatchPatternList(patterns []string, host string) bool {
	return sshmatch.HostList(patterns, host)
}

// Catalog is the ordered list of routes (the first match wins) and the
// lanes for every credential need that is not an SSH certificate.
type Catalog struct {
	Routes []Route `yaml:"routes" json:"routes"`
	// Lanes name, for each non-SSH credential need, the system that owns
	// it and the command that obtains it there. warden never holds these
	// credentials; it only answers where a need goes.
	Lanes []Lane `yaml:"lanes,omitempty" json:"lanes,omitempty"`

	// path is the file the catalog was loaded from ("" for Default or a
	// literal catalog): relative playbook and evidence paths start there.
	path string
}

// Path returns the file the catalog was loaded from, or "".
func (c *Catalog) Path() string { return c.path }

// Prepare checks every route and lane; it must be called before the
// catalog is used. Load calls it after its own positioned checks, so from
// a file its errors are already reported with line and column.
func (c *Catalog) Prepare() error {
	seen := map[string]bool{}
	for i := range c.Routes {
		if err := c.Routes[i].Prepare(); err != nil {
			return err
		}
		if seen[c.Routes[i].Name] {
			return fmt.Errorf("route %s: duplicate name", c.Routes[i].Name)
		}
		seen[c.Routes[i].Name] = true
	}
	needs := map[string]bool{}
	for i := range c.Lanes {
		if err := c.Lanes[i].Prepare(); err != nil {
			return err
		}
		if needs[c.Lanes[i].Need] {
			return fmt.Errorf("lane %s: duplicate need", c.Lanes[i].Need)
		}
		needs[c.Lanes[i].Need] = true
	}
	return nil
}

// RouteForHost returns the first route whose host patterns match host.
func (c *Catalog) RouteForHost(host string) *Route {
	for i := range c.Routes {
		if c.Routes[i].MatchesHost(host) {
			return &c.Routes[i]
		}
	}
	return nil
}

// RouteByName returns the route with that name.
func (c *Catalog) RouteByName(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// RouteForHostKey returns the route for a server known only by its host
// key (MatchHostKey without a hint, now), or nil.
func (c *Catalog) RouteForHostKey(key ssh.PublicKey, known *KnownHosts) *Route {
	m, err := c.MatchHostKey(key, known, "", time.Now())
	if err != nil {
		return nil
	}
	return m.Route
}

// Default returns the catalog used when none is configured: every host,
// principal = the local user, DefaultTTL.
func Default(localUser string) *Catalog {
	c := &Catalog{Routes: []Route{{
		Name:       "default",
		Hosts:      []string{"*"},
		Principals: []string{localUser},
	}}}
	if err := c.Prepare(); err != nil {
		panic(err) // a constant catalog; cannot fail
	}
	return c
}
