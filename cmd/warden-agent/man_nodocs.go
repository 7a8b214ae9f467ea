//go:build urfave_cli_no_docs

package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// errNoManPage: this build leaves out urfave/cli's man page generator
// (see man.go); the page is installed as docs/warden-agent.1.
var errNoManPage = errors.New("this warden-agent is built without the man page generator (-tags urfave_cli_no_docs); read `man warden-agent` (docs/warden-agent.1), or run `make man` in the source tree")

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (roff)",
		Hidden: true,
		Action: func(*cli.Context) error { return errNoManPage },
	}
}

func manPage(*cli.App) (string, error) { return "", errNoManPage }
