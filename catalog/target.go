package catalog

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// SSHTarget is a parsed ssh://user@host[:port] target.
type SSHTarget struct {
	User string `json:"user"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// String writes the target back as ssh://user@host[:port].
func (t SSHTarget) String() string {
	if t.Port == 0 || t.Port == 22 {
		return fmt.Sprintf("ssh://%s@%s", t.User, t.Host)
	}
	return fmt.Sprintf("ssh://%s@%s", t.User, net.JoinHostPort(t.Host, strconv.Itoa(t.Port)))
}

// ParseSSHTarget parses ssh://user@host[:port] (RFC 3986 form, IPv6 in
// brackets). The user is required: the route's principals are checked
// against it. The port defaults to 22.
func ParseSSHTarget(s string) (SSHTarget, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" {
		return SSHTarget{}, fmt.Errorf("parse target %q: want ssh://user@host[:port]", s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return SSHTarget{}, fmt.Errorf("parse target %q: want ssh://user@host[:port] with nothing after the host", s)
	}
	t := SSHTarget{Host: u.Hostname(), Port: 22}
	if u.User != nil {
		t.User = u.User.Username()
	}
	if t.User == "" {
		return SSHTarget{}, fmt.Errorf("parse target %q: name the remote user, as in ssh://deploy@%s", s, u.Host)
	}
	if t.Host == "" {
		return SSHTarget{}, fmt.Errorf("parse target %q: no host", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return SSHTarget{}, fmt.Errorf("parse target %q: invalid port %q", s, p)
		}
		t.Port = n
	}
	return t, nil
}

// Resolution answers `warden-agent route TARGET`: for an SSH target the
// route, mount/role, principal and lifetime; for a need, its lane.
type Resolution struct {
	// Target is what was asked.
	Target string `json:"target"`
	// SSH is set for an ssh:// target.
	SSH *SSHTarget `json:"ssh,omitempty"`
	// Route is the matching route (SSH targets).
	Route *Route `json:"route,omitempty"`
	// Principal is the principal a certificate would carry; empty when the
	// route does not allow the user (see the error Resolve returns).
	Principal string `json:"principal,omitempty"`
	// TTL is the certificate lifetime, before any policy max_ttl.
	TTL Duration `json:"ttl,omitempty"`
	// Lane is the lane for a need.
	Lane *Lane `json:"lane,omitempty"`
	// Command is the lane's exec template with {id} filled.
	Command string `json:"command,omitempty"`
	// Lacks lists what a lane that is not concrete is missing.
	Lacks []string `json:"lacks,omitempty"`
}

// Resolve looks target up: "ssh://user@host[:port]" goes to the first
// route matching the host, anything else is a lane need. When the route
// matches but does not allow the user, the Resolution is returned along
// with a *PrincipalError.
func (c *Catalog) Resolve(target string) (*Resolution, error) {
	res := &Resolution{Target: target}
	if strings.Contains(target, "://") {
		t, err := ParseSSHTarget(target)
		if err != nil {
			return nil, err
		}
		res.SSH = &t
		r := c.RouteForHost(t.Host)
		if r == nil {
			return nil, fmt.Errorf("route %s: no route matches host %s (routes: %s)", target, t.Host, c.routeNames())
		}
		res.Route, res.TTL = r, Duration(r.Lifetime())
		p, err := r.PrincipalFor(t.User)
		if err != nil {
			return res, err
		}
		res.Principal = p
		return res, nil
	}
	l := c.LaneFor(target)
	if l == nil {
		hint := ""
		if strings.Contains(target, "@") {
			hint = "; for an SSH login write ssh://" + target
		}
		return nil, fmt.Errorf("route %s: no lane for this need (known needs: %s)%s", target, c.needNames(), hint)
	}
	res.Lane, res.Command = l, l.Command("")
	if l.Level() != Concrete {
		res.Lacks = l.Lacks()
	}
	return res, nil
}

func (c *Catalog) routeNames() string {
	var names []string
	for _, r := range c.Routes {
		names = append(names, r.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (c *Catalog) needNames() string {
	var names []string
	for _, l := range c.Lanes {
		names = append(names, l.Need)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
