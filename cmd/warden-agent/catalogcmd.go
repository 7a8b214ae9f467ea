package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/catalog"
)

func catalogCommand() *cli.Command {
	return &cli.Command{
		Name:  "catalog",
		Usage: "check the route catalog",
		UsageText: "warden-agent catalog lint [FILE]\n" +
			"   warden-agent catalog promote-check LANE",
		Subcommands: []*cli.Command{
			{
				Name:      "lint",
				Usage:     "report errors and warnings in a catalog file (exit 1 on errors)",
				ArgsUsage: "[FILE]",
				UsageText: "warden-agent catalog lint [--json] [FILE]\n\n" +
					"   warden-agent catalog lint examples/catalog.yaml\n\n" +
					"FILE defaults to the configured catalog (catalog.path in agent.yaml).",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print findings as JSON"}},
				Action: catalogLint,
			},
			{
				Name:      "promote-check",
				Usage:     "print the checklist a draft lane must pass to become concrete (exit 1 if unmet)",
				ArgsUsage: "LANE",
				UsageText: "warden-agent catalog promote-check [--json] LANE\n\n" +
					"   warden-agent catalog promote-check openbao-token/warden-sign",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the checklist as JSON"}},
				Action: catalogPromoteCheck,
			},
		},
	}
}

// configuredCatalogPath is FILE, or catalog.path from agent.yaml.
func configuredCatalogPath(c *cli.Context) (string, error) {
	if c.NArg() > 0 {
		return c.Args().First(), nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return "", err
	}
	if cfg.Catalog.Path == "" {
		return "", cli.Exit("no catalog configured: pass FILE, or set catalog.path in agent.yaml (default $XDG_CONFIG_HOME/warden/catalog.yaml)", 2)
	}
	return cfg.Catalog.Path, nil
}

func catalogLint(c *cli.Context) error {
	path, err := configuredCatalogPath(c)
	if err != nil {
		return err
	}
	fs, err := catalog.LintFile(path)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if fs == nil {
			fs = []catalog.Finding{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fs); err != nil {
			return err
		}
	} else {
		for _, f := range fs {
			fmt.Fprintln(c.App.Writer, f)
		}
	}
	errs := 0
	for _, f := range fs {
		if f.Severity == catalog.SeverityError {
			errs++
		}
	}
	if errs > 0 {
		return cli.Exit(fmt.Sprintf("%s: %d error(s)", path, errs), 1)
	}
	if !c.Bool("json") {
		fmt.Fprintf(c.App.Writer, "%s: ok (%d warning(s))\n", path, len(fs))
	}
	return nil
}

func catalogPromoteCheck(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("usage: warden-agent catalog promote-check LANE", 2)
	}
	_, cat, err := loadCatalog(c)
	if err != nil {
		return err
	}
	need := c.Args().First()
	lane := cat.LaneFor(need)
	if lane == nil {
		_, err := cat.Resolve(need) // names the known needs
		return err
	}
	items := catalog.PromoteCheck(lane, cat.PromoteOptionsFor())
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(items); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "lane %s (%s):\n", lane.Need, lane.Level())
		for _, it := range items {
			mark := "[ ]"
			if it.OK {
				mark = "[x]"
			}
			fmt.Fprintf(c.App.Writer, "  %s %s: %s\n", mark, it.Name, it.Detail)
		}
	}
	if !catalog.Ready(items) {
		return cli.Exit(fmt.Sprintf("lane %s is not ready to be marked concrete", lane.Need), 1)
	}
	if !c.Bool("json") {
		fmt.Fprintf(c.App.Writer, "lane %s is ready: set maturity: concrete\n", lane.Need)
	}
	return nil
}
