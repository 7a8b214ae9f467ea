package signer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openbao/openbao/api/v2"
	"golang.org/x/crypto/ssh"
)

// maxResponseBody bounds every response body read from OpenBao. The
// largest legitimate answer (a sign response with an RSA-4096 CA) is a few
// KiB; a server or proxy that sends more is broken or hostile.
const maxResponseBody = 1 << 20

// renewCheckEvery is how often the background loop looks at the token.
// Whether it renews is decided by the injected clock (Deps.Now), so tests
// drive renewal through the request path instead of waiting for the tick.
const renewCheckEvery = 15 * time.Second

// Headers sent with every sign request, so OpenBao's audit log (once
// sys/config/auditing/request-headers/<name> is set) can be joined with
// ours.
const (
	HeaderRequest   = "X-Warden-Request"
	HeaderAuditHead = "X-Warden-Audit-Head"
)

// OpenBaoDeps are the OpenBao issuer's injected dependencies. Zero fields
// take the process's: slog.Default-free discard logger, time.Now,
// os.Getenv, os.UserHomeDir.
type OpenBaoDeps struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Getenv reads BAO_*/VAULT_* fallbacks; inject it to keep tests hermetic.
	Getenv func(string) string
	// HomeDir locates ~/.vault-token.
	HomeDir string
	// StateDir holds the trust-on-first-use record of CA keys (CAPinFile);
	// empty keeps it in memory for the life of the process.
	StateDir string
	// HTTPClient, when set, replaces the TLS transport built from the
	// config (tests use the test server's client). Its responses are still
	// bounded and it is never asked to retry.
	HTTPClient *http.Client
}

// HealthState is what sys/health says about a server.
type HealthState string

// Health states.
const (
	HealthActive        HealthState = "active"
	HealthStandby       HealthState = "standby"
	HealthSealed        HealthState = "sealed"
	HealthUninitialized HealthState = "uninitialized"
	HealthUnreachable   HealthState = "unreachable"
)

// TokenInfo describes the token in use, for status. It never holds the
// token itself.
type TokenInfo struct {
	// Source names where the token came from ("BAO_TOKEN", "approle", ...);
	// empty before the first request.
	Source string
	// TTL is the time left; zero for a token that does not expire or is
	// unknown.
	TTL       time.Duration
	Renewable bool
	// ExpiresAt is zero for a token that does not expire or is unknown.
	ExpiresAt time.Time
	// Policies come from lookup-self or the login; nil if unknown.
	Policies []string
	// State is what the last check found; Problem, when set, says what
	// is wrong with the token and how to fix it.
	State   TokenState
	Problem string
	// Relogin: the source can mint a new token (AppRole, JWT, command).
	Relogin bool
	// MaxTTLReached: the last renewal was capped by the token's max TTL.
	MaxTTLReached bool
	// RenewError is the last renewal's failure, empty after a good one.
	RenewError string
	// CheckedAt is when OpenBao last confirmed the token.
	CheckedAt time.Time
}

// OpenBao issues certificates from OpenBao's SSH secrets engine
// (<mount>/sign/<role>) through github.com/openbao/openbao/api/v2.
//
// It is safe for concurrent use. Sign calls are never retried once they
// may have been processed (each retry would mint another certificate):
// the only retries are to another node after an answer that proves
// nothing was signed (see do), and one sign after a 403 with a token
// lookup-self refuses and a fresh one (a 403 mints nothing). A background
// goroutine samples every node's health from the start;
// StartTokenLifecycle starts the one that keeps the token alive; Close
// stops both.
type OpenBao struct {
	cfg     *resolved
	log     *slog.Logger
	now     func() time.Time
	nodes   []*node // one per address, in cfg.addresses order
	tokens  *tokenManager
	pins    *caPins
	serials serialSet

	stop chan struct{}
	done chan struct{}
	// healthDone is closed when the health sampler (healthLoop) ends.
	healthDone chan struct{}
	closeOnce  sync.Once
	startOnce  sync.Once

	// mu guards the fields below and every node's state. It is never held
	// across a network call.
	mu     sync.Mutex
	cur    int                      // index of the node that last answered
	ca     map[string]ssh.PublicKey // CA key per mount
	issues issueRecord
	// sampleDone is closed when the running health sample ends; nil when
	// none runs.
	sampleDone chan struct{}
}

var _ Issuer = (*OpenBao)(nil)

