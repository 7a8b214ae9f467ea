package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/policy"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check the policy and explain its decisions",
		UsageText: "warden-agent policy explain --principal P --host H [--caller EXE]... [--forwarded] [--route R]\n" +
			"   warden-agent policy check [FILE]",
		Subcommands: []*cli.Command{
			{
				Name:  "explain",
				Usage: "print the rule that decides a request, and why each earlier rule did not match",
				UsageText: "warden-agent policy explain --principal P --host H [--caller EXE]... [--forwarded] [--bound=false] [--route R]\n\n" +
					"   warden-agent policy explain --principal deploy --host db1.prod.example.com\n" +
					"   warden-agent policy explain --principal jump --host bastion.prod.example.com --caller ssh --caller /opt/ops/bin/ops-bridge --bound=false\n\n" +
					"Without --route the route is looked up in the catalog by host. Without --caller the chain\n" +
					"is an ssh started from this shell.",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "principal", Required: true, Usage: "the certificate principal (remote user)"},
					&cli.StringFlag{Name: "host", Required: true, Usage: "the target host name"},
					&cli.StringFlag{Name: "route", Usage: "the catalog route name (default: looked up by host)"},
				}, callerFlags()...),
				Action: policyExplain,
			},
			{
				Name:      "check",
				Usage:     "load a policy file and report its errors with file:line:col (exit 1 on errors)",
				ArgsUsage: "[FILE]",
				UsageText: "warden-agent policy check [FILE]\n\n" +
					"   warden-agent policy check examples/policy.yaml\n\n" +
					"FILE defaults to the configured policy (policy.path in agent.yaml).",
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
	route := c.String("route")
	if route == "" {
		if cat, err := catalogFor(cfg); err == nil {
			if r := cat.RouteForHost(c.String("host")); r != nil {
				route = r.Name
			}
		}
	}
	in := policy.Input{
		Subject: localUser(), Principal: c.String("principal"), Host: c.String("host"), Route: route,
		Callers: callersFrom(c), Forwarded: c.Bool("forwarded"), Bound: c.Bool("bound"),
	}
	fmt.Fprint(c.App.Writer, pol.Explain(in))
	return nil
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
	p, err := policy.Load(path)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	gate := "no gate"
	if p.Gate != nil {
		gate = fmt.Sprintf("gate %s (enabled: %t)", p.Gate.URL, p.Gate.Enabled)
	}
	fmt.Fprintf(c.App.Writer, "%s: ok (%d rules, %s)\n", path, len(p.Rules), gate)
	return nil
}
