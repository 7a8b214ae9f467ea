package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/internal/yamlfile"
	"github.com/netkingdom/ops-warden/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check the policy and explain its decisions",
		UsageText: "warden-agent policy explain --principal P [--host H | --name N...] [--caller EXE]... [--forwarded] [--route R] [--json]\n" +
			"   warden-agent policy check [--json] [FILE]",
		Subcommands: []*cli.Command{
			{
				Name:  "explain",
				Usage: "print the rule that decides a request, and why each earlier rule did not match",
				UsageText: "warden-agent policy explain --principal P [--host H | --name N...] [--caller EXE]... [--forwarded] [--bound=false] [--route R] [--json]\n\n" +
					"   warden-agent policy explain --principal deploy --host db1.prod.example.com\n" +
					"   warden-agent policy explain --principal deploy --name db1.prod.example.com --forwarded --route prod-db\n" +
					"   warden-agent policy explain --principal jump --host bastion.prod.example.com --caller /usr/bin/ssh --caller /opt/ops/bin/ops-bridge --bound=false\n\n" +
					"--host is the host ssh hinted. Without it, --name gives the names the server's host key is\n" +
					"known under (route pins, known_hosts, a host certificate), as for a forwarded connection;\n" +
					"with neither the host is unknown: deny rules naming hosts match, allow rules naming hosts do\n" +
					"not. Without --route the route is looked up in the catalog by host. Without --caller the\n" +
					"chain is an ssh started from this shell.",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "principal", Required: true, Usage: "the certificate principal (remote user)"},
					&cli.StringFlag{Name: "host", Usage: "the target host name ssh hinted"},
					&cli.StringSliceFlag{Name: "name", Usage: "a name the target's host key is known under, when there is no hint (repeat)"},
					&cli.StringFlag{Name: "route", Usage: "the catalog route name (default: looked up by host)"},
					&cli.BoolFlag{Name: "json", Usage: "print the explanation as JSON"},
				}, callerFlags()...),
				Action: policyExplain,
			},
			{
				Name:      "check",
				Usage:     "load a policy file and report its errors and warnings with file:line:col (exit 1 on errors)",
				ArgsUsage: "[FILE]",
				UsageText: "warden-agent policy check [--json] [FILE]\n\n" +
					"   warden-agent policy check examples/policy.yaml\n\n" +
					"FILE defaults to the configured policy (policy.path in agent.yaml). Warnings (a caller\n" +
					"given by bare name, which any binary so named matches) do not fail the check.",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}},
				Action: policyCheck,
			},
		},
	}
}

func policyExplain(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	pol, err := policyFor(cfg)
	if err != nil {
		return err
	}
	host, names := c.String("host"), c.StringSlice("name")
	if host != "" && len(names) > 0 {
		return cli.Exit("policy explain: give --host (ssh hinted the host) or --name (names of the host key), not both", 2)
	}
	route := c.String("route")
	if route == "" {
		lookup := host
		if lookup == "" && len(names) > 0 {
			lookup = names[0]
		}
		if cat, err := catalogFor(cfg); err == nil && lookup != "" {
			if r := cat.RouteForHost(lookup); r != nil {
				route = r.Name
			}
		}
	}
	in := policy.Input{
		Subject: localUser(), Principal: c.String("principal"), Host: host, Hosts: names, Route: route,
		Callers: callersFrom(c), Forwarded: c.Bool("forwarded"), Bound: c.Bool("bound"),
	}
	ex := pol.ExplainSteps(in)
	if c.Bool("json") {
		return printPolicyJSON(c.App.Writer, ex)
	}
	fmt.Fprint(c.App.Writer, ex.String())
	return nil
}

// policyCheckResult is `policy check --json`.
type policyCheckResult struct {
	File     string        `json:"file"`
	OK       bool          `json:"ok"`
	Rules    int           `json:"rules"`
	Gate     *policy.Gate  `json:"gate,omitempty"`
	Errors   []positionMsg `json:"errors"`
	Warnings []positionMsg `json:"warnings"`
	// Notes say what rules naming hosts do with a target whose host
	// name is unknown.
	Notes []string `json:"notes,omitempty"`
}

type positionMsg struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Message string `json:"message"`
}

func positioned(err error) []positionMsg {
	out := []positionMsg{}
	if err == nil {
		return out
	}
	if es, ok := err.(yamlfile.Errors); ok {
		for _, e := range es {
			out = append(out, positionMsg{File: e.File, Line: e.Line, Col: e.Col, Message: e.Msg})
		}
		return out
	}
	return append(out, positionMsg{Message: err.Error()})
}

func policyCheck(c *cli.Context) error {
	path := c.Args().First()
	if path == "" {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		if cfg.Policy.Path == "" {
			return cli.Exit("no policy configured (the built-in policy allows every request): pass FILE, or set policy.path in agent.yaml", 2)
		}
		path = cfg.Policy.Path
	}
	p, warns, err := policy.CheckFile(path)
	if c.Bool("json") {
		res := policyCheckResult{File: path, OK: err == nil, Errors: positioned(err), Warnings: positioned(warns.Err())}
		if p != nil {
			res.Rules, res.Gate, res.Notes = len(p.Rules), p.Gate, p.UnknownHostNotes()
		}
		if werr := printPolicyJSON(c.App.Writer, res); werr != nil {
			return werr
		}
		if err != nil {
			return cli.Exit("", 1)
		}
		return nil
	}
	for _, w := range warns {
		fmt.Fprintf(c.App.Writer, "%s (warning)\n", w)
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	gate := "no gate"
	if p.Gate != nil {
		gate = fmt.Sprintf("gate %s (enabled: %t)", p.Gate.URL, p.Gate.Enabled)
	}
	for _, n := range p.UnknownHostNotes() {
		fmt.Fprintf(c.App.Writer, "note: %s\n", n)
	}
	fmt.Fprintf(c.App.Writer, "%s: ok (%d rules, %d warning(s), %s)\n", path, len(p.Rules), len(warns), gate)
	return nil
}

func printPolicyJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
