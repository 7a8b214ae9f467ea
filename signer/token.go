package signer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// Token source names, as reported in errors and TokenInfo.
const (
	SourceConfig       = "config token"
	SourceBaoToken     = "BAO_TOKEN"
	SourceVaultToken   = "VAULT_TOKEN"
	SourceTokenFile    = "token file"
	SourceAppRole      = "approle"
	SourceJWT          = "jwt"
	SourceTokenCommand = "token_command"
)

// Bounds on what a token command may print.
const (
	maxCommandStdout = 64 << 10
	maxCommandStderr = 512
	maxSecretFile    = 64 << 10
)

// heldToken is a token and what we know about it. Its String never shows
// the token.
type heldToken struct {
	value  string
	source string
	// relogin: the source can mint a fresh token (AppRole, JWT, command).
	relogin   bool
	policies  []string // nil: unknown
	ttl       time.Duration
	asked     time.Duration // the increment to ask for on renewal
	renewable bool
	// capped: a renewal granted less than asked, so the token has reached
	// its max TTL and renewing it again gains nothing.
	capped    bool
	refreshed time.Time // when ttl was measured
	// invalid: lookup-self refused the token (expired or revoked, or a
	// policy without the default policy's lookup-self). A sign that works
	// clears it.
	invalid bool
	// lookupDenied: lookup-self refused a token that signs: a policy
	// without lookup-self, so TTL and policies are unknown.
	lookupDenied bool
}

func (h *heldToken) String() string { return "token from " + h.source }

func (h *heldToken) expires() time.Time {
	if h.ttl <= 0 {
		return time.Time{}
	}
	return h.refreshed.Add(h.ttl)
}

// canRenew reports whether renewing would extend the token.
func (h *heldToken) canRenew() bool { return h.renewable && !h.capped }

// due reports whether two thirds of the token's lease have passed (a
// third is left) and something can be done about it (renew, or log in
// again). The lease is the TTL asked for at creation or renewal, not the
// TTL left at the last lookup: frequent lookups must not push renewal
// towards the expiry.
func (h *heldToken) due(now time.Time) bool {
	if h.ttl <= 0 || (!h.canRenew() && !h.relogin) {
		return false
	}
	lease := h.ttl
	if h.asked > 0 {
		lease = h.asked
	}
	return !now.Before(h.expires().Add(-lease / 3))
}

// Token lifecycle timing.
const (
	// lookupEvery is how often an idle agent asks lookup-self whether its
	// token still works, so a revoked token is noticed (and its source
	// read again) before a login needs it.
	lookupEvery = time.Minute
	// retryMax bounds the back-off between attempts to find a token when
	// none works; each attempt may run token_command.
	retryMax = 5 * time.Minute
	// TokenWarning is how close to its expiry a token that cannot be
	// renewed or replaced makes the agent degraded.
	TokenWarning = 10 * time.Minute
)

// tokenManager owns the issuer's token for its whole life: it finds one at
// start, looks it up on a schedule, renews it at two thirds of its TTL
// whether or not anything was issued, and reads its source again when the
// token is expired, revoked or refused. Status reads its findings.
//
// Obtaining, renewing and re-logging in are serialized by sem (a
// context-aware mutex), so fifty concurrent issues on a cold start log in
// once; mu guards the fields below it and is never held across a network
// call.
type tokenManager struct {
	o   *OpenBao
	sem chan struct{}

	mu  sync.Mutex
	cur *heldToken
	// err is why the last attempt to find a working token failed (a
	// *NoTokenError, *TokenInvalidError or *TokenSourceError); nil after
	// a success.
	err error
	// renewErr is the last renewal failure; nil after a good renewal.
	renewErr error
	// checked is when the token was last confirmed (lookup, login,
	// renewal or a sign that worked); attempted is when the last attempt
	// to find one was made, failures is how many failed in a row.
	checked, attempted time.Time
	failures           int
}

