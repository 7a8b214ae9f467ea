package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DefaultConfirmTimeout is how long a confirmation waits for a person.
const DefaultConfirmTimeout = 30 * time.Second

// Confirm asks a person through the SSH_ASKPASS program, as ssh-agent
// does for keys added with -c (OpenSSH readpass.c ask_permission): the
// program runs with SSH_ASKPASS_PROMPT=confirm and the prompt as its only
// argument, and exit status 0 means yes. A refusal returns false, nil; no
// answer before ctx ends returns false with the context's error, and so
// does a program that cannot be started — both are a deny.
func Confirm(ctx context.Context, askpass string, prompt string) (bool, error) {
	if askpass == "" {
		return false, errors.New("confirm: no SSH_ASKPASS program configured (set SSH_ASKPASS, or change the rule's effect)")
	}
	cmd := exec.CommandContext(ctx, askpass, prompt)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS_PROMPT=confirm")
	// Stdout is the answer channel of a passphrase askpass; for confirm
	// only the exit status counts. WaitDelay keeps a killed program's
	// children, holding its pipes, from stalling the decision.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return false, fmt.Errorf("confirm: no answer in time: %w", ctx.Err())
	}
	if err == nil {
		return true, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return false, nil
	}
	return false, fmt.Errorf("confirm: run %s: %w", askpass, err)
}

// ConfirmPrompt is the question shown to the person: the caller chain,
// the principal and the host, so that they can tell their own ssh from a
// program they did not start.
func ConfirmPrompt(in Input) string {
	var b strings.Builder
	host := in.Host
	switch {
	case host == "" && len(in.Hosts) > 0:
		host = strings.Join(in.Hosts, ",")
	case host == "":
		host = "an unnamed host"
	}
	fmt.Fprintf(&b, "Allow a certificate for %s@%s", in.Principal, host)
	if in.Route != "" {
		fmt.Fprintf(&b, " (route %s)", in.Route)
	}
	b.WriteString("?")
	if len(in.Callers) > 0 {
		fmt.Fprintf(&b, "\nRequested by: %s", chainString(in.Callers))
	}
	if in.Forwarded {
		b.WriteString("\nThe request came through a FORWARDED agent connection.")
	}
	return b.String()
}
