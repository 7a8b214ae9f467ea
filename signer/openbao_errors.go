package signer

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// brokerHint ends every "no token" error: the usual fix on a workstation or
// tunnel host is to run the agent under the credential broker.
const brokerHint = `run the agent through your credential broker, e.g. "credential exec ops-warden-warden-sign-token -- warden-agent run", or set BAO_TOKEN`

// TokenAttempt is one token source tried and what came of it.
type TokenAttempt struct {
	// Source names the source: "config token", "BAO_TOKEN", "VAULT_TOKEN",
	// "token file <path>", "approle", "jwt", "token_command".
	Source string
	// Result says why it gave no token, e.g. "not set", "not configured".
	Result string
}

// NoTokenError reports that no token source produced a token.
type NoTokenError struct {
	Tried []TokenAttempt
	// TokenCommand is the configured token_command's program, if any.
	TokenCommand string
}

// Error says what failed and how to fix it.
func (e *NoTokenError) Error() string {
	parts := make([]string, len(e.Tried))
	for i, a := range e.Tried {
		parts[i] = a.Source + " (" + a.Result + ")"
	}
	hint := brokerHint
	if e.TokenCommand != "" {
		// The configured command is the fix the operator chose.
		hint = fmt.Sprintf("fix the configured token_command (%s) so that it prints a token, or set BAO_TOKEN", e.TokenCommand)
	}
	return "openbao: no OpenBao token: tried " + strings.Join(parts, ", ") + "; " + hint
}

// TokenSourceError reports that a configured login (AppRole, JWT or the
// token command) failed.
type TokenSourceError struct {
	// Source is "approle", "jwt" or "token_command".
	Source string
	// Reason says what went wrong and how to fix it; it never holds a secret.
	Reason string
	Err    error
}

// Error says what failed and how to fix it.
func (e *TokenSourceError) Error() string {
	return "openbao: " + e.Source + " login failed: " + e.Reason
}

// Unwrap returns the underlying cause, if any.
func (e *TokenSourceError) Unwrap() error { return e.Err }

// PermissionDeniedError is a 403 on a path while lookup-self still
// accepts the token: its policies do not grant the path. (A token that
// lookup-self refuses too is a *TokenInvalidError.)
type PermissionDeniedError struct {
	Address string
	// Path is the API path, e.g. "ssh/sign/eng".
	Path string
	// Policies are the token's policies from lookup-self (nil if unknown).
	Policies []string
	// Source names where the token came from.
	Source string
	// Message is OpenBao's error string.
	Message string
}

// Error says what failed and how to fix it.
func (e *PermissionDeniedError) Error() string {
	if e.Policies == nil {
		return fmt.Sprintf("openbao: permission denied on %s (token from %s): the token works (lookup-self accepts it) but its policies do not allow this path; ask for a policy with path %q { capabilities = [\"update\"] }", e.Path, e.Source, e.Path)
	}
	return fmt.Sprintf("openbao: permission denied on %s: the token from %s works (lookup-self accepts it) but its policies (%s) do not allow this path; ask for a policy with path %q { capabilities = [\"update\"] }", e.Path, e.Source, strings.Join(e.Policies, ", "), e.Path)
}

// RoleRefusedError is a 400 from <mount>/sign/<role>: the role refused the
// principal, TTL, extension or key, or does not exist. Message is
// OpenBao's own words.
type RoleRefusedError struct {
	Mount, Role string
	Principals  []string
	TTL         time.Duration
	Message     string
}