func newTokenManager(o *OpenBao) *tokenManager {
	return &tokenManager{o: o, sem: make(chan struct{}, 1)}
}

func (t *tokenManager) current() *heldToken {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

func (t *tokenManager) set(h *heldToken) {
	t.mu.Lock()
	t.cur = h
	if h != nil && !h.invalid {
		t.checked = t.o.now()
	}
	t.mu.Unlock()
}

// found records the outcome of an attempt to find a working token.
func (t *tokenManager) found(h *heldToken, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempted = t.o.now()
	if h != nil {
		t.cur = h
	}
	var ue *UnavailableError
	switch {
	case errors.As(err, &ue):
		// The server, not the token: status reports the issuer's health.
	case err != nil:
		t.err = err
		t.failures++
	case h != nil && h.invalid:
		t.failures++
	default:
		t.err, t.failures, t.checked = nil, 0, t.o.now()
	}
}

func (t *tokenManager) acquire(ctx context.Context) error {
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		// Another request is obtaining the token from a server that has not
		// answered: say which server, as that request's own error does.
		return &UnavailableError{Address: t.o.Address(), Reason: ReasonTimeout, Timeout: t.o.cfg.timeout, Err: ctx.Err()}
	}
}

func (t *tokenManager) release() { <-t.sem }

// TokenState is what the last check of the token found.
type TokenState string

// Token states.
const (
	// TokenUnchecked: nothing has been tried yet (the agent just started).
	TokenUnchecked TokenState = "unchecked"
	// TokenMissing: no source had a token, or every login failed.
	TokenMissing TokenState = "missing"
	// TokenValid: lookup-self, a login, a renewal or a sign accepted it.
	TokenValid TokenState = "valid"
	// TokenInvalid: lookup-self refused it: expired or revoked.
	TokenInvalid TokenState = "invalid"
)

func (t *tokenManager) info() TokenInfo {
	t.mu.Lock()
	h, err, renewErr, checked := t.cur, t.err, t.renewErr, t.checked
	t.mu.Unlock()
	now := t.o.now()
	ti := TokenInfo{State: TokenUnchecked, CheckedAt: checked}
	if renewErr != nil {
		ti.RenewError = renewErr.Error()
	}
	if h == nil {
		if err != nil {
			ti.State, ti.Problem = TokenMissing, err.Error()
		}
		return ti
	}
	ti.Source, ti.Renewable, ti.Policies, ti.ExpiresAt = h.source, h.renewable, slices.Clone(h.policies), h.expires()
	ti.Relogin, ti.MaxTTLReached = h.relogin, h.capped
	if !ti.ExpiresAt.IsZero() {
		ti.TTL = max(ti.ExpiresAt.Sub(now), 0)
	}
	ti.State = TokenValid
	switch {
	case h.invalid:
		ti.State = TokenInvalid
		if err == nil {
			err = &TokenInvalidError{Address: t.o.Address(), Source: h.source}
		}
		ti.Problem = err.Error()
	case !ti.ExpiresAt.IsZero() && ti.TTL == 0:
		ti.State = TokenInvalid
		ti.Problem = (&TokenInvalidError{Address: t.o.Address(), Source: h.source, Expired: true}).Error()
	case !ti.ExpiresAt.IsZero() && ti.TTL < TokenWarning && !h.relogin && !h.canRenew():
		why := "is not renewable"
		if h.capped {
			why = "has reached its max TTL"
		}
		ti.Problem = fmt.Sprintf("the OpenBao token from %s expires in %s and %s; %s", h.source, ti.TTL.Round(time.Second), why, freshTokenFix(h.source))
	case !ti.ExpiresAt.IsZero() && ti.TTL < TokenWarning && renewErr != nil:
		ti.Problem = fmt.Sprintf("the OpenBao token from %s expires in %s and its renewal fails: %v", h.source, ti.TTL.Round(time.Second), renewErr)
	case err != nil && h.relogin && !ti.ExpiresAt.IsZero() && ti.TTL < TokenWarning:
		ti.Problem = fmt.Sprintf("the OpenBao token from %s expires in %s and a new login fails: %v", h.source, ti.TTL.Round(time.Second), err)
	}
	return ti
}

