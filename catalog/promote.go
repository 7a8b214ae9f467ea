package catalog

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CheckItem is one line of a promotion checklist.
type CheckItem struct {
	// Name is what is checked, e.g. "owner named".
	Name string `json:"name"`
	// OK reports whether it is met.
	OK bool `json:"ok"`
	// Detail says what was found, or what to do.
	Detail string `json:"detail"`
}

// PromoteOptions are the outside world PromoteCheck looks at; tests
// replace it.
type PromoteOptions struct {
	// BaseDir resolves relative playbook and evidence paths; normally the
	// catalog file's directory.
	BaseDir string
	// LookPath resolves the exec command's program; nil means
	// exec.LookPath.
	LookPath func(file string) (string, error)
	// Stat examines playbook and evidence paths; nil means os.Stat.
	Stat func(name string) (os.FileInfo, error)
}

// PromoteCheck returns the checklist a draft lane must pass before it is
// marked concrete: an owner is named, the exec command's program is
// installed, the playbook exists and a smoke test is recorded. It reads
// the file system but runs nothing.
func PromoteCheck(l *Lane, opts PromoteOptions) []CheckItem {
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	if opts.Stat == nil {
		opts.Stat = os.Stat
	}
	items := []CheckItem{{Name: "owner named"}, {Name: "exec command runs"}, {Name: "playbook exists"}, {Name: "smoke evidence recorded"}}

	if o := strings.TrimSpace(l.Owner); o != "" {
		items[0].OK, items[0].Detail = true, "owner: "+o
	} else {
		items[0].Detail = "name the system that holds the credential (owner:)"
	}

	switch words := strings.Fields(l.Exec); {
	case len(words) == 0:
		items[1].Detail = "write the command that obtains the credential (exec:)"
	case strings.ContainsAny(words[0], "{}"):
		items[1].Detail = fmt.Sprintf("the program %q is a placeholder; exec must start with a real program", words[0])
	default:
		if p, err := opts.LookPath(words[0]); err != nil {
			items[1].Detail = fmt.Sprintf("%s is not installed or not on PATH (%v)", words[0], err)
		} else {
			items[1].OK, items[1].Detail = true, fmt.Sprintf("%s resolves to %s", words[0], p)
		}
	}

	items[2].OK, items[2].Detail = checkRef(l.Playbook, "playbook", opts, false)
	items[3].OK, items[3].Detail = checkRef(l.Evidence, "evidence", opts, true)
	return items
}

// Ready reports whether every item is met.
func Ready(items []CheckItem) bool {
	for _, it := range items {
		if !it.OK {
			return false
		}
	}
	return true
}

// checkRef checks a playbook or evidence reference: a URL is accepted as
// written (PromoteCheck makes no network calls); a path must exist, and
// evidence must not be empty.
func checkRef(ref, field string, opts PromoteOptions, nonEmpty bool) (bool, string) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return false, fmt.Sprintf("set %s: to a path or URL", field)
	}
	if u, err := url.Parse(ref); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		return true, ref + " (URL, not fetched)"
	}
	p := ref
	if !filepath.IsAbs(p) && opts.BaseDir != "" {
		p = filepath.Join(opts.BaseDir, p)
	}
	fi, err := opts.Stat(p)
	if err != nil {
		return false, fmt.Sprintf("%s %s does not exist (%v)", field, p, err)
	}
	if nonEmpty && !fi.IsDir() && fi.Size() == 0 {
		return false, fmt.Sprintf("%s %s is empty: record the smoke test's output there", field, p)
	}
	return true, p
}

// PromoteOptionsFor returns options resolving relative paths against the
// catalog file's directory.
func (c *Catalog) PromoteOptionsFor() PromoteOptions {
	if c.path == "" {
		return PromoteOptions{}
	}
	return PromoteOptions{BaseDir: filepath.Dir(c.path)}
}
