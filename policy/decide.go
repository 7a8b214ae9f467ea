package policy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// GateUnavailable starts a Decision's GateReason when the gate could not
// be asked; with on_error: allow the request was then allowed (fail-open).
const GateUnavailable = "gate unavailable"

// DecideDeps are what Decide needs from outside: the askpass program,
// the confirmation timeout, the HTTP client for the gate, the logger.
type DecideDeps struct {
	// Askpass is the SSH_ASKPASS program for confirm rules; empty means a
	// confirm rule denies (nobody can be asked).
	Askpass string
	// ConfirmTimeout bounds the wait for a person; DefaultConfirmTimeout
	// when zero.
	ConfirmTimeout time.Duration
	// HTTPClient sends gate requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives the decision steps; nil discards them.
	Logger *slog.Logger
}

// Decide is the whole decision for one issuance: Evaluate, then ask the
// person if the rule says confirm, then ask the gate if it is enabled.
// The returned Decision's Effect is EffectAllow or EffectDeny, and it records what
// happened (Confirmed, GateAllow, GateReason) for the audit log.
func (p *Policy) Decide(ctx context.Context, in Input, deps DecideDeps) Decision {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := p.Evaluate(in)
	if d.Effect == EffectDeny {
		return d
	}
	if d.Effect == EffectConfirm {
		timeout := deps.ConfirmTimeout
		if timeout <= 0 {
			timeout = DefaultConfirmTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		ok, err := Confirm(cctx, deps.Askpass, ConfirmPrompt(in))
		cancel()
		switch {
		case err != nil:
			log.Info("confirmation failed; denying", "rule", d.Rule, "err", err)
			d.Effect, d.Reason = EffectDeny, fmt.Sprintf("%s requires confirmation: %v", d.Rule, err)
			return d
		case !ok:
			d.Effect, d.Reason = EffectDeny, fmt.Sprintf("%s requires confirmation: refused by the user", d.Rule)
			return d
		}
		d.Effect, d.Confirmed = EffectAllow, true
	}
	if p.IsAllowAll() || p.Gate == nil || !p.Gate.Enabled {
		return d
	}
	g := *p.Gate
	if deps.HTTPClient != nil {
		g.Client = deps.HTTPClient
	}
	res, err := g.Check(ctx, GateRequestFor(in))
	if err != nil {
		allow := g.onError() == OnErrorAllow
		d.GateAllow, d.GateReason = &allow, fmt.Sprintf("%s (on_error: %s): %v", GateUnavailable, g.onError(), err)
		log.Warn("policy gate failed", "url", g.URL, "on_error", g.onError(), "err", err)
		if !allow {
			d.Effect, d.Reason = EffectDeny, d.GateReason
		}
		return d
	}
	d.GateAllow, d.GateReason = &res.Allow, res.Reason
	if !res.Allow {
		d.Effect = EffectDeny
		d.Reason = "denied by the gate"
		if res.Reason != "" {
			d.Reason += ": " + res.Reason
		}
	}
	return d
}