// get returns a usable token: the held one, renewed first when two thirds
// of its TTL have passed, or a new one from the first source that has one
// when there is none or the held one was refused.
func (t *tokenManager) get(ctx context.Context) (*heldToken, error) {
	if h := t.current(); h != nil && !h.invalid && !h.due(t.o.now()) {
		return h, nil
	}
	if err := t.acquire(ctx); err != nil {
		return nil, err
	}
	defer t.release()
	h := t.current()
	if h == nil || h.invalid {
		nh, err := t.obtain(ctx)
		t.found(nh, err)
		if err != nil {
			return nil, err
		}
		// An invalid token is still tried: a policy may lack lookup-self
		// and yet allow the sign; if not, the sign's 403 says why.
		return nh, nil
	}
	if h.due(t.o.now()) {
		return t.refreshLocked(ctx, h)
	}
	return h, nil
}

// run is the background loop: find a token at start, then renew, look up
// and replace it on schedule until stop is closed.
func (t *tokenManager) run(stop <-chan struct{}) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*t.o.cfg.timeout)
		t.tick(ctx)
		cancel()
		select {
		case <-stop:
			return
		case <-time.After(t.nextTick()):
		}
	}
}

// nextTick is how long the loop sleeps: often enough to renew a short
// token at two thirds of its TTL, never more often than once a second.
func (t *tokenManager) nextTick() time.Duration {
	h := t.current()
	if h == nil || h.ttl <= 0 {
		return renewCheckEvery
	}
	return min(max(h.ttl/10, time.Second), renewCheckEvery)
}

// tick does what is due now.
func (t *tokenManager) tick(ctx context.Context) {
	now := t.o.now()
	h := t.current()
	t.mu.Lock()
	attempted, failures, checked := t.attempted, t.failures, t.checked
	t.mu.Unlock()
	switch {
	case h == nil || h.invalid:
		// Back off while nothing works: each attempt may run a command.
		wait := min(renewCheckEvery<<min(failures, 5), retryMax)
		if failures > 0 && now.Sub(attempted) < wait {
			return
		}
		_ = t.Check(ctx)
	case h.due(now):
		t.refreshIfDue(ctx)
	case now.Sub(checked) >= lookupEvery:
		_ = t.Check(ctx)
	}
}

// Check asks OpenBao about the token now: lookup-self for the held one
// (its TTL, renewability and policies), or a new one from the sources when
// there is none or it was refused. The error is a server failure; token
// problems are in info.
func (t *tokenManager) Check(ctx context.Context) error {
	if err := t.acquire(ctx); err != nil {
		return err
	}
	defer t.release()
	h := t.current()
	if h == nil || h.invalid {
		nh, err := t.obtain(ctx)
		t.found(nh, err)
		return unavailable(err)
	}
	cp := *h
	nh, err := t.lookup(ctx, &cp)
	if err != nil {
		return unavailable(err)
	}
	if nh.invalid && h.lookupDenied {
		return nil // known to sign without lookup-self: nothing to learn
	}
	if !nh.invalid {
		t.found(nh, nil)
		return nil
	}
	_, err = t.replaceLocked(ctx, nh, "")
	return unavailable(err)
}

func unavailable(err error) error {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	return nil
}

// refreshIfDue renews the held token when it is due; the background loop
// calls it so that an idle agent keeps its token alive.
func (t *tokenManager) refreshIfDue(ctx context.Context) {
	if h := t.current(); h == nil || !h.due(t.o.now()) {
		return
	}
	if err := t.acquire(ctx); err != nil {
		return
	}
	defer t.release()
	if h := t.current(); h != nil && h.due(t.o.now()) {
		_, _ = t.refreshLocked(ctx, h)
	}
}