// NewOpenBao checks cfg and builds the issuer. It makes no network call:
// the agent starts even while OpenBao is down, and the first Issue obtains
// a token.
func NewOpenBao(cfg OpenBaoConfig, deps OpenBaoDeps) (*OpenBao, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Getenv == nil {
		deps.Getenv = os.Getenv
	}
	if deps.HomeDir == "" {
		deps.HomeDir, _ = os.UserHomeDir()
	}
	r, err := resolveConfig(cfg, deps.Getenv, deps.HomeDir)
	if err != nil {
		return nil, err
	}
	hc := httpClient(r, deps.HTTPClient)
	o := &OpenBao{
		cfg:  r,
		log:  deps.Logger.With("issuer", "openbao"),
		now:  deps.Now,
		ca:   map[string]ssh.PublicKey{},
		pins: &caPins{pinned: r.pinned, pinnedFrom: r.pinnedFrom},
		stop: make(chan struct{}),
		done: make(chan struct{}),

		healthDone: make(chan struct{}),
	}
	if deps.StateDir != "" && r.pinned == nil {
		o.pins.path = filepath.Join(deps.StateDir, CAPinFile)
	}
	for _, addr := range r.addresses {
		c, err := api.NewClient(&api.Config{
			Address:            addr,
			HttpClient:         hc,
			Timeout:            r.timeout,
			MaxRetries:         0, // signing is not idempotent; see the type's doc
			DisableEnvironment: true,
			// Redirects are judged by do: followed only to a listed node.
			DisableRedirects: true,
		})
		if err != nil {
			return nil, fmt.Errorf("openbao: client for %s: %w", addr, err)
		}
		c.SetMaxRetries(0)
		if r.namespace != "" {
			c.SetNamespace(r.namespace)
		}
		o.nodes = append(o.nodes, &node{addr: addr, client: c})
	}
	o.tokens = newTokenManager(o)
	go o.healthLoop()
	return o, nil
}

// healthLoop samples every node's health on a schedule (failures also
// sample at once), so a sealed, hung or leaderless node is skipped and a
// recovered one used again.
func (o *OpenBao) healthLoop() {
	defer close(o.healthDone)
	h := time.NewTicker(healthEvery)
	defer h.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-h.C:
			o.refreshHealth(context.Background())
		}
	}
}

