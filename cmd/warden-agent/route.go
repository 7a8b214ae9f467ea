package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/policy"
)

func routeCommand() *cli.Command {
	return &cli.Command{
		Name:      "route",
		Usage:     "show where a credential need goes: an SSH target's route, or a lane's owner and command",
		ArgsUsage: "TARGET",
		UsageText: "warden-agent route [--json] [--caller EXE]... [--forwarded] TARGET\n\n" +
			"   warden-agent route ssh://deploy@db1.prod.example.com\n" +
			"   warden-agent route db-password\n\n" +
			"For ssh://USER@HOST[:PORT] it prints the route, OpenBao mount/role, principal, lifetime and\n" +
			"the policy decision for an ssh started from this shell (or for the --caller chain, nearest\n" +
			"first). For any other TARGET it prints the lane: owner, the command to run, the playbook.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON for tools"},
		}, callerFlags()...),
		Action: routeAction,
	}
}

// callerFlags are shared by route and policy explain.
func callerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "caller", Usage: "a program in the caller chain, nearest first (full path, or a name looked up in PATH; repeat for the chain)"},
		&cli.BoolFlag{Name: "forwarded", Usage: "decide as for a request through a forwarded agent connection"},
		&cli.BoolFlag{Name: "bound", Value: true, Usage: "decide as for a client that sent session-bind (--bound=false for tunnel programs)"},
	}
}

// callersFrom is the --caller chain, or an ssh started from this shell:
// the chain a login typed here would present to the agent.
func callersFrom(c *cli.Context) []policy.Caller {
	if names := c.StringSlice("caller"); len(names) > 0 {
		out := make([]policy.Caller, len(names))
		for i, n := range names {
			// Rules match the executable, never the name: a bare name
			// stands for the program PATH finds, or itself.
			out[i] = policy.Caller{Name: filepath.Base(n), Exe: n}
			if !strings.Contains(n, "/") {
				if p, err := exec.LookPath(n); err == nil && filepath.IsAbs(p) {
					out[i].Exe = p
				}
			}
		}
		return out
	}
	ssh := policy.Caller{Name: "ssh", Exe: "ssh"}
	if p, err := exec.LookPath("ssh"); err == nil {
		ssh.Exe = p
	}
	return append([]policy.Caller{ssh}, policy.ProcessChain(os.Getppid(), 16)...)
}

// catalogFor is the catalog the agent would use: the catalog file, or
// agent.yaml's inline routes, or the default route.
func catalogFor(cfg *Config) (*catalog.Catalog, error) {
	if cfg.Catalog.Path != "" {
		return catalog.Load(cfg.Catalog.Path)
	}
	return initialCatalog(cfg)
}

// loadCatalog reads agent.yaml and the catalog it names.
func loadCatalog(c *cli.Context) (*Config, *catalog.Catalog, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalogFor(cfg)
	return cfg, cat, err
}

// policyFor is the policy the agent would use: the policy file, or the
// built-in allow-all policy when none is configured.
func policyFor(cfg *Config) (*policy.Policy, error) {
	if cfg.Policy.Path == "" {
		return policy.AllowAll(), nil
	}
	return policy.Load(cfg.Policy.Path)
}

type routeOutput struct {
	*catalog.Resolution
	Catalog  string           `json:"catalog,omitempty"`
	Refused  string           `json:"refused,omitempty"`
	Decision *policy.Decision `json:"decision,omitempty"`
	NotHeld  string           `json:"not_held,omitempty"`
}

func routeAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("usage: warden-agent route TARGET (ssh://user@host or a lane need such as db-password)", 2)
	}
	cfg, cat, err := loadCatalog(c)
	if err != nil {
		return err
	}
	res, err := cat.Resolve(c.Args().First())
	if res == nil {
		return err
	}
	out := routeOutput{Resolution: res, Catalog: cat.Path()}
	if err != nil {
		out.Refused = err.Error()
	}
	if res.Lane != nil {
		out.NotHeld = catalog.NotHeld
	}
	if res.Route != nil && err == nil {
		pol, perr := policyFor(cfg)
		if perr != nil {
			return perr
		}
		d := pol.Evaluate(policy.Input{
			Subject: localUser(), Principal: res.Principal, Host: res.SSH.Host, Route: res.Route.Name,
			Callers: callersFrom(c), Forwarded: c.Bool("forwarded"), Bound: c.Bool("bound"),
		})
		out.Decision = &d
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printRoute(c.App.Writer, out)
	}
	if out.Refused != "" || (out.Decision != nil && out.Decision.Effect == policy.EffectDeny) {
		return cli.Exit("", 1)
	}
	return nil
}

func printRoute(w io.Writer, o routeOutput) {
	row := func(k, v string) { fmt.Fprintf(w, "%-11s %s\n", k+":", v) }
	if r := o.Route; r != nil {
		row("target", o.SSH.String())
		src := o.Catalog
		if src == "" {
			src = "agent.yaml / built-in default"
		}
		row("route", fmt.Sprintf("%s (%s)", r.Name, src))
		if r.Mount != "" {
			row("mount/role", r.Mount+"/"+r.Role+"  (signs at "+r.Mount+"/sign/"+r.Role+")")
		} else {
			row("mount/role", "none: the agent's local CA signs")
		}
		if o.Refused != "" {
			row("principal", "REFUSED: "+o.Refused)
			return
		}
		row("principal", o.Principal)
		ttl := time.Duration(o.TTL)
		if d := o.Decision; d != nil && d.MaxTTL > 0 && d.MaxTTL < ttl {
			row("ttl", fmt.Sprintf("%s (route %s, capped by policy max_ttl)", d.MaxTTL, ttl))
		} else {
			row("ttl", ttl.String())
		}
		if d := o.Decision; d != nil {
			line := fmt.Sprintf("%s by %s", d.Effect, d.Rule)
			if d.Reason != "" && !strings.HasPrefix(d.Reason, line) {
				line += ": " + d.Reason
			}
			if d.Effect == policy.EffectConfirm {
				line += " (a confirmation is asked through SSH_ASKPASS)"
			}
			row("policy", line)
		}
		return
	}
	l := o.Lane
	row("need", l.Need)
	row("owner", orNone(l.Owner))
	row("maturity", l.Level())
	row("command", orNone(o.Command))
	row("playbook", orNone(l.Playbook))
	if l.Evidence != "" {
		row("evidence", l.Evidence)
	}
	if len(o.Lacks) > 0 {
		fmt.Fprintf(w, "%s lane: lacks %s (see: warden-agent catalog promote-check %s)\n",
			strings.ToUpper(l.Level()), strings.Join(o.Lacks, ", "), l.Need)
	}
	fmt.Fprintln(w, o.NotHeld)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