// refreshLocked renews h, or replaces it by logging in again. Called with
// sem held. A failed renewal keeps h while it has not expired: the server
// may be briefly down, and the token still works.
func (t *tokenManager) refreshLocked(ctx context.Context, h *heldToken) (*heldToken, error) {
	log := t.o.log.With("source", h.source)
	if h.canRenew() {
		err := t.renew(ctx, h)
		t.mu.Lock()
		t.renewErr = err
		t.mu.Unlock()
		if err == nil {
			return t.current(), nil
		}
		log.Warn("openbao: token renewal failed", "err", err)
		var ie *TokenInvalidError
		if errors.As(err, &ie) {
			return t.replaceLocked(ctx, t.current(), "auth/token/renew-self")
		}
		var ue *UnavailableError
		if errors.As(err, &ue) || !h.relogin {
			if exp := h.expires(); exp.IsZero() || t.o.now().Before(exp) {
				return h, nil
			}
			return nil, err
		}
	}
	if h.relogin {
		nh, err := t.login(ctx, h.source)
		if err != nil {
			if exp := h.expires(); t.o.now().Before(exp) {
				log.Warn("openbao: new login failed; keeping the current token until it expires", "err", err)
				t.mu.Lock()
				t.err = err
				t.mu.Unlock()
				return h, nil
			}
			t.found(nil, err)
			return nil, err
		}
		t.found(nh, nil)
		return nh, nil
	}
	return h, nil
}