func httpClient(r *resolved, given *http.Client) *http.Client {
	var base http.RoundTripper
	if given != nil {
		base = given.Transport
		if base == nil {
			base = http.DefaultTransport
		}
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = r.tls
		tr.TLSHandshakeTimeout = r.timeout
		base = tr
	}
	return &http.Client{
		Transport: &boundedTransport{base: base},
		// Redirects (standby → active) are judged by do, which follows
		// them only to a listed node; neither api/v2 nor net/http may.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// StartTokenLifecycle starts the background loop that finds the token at
// once, looks it up every minute, renews it while idle and replaces it when
// revoked (see tokenManager). The agent calls it; one-shot commands such as
// `warden-agent ca` do not, so they never run token_command for nothing.
// Close stops it.
func (o *OpenBao) StartTokenLifecycle() {
	o.startOnce.Do(func() { go o.renewLoop() })
}

// Close stops token renewal. It does not revoke the token: it may be shared
// (BAO_TOKEN, ~/.vault-token).
func (o *OpenBao) Close() error {
	o.startOnce.Do(func() { close(o.done) }) // never started: nothing to wait for
	o.closeOnce.Do(func() { close(o.stop) })
	<-o.done
	<-o.healthDone
	return nil
}

func (o *OpenBao) renewLoop() {
	defer close(o.done)
	o.tokens.run(o.stop)
}

// Kind is "openbao".
func (o *OpenBao) Kind() string { return "openbao" }

// Address is the node that last answered (it changes after a failover).
func (o *OpenBao) Address() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nodes[o.cur].addr
}

// TokenInfo describes the token in use, from the last check.
func (o *OpenBao) TokenInfo() TokenInfo { return o.tokens.info() }

// CheckToken asks OpenBao about the token now (lookup-self, or the token
// sources when there is no usable token) and describes it. status calls
// it, so that what it shows is never older than the question.
func (o *OpenBao) CheckToken(ctx context.Context) TokenInfo {
	_ = o.tokens.Check(ctx)
	return o.tokens.info()
}

// CAPublicKey returns the CA key of the configured mount.
func (o *OpenBao) CAPublicKey(ctx context.Context) (ssh.PublicKey, error) {
	return o.caKey(ctx, o.cfg.mount, false, nil)
}

// Health asks every node's sys/health (no token) now and returns the best
// state found: active, then standby; with no usable node, the error names
// each node's state.
func (o *OpenBao) Health(ctx context.Context) (HealthState, error) {
	o.refreshHealth(ctx)
	return o.bestHealth()
}

// Issue signs req.PublicKey at <mount>/sign/<role> and validates the
// certificate before returning it.
func (o *OpenBao) Issue(ctx context.Context, req Request) (*Issued, error) {
	iss, err := o.issue(ctx, req)
	o.noteIssue(err)
	return iss, err
}

func (o *OpenBao) issue(ctx context.Context, req Request) (*Issued, error) {
	mount := strings.Trim(req.Mount, "/")
	if mount == "" {
		mount = o.cfg.mount
	}
	if req.Role == "" {
		return nil, fmt.Errorf("openbao: route %q names no role: set role in the catalog route", req.RouteName)
	}
	if req.PublicKey == nil {
		return nil, errors.New("openbao: no public key to certify")
	}
	path := mount + "/sign/" + req.Role
	body := map[string]any{
		"public_key":       strings.TrimSpace(string(ssh.MarshalAuthorizedKey(req.PublicKey))),
		"valid_principals": strings.Join(req.Principals, ","),
		"cert_type":        "user",
	}
	if req.TTL > 0 {
		secs := int64((req.TTL + time.Second - 1) / time.Second)
		body["ttl"] = fmt.Sprintf("%ds", secs)
	}
	if req.Extensions != nil {
		body["extensions"] = req.Extensions
	}
	if len(req.CriticalOptions) > 0 {
		body["critical_options"] = req.CriticalOptions
	}
	if req.KeyID != "" {
		body["key_id"] = req.KeyID
	}
	hdr := http.Header{}
	if req.CorrelationID != "" {
		hdr.Set(HeaderRequest, req.CorrelationID)
	}
	if req.AuditHead != "" {
		hdr.Set(HeaderAuditHead, req.AuditHead)
	}
	log := o.log.With("mount", mount, "role", req.Role, "principals", req.Principals, "route", req.RouteName, "request", req.CorrelationID)

	tok, err := o.tokens.get(ctx)
	if err != nil {
		log.Warn("openbao: no token", "err", err)
		return nil, err
	}
	resp, err := o.do(ctx, http.MethodPost, path, body, tok.value, hdr)
	if err == nil && resp.status == http.StatusForbidden {
		// Expired or revoked, or a policy that denies the path: lookup-self
		// tells which. A 403 minted nothing, so one sign with a new token
		// is safe.
		next, retry, rerr := o.tokens.refused(ctx, tok, path)
		switch {
		case rerr != nil:
			log.Warn("openbao: sign refused (403)", "source", tok.source, "err", rerr)
			return nil, rerr
		case retry:
			log.Info("openbao: sign refused (403) with an invalid token; retrying with a new one", "old_source", tok.source, "source", next.source)
			tok = next
			resp, err = o.do(ctx, http.MethodPost, path, body, tok.value, hdr)
		default:
			tok = next // its policies, fresh from lookup-self
		}
	}
	if err == nil && resp.status == http.StatusOK {
		o.tokens.worked(tok)
	}
	if err != nil {
		log.Warn("openbao: sign failed", "err", err)
		return nil, err
	}
	if resp.status != http.StatusOK {
		err := o.signError(resp, mount, req, tok)
		log.Warn("openbao: sign refused", "address", resp.addr, "status", resp.status, "err", err)
		return nil, err
	}
	sr, err := parseSignResponse(resp.body)
	if err != nil {
		err = fmt.Errorf("openbao: sign answer from %s: %w", resp.addr, err)
		log.Warn("openbao: certificate refused", "err", err)
		return nil, err
	}
	ca, err := o.caKey(ctx, mount, false, hdr)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(sr.cert.SignatureKey.Marshal(), ca.Marshal()) {
		// The CA may have been rotated since we cached it: fetch once more.
		if ca, err = o.caKey(ctx, mount, true, hdr); err != nil {
			return nil, err
		}
	}
	err = validate(sr.cert, req, ca, o.now(), o.cfg.maxBackdate)
	if err == nil && !o.serials.add(sr.cert.Serial) {
		err = fmt.Errorf("%w: serial %x was already issued to this agent: a replayed or duplicated certificate", ErrInvalidCertificate, sr.cert.Serial)
	}
	if err != nil {
		err = fmt.Errorf("openbao: certificate from %s (serial %x, request %s): %w", resp.addr, sr.serial, sr.requestID, err)
		log.Warn("openbao: certificate refused", "serial", sr.serial, "request_id", sr.requestID, "err", err)
		return nil, err
	}
	log.Info("openbao: certificate issued", "address", resp.addr, "serial", sr.serial,
		"request_id", sr.requestID, "issuer_id", sr.issuerID, "valid_before", time.Unix(int64(sr.cert.ValidBefore), 0).UTC())
	return &Issued{
		Cert:          sr.cert,
		RequestID:     sr.requestID,
		IssuerID:      sr.issuerID,
		CAFingerprint: ssh.FingerprintSHA256(ca),
	}, nil
}

// signError turns a non-200 sign answer into an error that names the fix.
func (o *OpenBao) signError(resp *rawResponse, mount string, req Request, tok *heldToken) error {
	msg := errorMessage(resp.body)
	switch {
	case resp.status == http.StatusForbidden:
		return &PermissionDeniedError{Address: resp.addr, Path: mount + "/sign/" + req.Role, Policies: tok.policies, Source: tok.source, Message: msg}
	case resp.status == http.StatusBadRequest:
		return &RoleRefusedError{Mount: mount, Role: req.Role, Principals: req.Principals, TTL: req.TTL, Message: msg}
	}
	return statusError(resp, msg)
}

// statusError describes an answer that is neither a success nor a refusal.
func statusError(resp *rawResponse, msg string) error {
	if resp.status == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed") {
		return &UnavailableError{Address: resp.addr, Reason: ReasonSealed, Status: resp.status, Message: msg}
	}
	return &UnavailableError{Address: resp.addr, Reason: ReasonServerError, Status: resp.status, Message: msg}
}

