// Command warden-hint is `warden-agent hint` as a program of its own: ssh
// runs it from the Match block `warden-agent ssh-config` prints, before
// every connection, and waits for it. It links only the standard library
// (internal/hintcall), so it starts in a fraction of the time the full
// warden-agent binary takes (docs/performance.md). The agent accepts the
// hint extension from it only when it is the warden-hint file installed
// beside the agent's own executable (docs/security.md).
//
//	warden-hint --socket SOCKET --user %r --host %h --port %p [--ssh-pid PID] [--timeout 15s]
package main

import (
	"fmt"
	"os"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

const usage = `usage: warden-hint --socket SOCKET --user USER --host HOST [--port PORT] [--ssh-pid PID] [--timeout DURATION]

ssh runs it from the block ` + "`warden-agent ssh-config`" + ` prints; it is ` + "`warden-agent hint`" + `
without the rest of warden-agent. It exits 0 when the agent accepted the target, so ssh uses
warden's socket; when the agent is down or refuses the target it exits 1 with the reason on
stderr, and ssh keeps your usual agent.`

func main() {
	args := append([]string{os.Args[0], "hint"}, os.Args[1:]...)
	a, ok := hintcall.Parse(args)
	if !ok {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if a.Socket == "" {
		fmt.Fprintln(os.Stderr, "warden-hint: --socket is required (or WARDEN_SOCKET); `warden-agent ssh-config` prints the line with it")
		os.Exit(2)
	}
	if msg, code := hintcall.Run(a, a.Socket); code != 0 {
		fmt.Fprintln(os.Stderr, msg)
		os.Exit(code)
	}
}