// renew calls auth/token/renew-self and records the new TTL. A 403 is
// checked with lookup-self, so the error says whether the token is gone
// (*TokenInvalidError) or a policy lacks renew-self.
func (t *tokenManager) renew(ctx context.Context, h *heldToken) error {
	body := map[string]any{}
	if h.asked > 0 {
		body["increment"] = fmt.Sprintf("%ds", int64(h.asked/time.Second))
	}
	resp, err := t.o.do(ctx, http.MethodPost, "auth/token/renew-self", body, h.value, nil)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		msg := errorMessage(resp.body)
		if resp.status >= 500 {
			return statusError(resp, msg)
		}
		if resp.status == http.StatusForbidden {
			cp := *h
			lk, lerr := t.lookup(ctx, &cp)
			switch {
			case lerr != nil:
				return lerr
			case lk.invalid:
				lk.invalid = true
				t.set(lk)
				return &TokenInvalidError{Address: resp.addr, Source: h.source, Path: "auth/token/renew-self",
					Detail: "a token that expired while OpenBao was sealed or unreachable cannot be renewed"}
			}
			return fmt.Errorf("openbao: renewing the token from %s at %s: %d %q: the token works but its policies (%s) lack path \"auth/token/renew-self\" { capabilities = [\"update\"] } (the default policy grants it); it expires at %s",
				h.source, resp.addr, resp.status, msg, strings.Join(lk.policies, ", "), h.expires().UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("openbao: renewing the token from %s at %s: %d %q", h.source, resp.addr, resp.status, msg)
	}
	a, err := parseAuth(resp.body)
	if err != nil {
		return fmt.Errorf("openbao: renew-self answer from %s: %w", resp.addr, err)
	}
	nh := *h
	nh.ttl = a.ttl
	nh.renewable = a.renewable
	nh.refreshed = t.o.now()
	nh.invalid = false
	// OpenBao caps a renewal at the token's max TTL and says so only in a
	// warning: a shorter grant than asked means renewing again gains
	// nothing.
	nh.capped = h.asked > 0 && a.ttl+time.Second < h.asked
	if a.policies != nil {
		nh.policies = a.policies
	}
	t.set(&nh)
	if nh.capped {
		t.o.log.Warn("openbao: token renewed up to its max TTL; it cannot be renewed further", "source", h.source, "ttl", a.ttl, "asked", h.asked)
	} else {
		t.o.log.Info("openbao: token renewed", "source", h.source, "ttl", a.ttl)
	}
	return nil
}

// refused is called after a sign answered 403 with tok. lookup-self tells
// the two causes apart: if it accepts tok, tok's policies deny the path
// and the returned token carries them fresh (retry false); if it refuses
// tok too, tok is expired or revoked, its source is read again, and a new
// token is returned to retry with (a 403 minted nothing).
func (t *tokenManager) refused(ctx context.Context, tok *heldToken, path string) (*heldToken, bool, error) {
	if err := t.acquire(ctx); err != nil {
		return nil, false, err
	}
	defer t.release()
	if h := t.current(); h != nil && h.value != tok.value && !h.invalid {
		return h, true, nil // another caller already replaced it
	}
	cp := *tok
	nh, err := t.lookup(ctx, &cp)
	if err != nil {
		return nil, false, err
	}
	if !nh.invalid {
		t.found(nh, nil)
		return nh, false, nil
	}
	rh, err := t.replaceLocked(ctx, nh, path)
	if err != nil {
		return nil, false, err
	}
	return rh, true, nil
}

// replaceLocked marks bad (refused by lookup-self) invalid and reads its
// source again: a new login for AppRole, JWT and the command, every source
// in order otherwise (a fresh ~/.vault-token is picked up). It fails with
// a *TokenInvalidError when nothing better is found. Called with sem held.
func (t *tokenManager) replaceLocked(ctx context.Context, bad *heldToken, path string) (*heldToken, error) {
	bad.invalid = true
	t.o.log.Warn("openbao: token refused by lookup-self (expired or revoked); reading its source again", "source", bad.source)
	var (
		nh  *heldToken
		err error
	)
	if bad.relogin {
		nh, err = t.login(ctx, bad.source)
	} else {
		nh, err = t.obtain(ctx)
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return nil, err
	}
	if err == nil && nh.value != bad.value && !nh.invalid {
		t.o.log.Info("openbao: token replaced", "old_source", bad.source, "source", nh.source)
		t.found(nh, nil)
		return nh, nil
	}
	ie := &TokenInvalidError{Address: t.o.Address(), Source: bad.source, Path: path}
	switch {
	case err != nil:
		ie.Detail = "no other token found: " + err.Error()
	case nh.value == bad.value:
		ie.Detail = "its source still holds the same token"
	default:
		ie.Detail = "the token from " + nh.source + " is refused too"
	}
	t.found(bad, ie)
	return nil, ie
}

// worked records that tok signed: it is valid even if lookup-self refused
// it (a policy without lookup-self).
func (t *tokenManager) worked(tok *heldToken) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil && t.cur.value == tok.value && t.cur.invalid {
		cp := *t.cur
		cp.invalid, cp.lookupDenied = false, true
		t.cur = &cp
		t.err, t.failures = nil, 0
	}
	if t.cur != nil && t.cur.value == tok.value {
		t.checked = t.o.now()
	}
}

