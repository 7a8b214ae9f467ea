package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer"
)

// failingAfter is how many issuances in a row must fail before status
// calls the agent degraded: one refusal may be a typo, three are a fault.
const failingAfter = 3

// Issuance failure reasons, the label of warden_issuance_failures_total.
var failureReasons = []string{
	"no_token", "token_invalid", "permission_denied", "role_refused", "sealed",
	"unreachable", "timeout", "tls", "server_error", "bad_response", "other",
}

// failureReason names the kind of an issuer error.
func failureReason(err error) string {
	var (
		nt *signer.NoTokenError
		ts *signer.TokenSourceError
		ti *signer.TokenInvalidError
		pd *signer.PermissionDeniedError
		rr *signer.RoleRefusedError
		ue *signer.UnavailableError
	)
	switch {
	case errors.As(err, &nt), errors.As(err, &ts):
		return "no_token"
	case errors.As(err, &ti):
		return "token_invalid"
	case errors.As(err, &pd):
		return "permission_denied"
	case errors.As(err, &rr):
		return "role_refused"
	case errors.As(err, &ue):
		switch ue.Reason {
		case signer.ReasonSealed:
			return "sealed"
		case signer.ReasonTimeout:
			return "timeout"
		case signer.ReasonTLS:
			return "tls"
		case signer.ReasonRefused, signer.ReasonUnreachable:
			return "unreachable"
		case signer.ReasonBadResponse:
			return "bad_response"
		}
		return "server_error"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// observedIssuer counts what its issuer answers, so status can say
// whether issuance works now rather than whether it once did.
type observedIssuer struct {
	signer.Issuer

	mu          sync.Mutex // guards the fields below
	failures    map[string]uint64
	inARow      int
	lastErr     string
	lastReason  string
	lastFailure time.Time
	lastSuccess time.Time
}

func observe(iss signer.Issuer) *observedIssuer {
	return &observedIssuer{Issuer: iss, failures: map[string]uint64{}}
}

// Issue forwards to the issuer and records the outcome.
func (o *observedIssuer) Issue(ctx context.Context, req signer.Request) (*signer.Issued, error) {
	res, err := o.Issuer.Issue(ctx, req)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		r := failureReason(err)
		o.failures[r]++
		o.inARow++
		o.lastErr, o.lastReason, o.lastFailure = err.Error(), r, time.Now()
		return nil, err
	}
	o.inARow, o.lastSuccess = 0, time.Now()
	return res, nil
}

// CAPublicKey forwards to the issuer.
func (o *observedIssuer) CAPublicKey(ctx context.Context) (ssh.PublicKey, error) {
	return o.Issuer.CAPublicKey(ctx)
}

// issuanceStatus is the issuer's recent record, for status.
type issuanceStatus struct {
	FailuresInARow int               `json:"failures_in_a_row"`
	LastError      string            `json:"last_error,omitempty"`
	LastReason     string            `json:"last_reason,omitempty"`
	LastFailureAt  time.Time         `json:"last_failure_at,omitzero"`
	LastSuccessAt  time.Time         `json:"last_success_at,omitzero"`
	Failures       map[string]uint64 `json:"failures_by_reason"`
}

func (o *observedIssuer) status() issuanceStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := issuanceStatus{FailuresInARow: o.inARow, LastError: o.lastErr, LastReason: o.lastReason,
		LastFailureAt: o.lastFailure, LastSuccessAt: o.lastSuccess, Failures: map[string]uint64{}}
	for _, r := range failureReasons {
		st.Failures[r] = o.failures[r]
	}
	return st
}
