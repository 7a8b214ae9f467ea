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
	refreshed time.Time // when ttl was measured
}

func (h *heldToken) String() string { return "token from " + h.source }

func (h *heldToken) expires() time.Time {
	if h.ttl <= 0 {
		return time.Time{}
	}
	return h.refreshed.Add(h.ttl)
}

// due reports whether two thirds of the TTL have passed and something can
// be done about it (renew, or log in again).
func (h *heldToken) due(now time.Time) bool {
	if h.ttl <= 0 || (!h.renewable && !h.relogin) {
		return false
	}
	return !now.Before(h.refreshed.Add(h.ttl * 2 / 3))
}

// tokenManager obtains, renews and replaces the issuer's token.
//
// Obtaining, renewing and re-logging in are serialized by sem (a
// context-aware mutex), so fifty concurrent issues on a cold start log in
// once; mu guards cur only and is never held across a network call.
type tokenManager struct {
	o   *OpenBao
	sem chan struct{}

	mu  sync.Mutex
	cur *heldToken
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
	t.mu.Unlock()
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

func (t *tokenManager) info() TokenInfo {
	h := t.current()
	if h == nil {
		return TokenInfo{}
	}
	ti := TokenInfo{Source: h.source, Renewable: h.renewable, Policies: slices.Clone(h.policies), ExpiresAt: h.expires()}
	if !ti.ExpiresAt.IsZero() {
		ti.TTL = max(ti.ExpiresAt.Sub(t.o.now()), 0)
	}
	return ti
}

// get returns a usable token: the held one, renewed first when two thirds
// of its TTL have passed, or a new one from the first source that has one.
func (t *tokenManager) get(ctx context.Context) (*heldToken, error) {
	if h := t.current(); h != nil && !h.due(t.o.now()) {
		return h, nil
	}
	if err := t.acquire(ctx); err != nil {
		return nil, err
	}
	defer t.release()
	h := t.current()
	if h == nil {
		h, err := t.obtain(ctx)
		if err != nil {
			return nil, err
		}
		t.set(h)
		return h, nil
	}
	if h.due(t.o.now()) {
		return t.refreshLocked(ctx, h)
	}
	return h, nil
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
	if h.renewable {
		err := t.renew(ctx, h)
		if err == nil {
			return t.current(), nil
		}
		log.Warn("openbao: token renewal failed", "err", err)
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
				return h, nil
			}
			return nil, err
		}
		t.set(nh)
		return nh, nil
	}
	return h, nil
}

// renew calls auth/token/renew-self and records the new TTL.
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
	if a.policies != nil {
		nh.policies = a.policies
	}
	t.set(&nh)
	t.o.log.Info("openbao: token renewed", "source", h.source, "ttl", a.ttl)
	return nil
}

// relogin replaces failed, a token the server refused, by logging in again
// with its source. If another caller already replaced it, that token is
// returned instead, so a burst of 403s logs in once.
func (t *tokenManager) relogin(ctx context.Context, failed *heldToken) (*heldToken, error) {
	if err := t.acquire(ctx); err != nil {
		return nil, err
	}
	defer t.release()
	if h := t.current(); h != nil && h != failed && h.value != failed.value {
		return h, nil
	}
	h, err := t.login(ctx, failed.source)
	if err != nil {
		return nil, err
	}
	t.set(h)
	return h, nil
}

// obtain tries every source in order and returns the first token found.
// A configured login that fails is noted and the next source is tried,
// unless the server itself is unavailable.
func (t *tokenManager) obtain(ctx context.Context) (*heldToken, error) {
	cfg, getenv := &t.o.cfg.cfg, t.o.cfg.getenv
	var tried []TokenAttempt
	static := func(source, value string) (*heldToken, error) {
		return t.lookup(ctx, &heldToken{value: value, source: source})
	}
	if cfg.Token != "" {
		return static(SourceConfig, cfg.Token)
	}
	tried = append(tried, TokenAttempt{SourceConfig, "not set"})
	for _, name := range []string{SourceBaoToken, SourceVaultToken} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return static(name, v)
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
			return static(name, v)
		}
	}
	for _, src := range []string{SourceAppRole, SourceJWT, SourceTokenCommand} {
		if !t.configured(src) {
			tried = append(tried, TokenAttempt{src, "not configured"})
			continue
		}
		h, err := t.login(ctx, src)
		if err == nil {
			return h, nil
		}
		var ue *UnavailableError
		if errors.As(err, &ue) {
			return nil, err
		}
		var se *TokenSourceError
		reason := err.Error()
		if errors.As(err, &se) {
			reason = "login failed: " + se.Reason
		}
		tried = append(tried, TokenAttempt{src, reason})
	}
	return nil, &NoTokenError{Tried: tried}
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

// lookup asks auth/token/lookup-self about h once, for its TTL,
// renewability and policies. A refused lookup is not fatal: the token may
// still sign (a policy may omit lookup-self), and if it cannot, the sign's
// 403 says so.
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
		h.ttl, h.renewable, h.policies = a.ttl, a.renewable, a.policies
		h.asked = a.creationTTL
		if h.asked <= 0 {
			h.asked = a.ttl
		}
		t.o.log.Info("openbao: using token", "source", h.source, "ttl", h.ttl, "renewable", h.renewable, "policies", h.policies)
	case resp.status >= 500:
		return nil, statusError(resp, errorMessage(resp.body))
	default:
		t.o.log.Warn("openbao: token lookup refused; its TTL and policies are unknown", "source", h.source, "status", resp.status)
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
