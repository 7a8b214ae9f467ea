package catalog

import (
	"fmt"
	"strings"
)

// Maturity values for routes and lanes.
const (
	// Concrete: in use, with a playbook and a recorded smoke test.
	Concrete = "concrete"
	// Draft: written down but not yet proven; the default for a lane that
	// names no maturity, because an unproven lane must not look proven.
	Draft = "draft"
	// Deprecated: still answered, but on its way out.
	Deprecated = "deprecated"
)

func validMaturity(m string) bool {
	return m == "" || m == Concrete || m == Draft || m == Deprecated
}

// Lane says where a credential need that is not an SSH certificate goes:
// the owner system, the command that obtains the credential there and the
// playbook. warden does not hold, cache or forward these credentials; the
// lane only tells a person or a tool where to go.
type Lane struct {
	// Need names the need, e.g. "db-password" or
	// "openbao-token/warden-sign". `warden-agent route NEED` looks it up.
	Need string `yaml:"need" json:"need"`
	// Owner is the system that holds the credential, e.g.
	// "secrets-engine" or "credential-broker".
	Owner string `yaml:"owner" json:"owner"`
	// ID is the credential's name in the owner system; it fills {id} in
	// Exec.
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Exec is the command template that obtains the credential from the
	// owner, e.g. "credential exec {id} -- {command}". {id} is ID and
	// {command} is the command that needs the credential.
	Exec string `yaml:"exec" json:"exec"`
	// Playbook is a path (relative to the catalog file) or URL of the
	// runbook for this lane.
	Playbook string `yaml:"playbook,omitempty" json:"playbook,omitempty"`
	// Maturity is concrete, draft (the default) or deprecated.
	Maturity string `yaml:"maturity,omitempty" json:"maturity,omitempty"`
	// Evidence is where the smoke test of a concrete lane is recorded: a
	// path (relative to the catalog file) or URL.
	Evidence string `yaml:"evidence,omitempty" json:"evidence,omitempty"`
}

// placeholders are the names Exec may use.
var placeholders = []string{"{id}", "{command}"}

// Prepare checks a lane's required fields. Missing owner or exec is left
// to lint: a draft lane may be incomplete and still be worth answering.
func (l *Lane) Prepare() error {
	if l.Need == "" {
		return fmt.Errorf("lane without a need (name the credential need, e.g. db-password)")
	}
	if !validMaturity(l.Maturity) {
		return fmt.Errorf("lane %s: maturity %q is not one of concrete, draft, deprecated", l.Need, l.Maturity)
	}
	return nil
}

// Level returns the lane's maturity, Draft when none is written.
func (l *Lane) Level() string {
	if l.Maturity == "" {
		return Draft
	}
	return l.Maturity
}

// Command fills the Exec template: {id} with ID and {command} with
// command, or with "<command>" when command is empty so the template
// still reads as an instruction.
func (l *Lane) Command(command string) string {
	if command == "" {
		command = "<command>"
	}
	return strings.NewReplacer("{id}", l.ID, "{command}", command).Replace(l.Exec)
}

// Lacks lists what keeps the lane from being concrete: the fields among
// owner, exec, playbook and evidence that are empty.
func (l *Lane) Lacks() []string {
	var out []string
	for _, f := range []struct{ name, v string }{
		{"owner", l.Owner}, {"exec", l.Exec}, {"playbook", l.Playbook}, {"evidence", l.Evidence},
	} {
		if strings.TrimSpace(f.v) == "" {
			out = append(out, f.name)
		}
	}
	return out
}

// unknownPlaceholders returns {name} parts of Exec that Command will not
// fill.
func (l *Lane) unknownPlaceholders() []string {
	var out []string
	s := l.Exec
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return out
		}
		p := s[i : i+j+1]
		known := false
		for _, k := range placeholders {
			known = known || p == k
		}
		if !known {
			out = append(out, p)
		}
		s = s[i+j+1:]
	}
}

// LaneFor returns the lane for a need, or nil.
func (c *Catalog) LaneFor(need string) *Lane {
	for i := range c.Lanes {
		if c.Lanes[i].Need == need {
			return &c.Lanes[i]
		}
	}
	return nil
}

// NotHeld is the sentence `route` prints for every lane: warden routes the
// need, it does not hold the secret.
const NotHeld = "warden does not hold this credential: it only says where to get it. Obtain it from its owner with the command shown."
