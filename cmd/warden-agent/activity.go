package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/audit"
)

// activityCommand reads the audit log (package audit does the work): a
// filtered table or JSON lines, --follow, verify and show SERIAL.
func activityCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print the records as JSON lines, as they are in the log"}
	return &cli.Command{
		Name:  "activity",
		Usage: "show the audit log: certificates issued and used, refusals, reloads",
		UsageText: "warden-agent activity [--since 2h|TIME] [--until 2h|TIME] [--event NAME]... [--principal NAME] [--host HOST] [--route NAME] [--serial SERIAL] [--caller TEXT] [--json] [--follow]\n\n" +
			"Examples:\n" +
			"   warden-agent activity --since 24h --event 'cert.*'\n" +
			"   warden-agent activity --host web1 --follow\n" +
			"   warden-agent activity verify\n" +
			"   warden-agent activity show c73f26d2340276aa",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.StringFlag{Name: "since", Usage: "only records from `WHEN` on: a duration back from now (2h, 30m, 7d) or a time (2026-11-30T21:00:00Z, 2026-11-30)"},
			&cli.StringFlag{Name: "until", Usage: "only records up to `WHEN` (same forms as --since)"},
			&cli.StringSliceFlag{Name: "event", Usage: "only events named `NAME` (repeatable; 'cert.*' matches every cert event)"},
			&cli.StringFlag{Name: "principal", Usage: "only records for principal or remote user `NAME`"},
			&cli.StringFlag{Name: "host", Usage: "only records for target `HOST`"},
			&cli.StringFlag{Name: "route", Usage: "only records of catalog route `NAME`"},
			&cli.StringFlag{Name: "serial", Usage: "only records of certificate `SERIAL` (hex as in OpenBao, or decimal as sshd logs it)"},
			&cli.StringFlag{Name: "caller", Usage: "only records whose calling process chain or executable contains `TEXT`, or whose caller pid is TEXT"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "after the matching records, print new ones as they are written, until interrupted"},
		},
		Action: activityList,
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check that no record was edited, deleted, inserted or reordered",
				UsageText: "warden-agent activity verify [--json]\n\nExamples:\n   warden-agent activity verify   # ok: 1234 records, head 5f0c…\n" +
					"   warden-agent activity verify --json   # {\"ok\":true,\"records\":1234,…}; exit 1 when broken",
				Flags:  []cli.Flag{jsonFlag},
				Action: activityVerify,
			},
			{
				Name:      "show",
				Usage:     "print the issuance and every use of one certificate",
				ArgsUsage: "SERIAL",
				UsageText: "warden-agent activity show [--json] SERIAL\n\nExamples:\n   warden-agent activity show c73f26d2340276aa\n   warden-agent activity show 14357712346421409450   # decimal, as sshd logs it",
				Flags:     []cli.Flag{jsonFlag},
				Action:    activityShow,
			},
		},
	}
}

func activityList(c *cli.Context) error {
	path, err := auditPathFor(c)
	if err != nil {
		return err
	}
	f, err := activityFilter(c)
	if err != nil {
		return err
	}
	w := c.App.Writer
	route := c.String("route")
	onRoute := func(r audit.Record) bool { return route == "" || r.FieldString("route") == route }
	if c.Bool("follow") {
		rows := audit.NewRowWriter(w)
		return audit.Follow(c.Context, path, f, func(r audit.Record) {
			if !onRoute(r) {
				return
			}
			if c.Bool("json") {
				audit.WriteJSON(w, []audit.Record{r})
			} else {
				rows.Write(r)
			}
		})
	}
	recs, err := audit.Query(path, f)
	if err != nil {
		return err
	}
	return writeRecords(c, slices.DeleteFunc(recs, func(r audit.Record) bool { return !onRoute(r) }))
}

func activityFilter(c *cli.Context) (audit.Filter, error) {
	now := time.Now()
	since, err := audit.ParseTime(c.String("since"), now)
	if err != nil {
		return audit.Filter{}, fmt.Errorf("--since: %w", err)
	}
	until, err := audit.ParseTime(c.String("until"), now)
	if err != nil {
		return audit.Filter{}, fmt.Errorf("--until: %w", err)
	}
	return audit.Filter{
		Since: since, Until: until, Events: c.StringSlice("event"),
		Principal: c.String("principal"), Host: c.String("host"),
		Serial: c.String("serial"), Caller: c.String("caller"),
	}, nil
}

func writeRecords(c *cli.Context, recs []audit.Record) error {
	if c.Bool("json") {
		return audit.WriteJSON(c.App.Writer, recs)
	}
	return audit.WriteTable(c.App.Writer, recs)
}

func activityVerify(c *cli.Context) error {
	path, err := auditPathFor(c)
	if err != nil {
		return err
	}
	res, err := audit.Verify(path)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeVerifyJSON(c, res)
	}
	if !res.OK() {
		return cli.Exit(fmt.Sprintf("broken at seq %d: %s\n  (%s, line %d; the records before it verify)", res.BrokenSeq, res.Reason, res.File, res.Line), 1)
	}
	fmt.Fprintf(c.App.Writer, "ok: %d records, head %s\n", res.Records, res.Head)
	if res.FirstSeq > 1 {
		fmt.Fprintf(c.App.Writer, "note: the chain starts at seq %d; older records are not in these files (rotated away once older than audit.min_age, moved away before a SIGHUP, or deleted by hand), so only the OpenBao audit anchor can vouch for them\n", res.FirstSeq)
	}
	return nil
}

func activityShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("usage: warden-agent activity show SERIAL (hex as in OpenBao or decimal as sshd logs it)", 2)
	}
	path, err := auditPathFor(c)
	if err != nil {
		return err
	}
	recs, err := audit.Show(path, c.Args().First())
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		files, _ := audit.Files(path)
		return cli.Exit(fmt.Sprintf("no records for serial %s in %d audit file(s) at %s", c.Args().First(), len(files), path), 1)
	}
	return writeRecords(c, recs)
}

// verifyJSON is `activity verify --json`: the result for a script, with the
// same exit codes as the text form (0 ok, 1 broken).
type verifyJSON struct {
	OK        bool     `json:"ok"`
	Records   int      `json:"records"`
	FirstSeq  uint64   `json:"first_seq"`
	LastSeq   uint64   `json:"last_seq"`
	Head      string   `json:"head"`
	Files     []string `json:"files"`
	BrokenSeq uint64   `json:"broken_seq,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	File      string   `json:"file,omitempty"`
	Line      int      `json:"line,omitempty"`
}

func writeVerifyJSON(c *cli.Context, res audit.VerifyResult) error {
	out := verifyJSON{OK: res.OK(), Records: res.Records, FirstSeq: res.FirstSeq, LastSeq: res.LastSeq, Head: res.Head,
		Files: res.Files, BrokenSeq: res.BrokenSeq, Reason: res.Reason, File: res.File, Line: res.Line}
	enc := json.NewEncoder(c.App.Writer)
	if err := enc.Encode(out); err != nil {
		return err
	}
	if !out.OK {
		return cli.Exit("", 1)
	}
	return nil
}
