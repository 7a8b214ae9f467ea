package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/catalog"
)

// driftTimeout bounds the whole drift check: one role read per route.
const driftTimeout = 60 * time.Second

func driftCommand() *cli.Command {
	return &cli.Command{
		Name:  "drift",
		Usage: "compare each route's principals with its OpenBao role's allowed_users (exit 1 on drift, 2 on errors)",
		UsageText: "warden-agent drift [--json]\n\n" +
			"   warden-agent drift\n" +
			"   warden-agent drift --json   # for scheduled checks\n\n" +
			"Reads <mount>/roles/<role> for every route with a mount and role, with the agent's OpenBao\n" +
			"settings, and reports principals the catalog allows that the role does not, and the reverse.\n" +
			"Exit status: 0 in step; 1 drift; 2 the check could not be completed (configuration, OpenBao\n" +
			"unreachable, a role that could not be read, e.g. permission denied), even if drift was also found.",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"}},
		Action: driftAction,
	}
}

// Exit statuses of drift: a scheduled check tells "fix the catalog or the
// role" from "the check itself is broken".
const (
	driftExitDrift = 1
	driftExitError = 2
)

func driftAction(c *cli.Context) error {
	failed := func(err error) error { return cli.Exit("warden-agent drift: "+err.Error(), driftExitError) }
	_, cat, err := loadCatalog(c)
	if err != nil {
		return failed(err)
	}
	reader, err := roleReaderFor(c)
	if err != nil {
		return failed(err)
	}
	ctx, cancel := context.WithTimeout(c.Context, driftTimeout)
	defer cancel()
	rep, err := catalog.Drift(ctx, cat, reader)
	if err != nil {
		return failed(err)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printDrift(c, rep)
	}
	if rep.Errors {
		return cli.Exit("", driftExitError)
	}
	if rep.Drift {
		return cli.Exit("", driftExitDrift)
	}
	return nil
}

func printDrift(c *cli.Context, rep catalog.DriftReport) {
	w := c.App.Writer
	for _, d := range rep.Routes {
		switch {
		case d.Skipped != "":
			fmt.Fprintf(w, "route %s: skipped (%s)\n", d.Route, d.Skipped)
		case d.Error != "":
			fmt.Fprintf(w, "route %s: NOT CHECKED: %s\n", d.Route, d.Error)
		case d.Drifted():
			fmt.Fprintf(w, "route %s (%s/roles/%s): DRIFT\n", d.Route, d.Mount, d.Role)
			if len(d.CatalogOnly) > 0 {
				fmt.Fprintf(w, "  catalog allows, role refuses: %s (issuance for them fails)\n", strings.Join(d.CatalogOnly, ", "))
			}
			if len(d.RoleOnly) > 0 {
				fmt.Fprintf(w, "  role allows, catalog does not: %s\n", strings.Join(d.RoleOnly, ", "))
			}
		default:
			note := ""
			if d.RoleAllowsAll {
				note = " (role allows any user: *)"
			}
			fmt.Fprintf(w, "route %s (%s/roles/%s): in step%s\n", d.Route, d.Mount, d.Role, note)
		}
	}
	switch {
	case rep.Errors:
		fmt.Fprintln(w, "incomplete: some roles could not be read (exit 2)")
	case !rep.Drift:
		fmt.Fprintln(w, "no drift")
	}
}
