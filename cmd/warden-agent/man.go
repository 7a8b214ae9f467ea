//go:build !urfave_cli_no_docs

package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// manCommand prints the man page generated from the CLI definition;
// `make man` writes it to docs/warden-agent.1 and a test keeps the two
// in step. The installed binary is built with -tags urfave_cli_no_docs
// (Makefile): urfave/cli's man and markdown output pulls in blackfriday,
// whose package init every run pays, the hint ssh runs before each
// connection included; man_nodocs.go stands in there.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			s, err := manPage(c.App)
			if err != nil {
				return err
			}
			fmt.Fprint(c.App.Writer, s)
			return nil
		},
	}
}

func manPage(app *cli.App) (string, error) { return app.ToManWithSection(1) }