// obtain tries every source in order and returns the first token that
// lookup-self accepts. A static token it refuses (expired, revoked) is
// skipped for the next source but returned, marked invalid, when no
// source has a better one. A configured login that fails is noted and the
// next source is tried, unless the server itself is unavailable.
func (t *tokenManager) obtain(ctx context.Context) (*heldToken, error) {
	cfg, getenv := &t.o.cfg.cfg, t.o.cfg.getenv
	var (
		tried  []TokenAttempt
		refuse *heldToken // the first token lookup-self refused
	)
	static := func(source, value string) (*heldToken, error) {
		h, err := t.lookup(ctx, &heldToken{value: value, source: source})
		if err != nil {
			return nil, err
		}
		if h.invalid {
			tried = append(tried, TokenAttempt{source, "expired or revoked: lookup-self refused it"})
			if refuse == nil {
				refuse = h
			}
			return nil, nil
		}
		return h, nil
	}
	check := func(source, value string) (*heldToken, bool, error) {
		h, err := static(source, value)
		return h, h != nil || err != nil, err
	}
	if cfg.Token != "" {
		if h, done, err := check(SourceConfig, cfg.Token); done {
			return h, err
		}
	} else {
		tried = append(tried, TokenAttempt{SourceConfig, "not set"})
	}
	for _, name := range []string{SourceBaoToken, SourceVaultToken} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if h, done, err := check(name, v); done {
				return h, err
			}
			continue
		}
		tried = append(tried, TokenAttempt{name, "not set"})
	}
	if file := t.o.cfg.tokenFile; file == "" {
		tried = append(tried, TokenAttempt{SourceTokenFile, "no home directory"})
	} else {
		v, err := readSecretFile(file)
		name := SourceTokenFile + " " + file
		switch {
		case errors.Is(err, fs.ErrNotExist):
			tried = append(tried, TokenAttempt{name, "no such file"})
		case err != nil:
			tried = append(tried, TokenAttempt{name, err.Error()})
		case v == "":
			tried = append(tried, TokenAttempt{name, "empty"})
		default:
			if h, done, err := check(name, v); done {
				return h, err
			}
		}
	}
	for _, src := range []string{SourceAppRole, SourceJWT, SourceTokenCommand} {
		if !t.configured(src) {
			tried = append(tried, TokenAttempt{src, "not configured"})
			continue
		}
		h, err := t.login(ctx, src)
		if err == nil && !h.invalid {
			return h, nil
		}
		var ue *UnavailableError
		if errors.As(err, &ue) {
			return nil, err
		}
		if err == nil {
			tried = append(tried, TokenAttempt{src, "its token is expired or revoked: lookup-self refused it"})
			continue
		}
		var se *TokenSourceError
		reason := err.Error()
		if errors.As(err, &se) {
			reason = "login failed: " + se.Reason
		}
		tried = append(tried, TokenAttempt{src, reason})
	}
	if refuse != nil {
		return refuse, nil
	}
	ne := &NoTokenError{Tried: tried}
	if len(cfg.TokenCommand) > 0 {
		ne.TokenCommand = cfg.TokenCommand[0]
	}
	return nil, ne
}

func (t *tokenManager) configured(src string) bool {
	cfg := &t.o.cfg.cfg
	switch src {
	case SourceAppRole:
		return cfg.AppRole != nil
	case SourceJWT:
		return cfg.JWT != nil
	case SourceTokenCommand:
		return len(cfg.TokenCommand) > 0
	}
	return false
}

// login mints a token from a login source.
func (t *tokenManager) login(ctx context.Context, src string) (*heldToken, error) {
	cfg := &t.o.cfg.cfg
	switch src {
	case SourceAppRole:
		secret, err := readSecretFile(cfg.AppRole.SecretIDFile)
		if err != nil || secret == "" {
			if err == nil {
				err = errors.New("empty")
			}
			return nil, &TokenSourceError{Source: src, Reason: fmt.Sprintf("cannot read secret_id_file %s: %v", cfg.AppRole.SecretIDFile, err), Err: err}
		}
		return t.authLogin(ctx, src, t.o.cfg.approleMount, map[string]any{"role_id": cfg.AppRole.RoleID, "secret_id": secret},
			fmt.Sprintf("check role_id and the secret id in %s (it may have expired or been used up; issue a new one with bao write -f auth/%s/role/<role>/secret-id)", cfg.AppRole.SecretIDFile, t.o.cfg.approleMount))
	case SourceJWT:
		jwt, err := readSecretFile(cfg.JWT.JWTFile)
		if err != nil || jwt == "" {
			if err == nil {
				err = errors.New("empty")
			}
			return nil, &TokenSourceError{Source: src, Reason: fmt.Sprintf("cannot read jwt_file %s: %v", cfg.JWT.JWTFile, err), Err: err}
		}
		return t.authLogin(ctx, src, t.o.cfg.jwtMount, map[string]any{"role": cfg.JWT.Role, "jwt": jwt},
			fmt.Sprintf("check that role %s exists on auth/%s and that the JWT in %s is current and has the role's audience and claims", cfg.JWT.Role, t.o.cfg.jwtMount, cfg.JWT.JWTFile))
	case SourceTokenCommand:
		v, err := runTokenCommand(ctx, cfg.TokenCommand, t.o.cfg.cmdTimeout)
		if err != nil {
			return nil, err
		}
		return t.lookup(ctx, &heldToken{value: v, source: src, relogin: true})
	}
	return nil, fmt.Errorf("openbao: unknown token source %q", src)
}