// Error says what failed and how to fix it.
func (e *RoleRefusedError) Error() string {
	p := strings.Join(e.Principals, ",")
	m := e.Message
	switch {
	case strings.HasPrefix(m, "Unknown role"):
		return fmt.Sprintf("openbao: role %s does not exist on mount %s: OpenBao said %q; fix the route's role or create it (bao write %s/roles/%s ...)", e.Role, e.Mount, m, e.Mount, e.Role)
	case strings.Contains(m, "valid_principals"):
		return fmt.Sprintf("openbao: role %s does not allow principal %s: OpenBao said %q; use a principal in the role's allowed_users, or add %s to them", e.Role, p, m, p)
	case strings.HasPrefix(m, "ttl "):
		return fmt.Sprintf("openbao: role %s refused ttl %s for principal %s: OpenBao said %q; lower the route's ttl to at most the role's max_ttl", e.Role, e.TTL, p, m)
	case strings.HasPrefix(m, "extensions "):
		return fmt.Sprintf("openbao: role %s refused extensions for principal %s: OpenBao said %q; drop them from the route or add them to the role's allowed_extensions", e.Role, p, m)
	case strings.Contains(m, "key_id"):
		return fmt.Sprintf("openbao: role %s refused key_id for principal %s: OpenBao said %q; set allow_user_key_ids on the role or leave key_id empty", e.Role, p, m)
	}
	return fmt.Sprintf("openbao: role %s refused principal %s: OpenBao said %q", e.Role, p, m)
}

// UnavailableReason says why OpenBao could not answer.
type UnavailableReason string

// Reasons an OpenBao server is unavailable.
const (
	ReasonSealed      UnavailableReason = "sealed"
	ReasonRefused     UnavailableReason = "connection refused"
	ReasonUnreachable UnavailableReason = "unreachable"
	ReasonTLS         UnavailableReason = "tls"
	ReasonTimeout     UnavailableReason = "timeout"
	ReasonServerError UnavailableReason = "server error"
	ReasonBadResponse UnavailableReason = "bad response"
)

// UnavailableError reports that the server at Address could not serve the
// request: sealed, not listening, failing TLS, too slow, or erroring.
type UnavailableError struct {
	Address string
	Reason  UnavailableReason
	// Status and Message are the HTTP status and OpenBao's message, if any.
	Status  int
	Message string
	// Timeout is the deadline that passed (ReasonTimeout), and
	// TimeoutSetting the setting that sets it.
	Timeout        time.Duration
	TimeoutSetting string
	Err            error
}

// Error says what failed and how to fix it.
func (e *UnavailableError) Error() string {
	a := e.Address
	switch e.Reason {
	case ReasonSealed:
		return fmt.Sprintf("openbao: OpenBao at %s is sealed (%d %q); it signs nothing until an operator unseals it (bao operator unseal)", a, e.Status, e.Message)
	case ReasonRefused:
		return fmt.Sprintf("openbao: OpenBao at %s refused the connection: nothing listens there; check the address and that the server runs: %v", a, e.Err)
	case ReasonUnreachable:
		return fmt.Sprintf("openbao: OpenBao at %s is unreachable: %v", a, e.Err)
	case ReasonTLS:
		return fmt.Sprintf("openbao: TLS to OpenBao at %s failed: %v; set ca_cert (or BAO_CACERT) to the CA that signed the server's certificate", a, e.Err)
	case ReasonTimeout:
		setting := e.TimeoutSetting
		if setting == "" {
			setting = "signer.openbao.timeout"
		}
		return fmt.Sprintf("openbao: OpenBao at %s did not answer within %s; check the server and network, or raise %s", a, e.Timeout.Round(time.Millisecond), setting)
	case ReasonBadResponse:
		return fmt.Sprintf("openbao: OpenBao at %s sent a response we cannot use: %v", a, e.Err)
	}
	if e.Status == http.StatusTooManyRequests {
		return fmt.Sprintf("openbao: OpenBao at %s is rate limiting this token (%d %q); warden retries after a back-off; ask for a larger rate limit quota on the sign path", a, e.Status, e.Message)
	}
	if e.Message != "" {
		return fmt.Sprintf("openbao: OpenBao at %s failed (%d %q)", a, e.Status, e.Message)
	}
	return fmt.Sprintf("openbao: OpenBao at %s failed (%d)", a, e.Status)
}

// Unwrap returns the underlying cause, if any.
func (e *UnavailableError) Unwrap() error { return e.Err }