// caKey returns the CA key of mount, from the cache unless refresh is set.
func (o *OpenBao) caKey(ctx context.Context, mount string, refresh bool, hdr http.Header) (ssh.PublicKey, error) {
	if !refresh {
		o.mu.Lock()
		k := o.ca[mount]
		o.mu.Unlock()
		if k != nil {
			return k, nil
		}
	}
	// public_key needs no token and answers plain text, so read it raw
	// rather than through Logical().Read, which expects JSON.
	resp, err := o.do(ctx, http.MethodGet, mount+"/public_key", nil, "", hdr)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		msg := errorMessage(resp.body)
		if resp.status >= 500 {
			return nil, statusError(resp, msg)
		}
		return nil, fmt.Errorf("openbao: reading the CA key at %s/%s/public_key: %d %q; is the SSH engine mounted at %s with a CA (bao write %s/config/ca generate_signing_key=true)?", resp.addr, mount, resp.status, msg, mount, mount)
	}
	k, err := parseCAKey(resp.body)
	if err != nil {
		return nil, fmt.Errorf("openbao: CA key from %s/%s/public_key: %w", resp.addr, mount, err)
	}
	if err := o.pins.check(o.cfg.addresses, resp.addr, o.mountLabel(mount), k, o.log.Warn); err != nil {
		o.log.Error("openbao: CA key refused", "mount", mount, "address", resp.addr, "err", err)
		return nil, err
	}
	o.mu.Lock()
	old := o.ca[mount]
	o.ca[mount] = k
	o.mu.Unlock()
	if old != nil && !bytes.Equal(old.Marshal(), k.Marshal()) {
		o.log.Warn("openbao: CA key changed", "mount", mount, "old", ssh.FingerprintSHA256(old), "new", ssh.FingerprintSHA256(k))
	}
	return k, nil
}

// mountLabel names a mount in the pin record: namespaces may reuse names.
func (o *OpenBao) mountLabel(mount string) string {
	if o.cfg.namespace != "" {
		return strings.Trim(o.cfg.namespace, "/") + "/" + mount
	}
	return mount
}

// rawResponse is a bounded, fully read answer.
type rawResponse struct {
	status   int
	body     []byte
	addr     string
	location string // Location header of a redirect
}

// classify turns a transport error into an UnavailableError that says what
// happened where.
func classify(err error, addr string, timeout time.Duration, setting string) error {
	ue := &UnavailableError{Address: addr, Reason: ReasonUnreachable, Err: err, Timeout: timeout, TimeoutSetting: setting}
	var (
		op       *net.OpError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		ue.Reason = ReasonTimeout
	case errors.Is(err, context.Canceled):
		ue.Reason = ReasonTimeout
	case errors.Is(err, errBodyTooLarge):
		ue.Reason = ReasonBadResponse
	case errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &record), errors.As(err, &alert):
		ue.Reason = ReasonTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		ue.Reason = ReasonRefused
	case errors.As(err, &op):
		ue.Reason = ReasonUnreachable
	}
	return ue
}

var errBodyTooLarge = fmt.Errorf("response body larger than %d bytes", maxResponseBody)

// boundedTransport caps every response body, including the error bodies
// api/v2 buffers on its own.
type boundedTransport struct{ base http.RoundTripper }

func (b *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.base.RoundTrip(req)
	if resp != nil && resp.Body != nil {
		resp.Body = &boundedBody{rc: resp.Body, left: maxResponseBody}
	}
	return resp, err
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Tell a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// errorMessage extracts OpenBao's {"errors":[...]} message, unwrapping the
// "1 error occurred:\n\t* ...\n\n" form of multi-errors.
func errorMessage(body []byte) string {
	var e struct {
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		s := strings.TrimSpace(string(body))
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		if strings.HasPrefix(s, "{") {
			return ""
		}
		return s
	}
	msgs := make([]string, 0, len(e.Errors))
	for _, m := range e.Errors {
		m = strings.TrimSpace(m)
		if rest, ok := strings.CutPrefix(m, "1 error occurred:"); ok {
			m = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "*"))
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}