// authLogin posts to auth/<mount>/login and keeps the token it returns. The
// login answer carries TTL, renewability and policies, so no lookup-self
// is needed.
func (t *tokenManager) authLogin(ctx context.Context, src, mount string, body map[string]any, fix string) (*heldToken, error) {
	path := "auth/" + mount + "/login"
	resp, err := t.o.do(ctx, http.MethodPost, path, body, "", nil)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		msg := errorMessage(resp.body)
		if resp.status >= 500 {
			return nil, statusError(resp, msg)
		}
		return nil, &TokenSourceError{Source: src, Reason: fmt.Sprintf("%s at %s answered %d: OpenBao said %q; %s", path, resp.addr, resp.status, msg, fix)}
	}
	a, err := parseAuth(resp.body)
	if err != nil || a.token == "" {
		if err == nil {
			err = errors.New("no client_token in the answer")
		}
		return nil, &TokenSourceError{Source: src, Reason: fmt.Sprintf("%s at %s: %v", path, resp.addr, err), Err: err}
	}
	t.o.log.Info("openbao: logged in", "source", src, "mount", mount, "ttl", a.ttl, "policies", a.policies)
	return &heldToken{value: a.token, source: src, relogin: true, policies: a.policies, ttl: a.ttl, asked: a.ttl,
		renewable: a.renewable, refreshed: t.o.now()}, nil
}

// lookup asks auth/token/lookup-self about h, for its TTL, renewability
// and policies. A 401 or 403 marks h invalid rather than failing: the
// caller decides (a policy may omit lookup-self, and then a sign that
// works proves the token).
func (t *tokenManager) lookup(ctx context.Context, h *heldToken) (*heldToken, error) {
	h.refreshed = t.o.now()
	resp, err := t.o.do(ctx, http.MethodGet, "auth/token/lookup-self", nil, h.value, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.status == http.StatusOK:
		a, err := parseLookup(resp.body)
		if err != nil {
			return nil, &UnavailableError{Address: resp.addr, Reason: ReasonBadResponse, Err: err}
		}
		wasInvalid, first := h.invalid, h.policies == nil
		h.ttl, h.renewable, h.policies, h.invalid, h.lookupDenied = a.ttl, a.renewable, a.policies, false, false
		if h.asked <= 0 {
			h.asked = a.creationTTL
		}
		if h.asked <= 0 {
			h.asked = a.ttl
		}
		if first || wasInvalid {
			t.o.log.Info("openbao: using token", "source", h.source, "ttl", h.ttl, "renewable", h.renewable, "policies", h.policies)
		}
	case resp.status >= 500:
		return nil, statusError(resp, errorMessage(resp.body))
	case resp.status == http.StatusForbidden || resp.status == http.StatusUnauthorized:
		h.invalid = true
		t.o.log.Warn("openbao: lookup-self refused the token: it is expired or revoked (or its policies lack the default policy's lookup-self)", "source", h.source, "status", resp.status)
	default:
		t.o.log.Warn("openbao: token lookup failed; its TTL and policies are unknown", "source", h.source, "status", resp.status)
	}
	return h, nil
}

// readSecretFile reads a small file holding one secret.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(buf) > maxSecretFile {
		return "", fmt.Errorf("larger than %d bytes", maxSecretFile)
	}
	return strings.TrimSpace(string(buf)), nil
}

// capped keeps the first max bytes written and drops the rest, so a
// chatty command neither blocks nor grows memory.
type capped struct {
	buf []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// runTokenCommand runs argv and returns its trimmed stdout. Its stderr goes
// into the error, truncated and with the token (if any was printed)
// removed.
func runTokenCommand(ctx context.Context, argv []string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A child that keeps the pipes open must not hold us past the timeout.
	cmd.WaitDelay = time.Second
	stdout := &capped{max: maxCommandStdout}
	stderr := &capped{max: maxCommandStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	tok := strings.TrimSpace(string(stdout.buf))
	errText := strings.TrimSpace(string(stderr.buf))
	if tok != "" {
		errText = strings.ReplaceAll(errText, tok, "<redacted>")
	}
	if len(stderr.buf) >= maxCommandStderr {
		errText += "..."
	}
	fail := func(reason string, cause error) error {
		if errText != "" {
			reason += fmt.Sprintf("; its stderr: %q", errText)
		}
		return &TokenSourceError{Source: SourceTokenCommand, Reason: reason, Err: cause}
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return "", fail(fmt.Sprintf("%s did not finish within %s (token_command_timeout)", argv[0], timeout), ctx.Err())
	case err != nil:
		return "", fail(fmt.Sprintf("%s: %v", argv[0], err), err)
	case tok == "":
		return "", fail(fmt.Sprintf("%s printed no token on stdout", argv[0]), nil)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fail(fmt.Sprintf("%s printed more than one word on stdout; it must print the token alone", argv[0]), nil)
	}
	return tok, nil
}

// TokenInvalidError reports a token that OpenBao no longer accepts:
// lookup-self refused it (expired or revoked), and its source had no
// better one.
type TokenInvalidError struct {
	Address string
	// Source names where the token came from.
	Source string
	// Path is the request that was refused, if any ("ssh/sign/eng").
	Path string
	// Expired: its TTL ran out (no request needed to know).
	Expired bool
	// Detail says what reading the source again found.
	Detail string
}

// Error says what failed and how to fix it.
func (e *TokenInvalidError) Error() string {
	var b strings.Builder
	switch {
	case e.Expired:
		fmt.Fprintf(&b, "openbao: the token from %s has expired", e.Source)
	case e.Path != "":
		fmt.Fprintf(&b, "openbao: the token from %s is expired or revoked: OpenBao at %s refused it on %s and on auth/token/lookup-self", e.Source, e.Address, e.Path)
	default:
		fmt.Fprintf(&b, "openbao: the token from %s is expired or revoked: OpenBao at %s refused it on auth/token/lookup-self", e.Source, e.Address)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	b.WriteString("; " + freshTokenFix(e.Source))
	return b.String()
}

// freshTokenFix says how to give the agent a new token from source.
func freshTokenFix(source string) string {
	switch {
	case source == SourceBaoToken || source == SourceVaultToken:
		return "a running agent cannot see a new " + source + ": restart it with a fresh one (credential exec … -- warden-agent run), or unset " + source + " and use bao login, whose ~/.vault-token the agent reads again by itself"
	case strings.HasPrefix(source, SourceTokenFile):
		return "write a fresh token to " + strings.TrimSpace(strings.TrimPrefix(source, SourceTokenFile)) + " (bao login does); the agent reads it again by itself"
	case source == SourceConfig:
		return "put a fresh token in agent.yaml's signer.openbao.token and restart the agent"
	case source == SourceTokenCommand:
		return "the agent runs token_command again by itself; check that it prints a current token"
	}
	return "the agent logs in again by itself; check the " + source + " credentials"
}
