package agentproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
)

// target is who a certificate is for and why.
type target struct {
	route     *catalog.Route
	principal string
	user      string // remote user, when hinted
	host      string // hinted host name
	// hosts are the names the policy sees: the hinted host, or those the
	// pins, known_hosts or a verified host certificate give for the key.
	hosts   []string
	hostKey ssh.PublicKey
	source  string        // "hint", "host-key" or "sign-command"
	maxTTL  time.Duration // a caller's cap on the lifetime (sign --ttl)
	// decided is the policy decision already made for this target (the
	// hint's, so one login asks a confirm rule once); obtain sets it.
	decided   *AuthDecision
	bound     bool
	forwarded bool
	callers   []Process
	connID    string
	caller    map[string]any
}

func (t *target) fields() map[string]any {
	f := map[string]any{
		"conn": t.connID, "route": t.route.Name, "mount": t.route.Mount, "role": t.route.Role,
		"principals": []string{t.principal}, "principal": t.principal, "source": t.source,
		"forwarded": t.forwarded, "bound": t.bound, "caller": t.caller,
	}
	if t.user != "" {
		f["user"] = t.user
	}
	if t.host != "" {
		f["host"] = t.host
	}
	if t.hostKey != nil {
		f["host_key"] = signer.KeyFingerprint(t.hostKey)
	}
	if t.host == "" && len(t.hosts) > 0 {
		f["hosts"] = t.hosts
	}
	return f
}

// PolicyDeniedError is an issuance the policy refused.
type PolicyDeniedError struct{ Decision AuthDecision }

func (e *PolicyDeniedError) Error() string {
	msg := "policy denied"
	if e.Decision.Rule != "" {
		msg += " by " + e.Decision.Rule
	}
	if e.Decision.Reason != "" {
		msg += ": " + e.Decision.Reason
	}
	return msg
}

func (s *Server) authorize(ctx context.Context, t *target) AuthDecision {
	if s.cfg.Authorize == nil {
		return AuthDecision{Allow: true, Rule: "no policy file (catalog only)"}
	}
	return s.cfg.Authorize(ctx, AuthRequest{
		Subject: s.cfg.LocalUser, Principal: t.principal, User: t.user, Host: t.host, Hosts: t.hosts,
		Route: t.route.Name, Callers: t.callers, Forwarded: t.forwarded, Bound: t.bound,
	})
}

// obtain returns a certificate for t: the policy decides, then the cache
// returns the current certificate or issues one (one issuance for any
// number of concurrent askers). Issuance is recorded before the
// certificate is used; if the record cannot be made durable the
// certificate is discarded.
func (s *Server) obtain(ctx context.Context, t *target) (*signer.Entry, error) {
	if err := s.decide(ctx, t); err != nil {
		return nil, err
	}
	ttl := ttlFor(t)
	key := signer.CacheKey{Route: t.route.Name, Principal: t.principal}
	return s.cache.Get(ctx, key, func(ctx context.Context, key signer.CacheKey, eph *signer.EphemeralKey) (*signer.Issued, error) {
		return s.issue(ctx, t, ttl, eph)
	})
}

// decide asks the policy for t unless a decision was already made (the
// hint's), and records a denial as cert.issue_failed with the rule's
// reasons; the error is then a *PolicyDeniedError.
func (s *Server) decide(ctx context.Context, t *target) error {
	if t.decided == nil {
		d := s.authorize(ctx, t)
		t.decided = &d
	}
	dec := *t.decided
	if dec.Allow {
		return nil
	}
	err := &PolicyDeniedError{Decision: dec}
	f := t.fields()
	dec.addTo(f)
	f["error"] = err.Error()
	s.stats.IssueFailed.Add(1)
	_ = s.record(ctx, evIssueFailed, f)
	return err
}

// ttlFor is the route's lifetime capped by the decision and the caller.
func ttlFor(t *target) time.Duration {
	ttl := t.route.Lifetime()
	for _, limit := range []time.Duration{t.decided.MaxTTL, t.maxTTL} {
		if limit > 0 && limit < ttl {
			ttl = limit
		}
	}
	return ttl
}

// issue asks the issuer for a certificate of eph for t and records the
// issuance (or its failure) before anyone may use it; if the record
// cannot be made durable the certificate is discarded.
func (s *Server) issue(ctx context.Context, t *target, ttl time.Duration, eph *signer.EphemeralKey) (*signer.Issued, error) {
	req := signer.Request{
		PublicKey:     eph.PublicKey(),
		Principals:    []string{t.principal},
		TTL:           ttl,
		Extensions:    t.route.CertExtensions(),
		Mount:         t.route.Mount,
		Role:          t.route.Role,
		RouteName:     t.route.Name,
		CorrelationID: t.connID,
		AuditHead:     s.auditHead(),
	}
	if s.cfg.Issuer.Kind() == "local" {
		// OpenBao refuses key ids unless the role allows them.
		req.KeyID = fmt.Sprintf("warden:%s:%s:%s", s.cfg.LocalUser, t.route.Name, t.principal)
	}
	start := s.cfg.Now()
	iss, err := s.cfg.Issuer.Issue(ctx, req)
	f := t.fields()
	if t.decided != nil {
		t.decided.addTo(f)
	}
	f["ttl"] = ttl.String()
	f["issuer"] = s.cfg.Issuer.Kind()
	took := s.cfg.Now().Sub(start)
	s.latency.observe(took)
	f["latency_us"] = took.Microseconds()
	if err != nil {
		s.stats.IssueFailed.Add(1)
		f["error"] = err.Error()
		_ = s.record(context.WithoutCancel(ctx), evIssueFailed, f)
		return nil, err
	}
	c := iss.Cert
	f["serial"] = fmt.Sprintf("%x", c.Serial)
	f["serial_dec"] = strconv.FormatUint(c.Serial, 10)
	f["key_id"] = c.KeyId
	f["key_fingerprint"] = signer.KeyFingerprint(c)
	f["valid_after"] = time.Unix(int64(c.ValidAfter), 0).UTC().Format(time.RFC3339)
	f["valid_before"] = time.Unix(int64(c.ValidBefore), 0).UTC().Format(time.RFC3339)
	f["ca_fingerprint"] = iss.CAFingerprint
	if iss.RequestID != "" {
		f["request_id"] = iss.RequestID
	}
	if err := s.record(context.WithoutCancel(ctx), evCertIssued, f); err != nil {
		s.stats.IssueFailed.Add(1)
		return nil, fmt.Errorf("audit log unavailable, certificate discarded: %w", err)
	}
	s.stats.Issued.Add(1)
	return iss, nil
}

// resolve finds this connection's target: the hint for the ssh process
// at the other end, checked against the bound host key; or, without a
// hint, the route that pins or knows the bound host key (a host
// certificate only when verified in full), with the names that proof
// gives for the policy. all is true when the connection has neither hint
// nor bind: it then sees the certificates already issued. refused is set
// when a route's check said no (a principal, a pin, a forged or expired
// host certificate), as opposed to a server that is not warden's.
func (c *conn) resolve() (t *target, all bool, why string, refused bool) {
	s := c.s
	cat := s.cfg.Catalog()
	var last *sessionBind
	if len(c.binds) > 0 {
		last = &c.binds[len(c.binds)-1]
	}
	forwarded := c.forwarded()
	t = &target{bound: last != nil, forwarded: forwarded, callers: c.peer.Chain, connID: c.id, caller: c.caller()}
	if last != nil {
		if last.Forwarding {
			return nil, false, "connection is bound for agent forwarding only", false
		}
		t.hostKey = last.HostKey
	}
	// A forwarded connection carries another host's login: the local ssh
	// process's hint names the first hop, not this target.
	if !forwarded {
		if c.peer.Pid > 1 && c.peer.start != 0 {
			if h := s.hints.get(c.peer.Pid, c.peer.start, s.cfg.Now()); h != nil {
				if h.refused != "" {
					return nil, false, "refused at hint time: " + h.refused, false // recorded then
				}
				r := cat.RouteForHost(h.Host)
				if r == nil {
					return nil, false, "no route for host " + h.Host, false
				}
				p, err := r.PrincipalFor(h.User)
				if err != nil {
					return nil, false, err.Error(), true
				}
				t.user, t.host, t.route = h.User, h.Host, r
				if last != nil && (len(r.HostKeys) > 0 || len(r.HostCA) > 0) {
					if err := r.CheckHostKey(last.HostKey, h.Host, s.cfg.Now()); err != nil {
						return t, false, fmt.Sprintf("host key %s of %s: %v", signer.KeyFingerprint(last.HostKey), h.Host, err), true
					}
				}
				t.principal, t.source = p, "hint"
				t.hosts = []string{h.Host}
				t.decided = h.decided
				return t, false, "", false
			}
		}
	}
	if last == nil {
		return nil, true, "", false
	}
	var kh *catalog.KnownHosts
	if s.cfg.KnownHosts != nil {
		kh = s.cfg.KnownHosts()
	}
	m, err := cat.MatchHostKey(last.HostKey, kh, "", s.cfg.Now())
	if err != nil {
		return nil, false, err.Error(), !errors.Is(err, catalog.ErrNoHostKeyRoute)
	}
	t.route, t.hosts = m.Route, m.Names
	p, ok := m.Route.SolePrincipal()
	if !ok {
		return t, false, fmt.Sprintf("route %s allows several users and ssh sent no hint; add the block from `warden-agent ssh-config` to ~/.ssh/config", m.Route.Name), true
	}
	t.principal, t.source = p, "host-key"
	return t, false, "", false
}

// refusedTarget records a target a route's check refused, and logs it at
// info: a pinned host key that does not match is a reason to look, and
// the user only sees "Permission denied".
func (c *conn) refusedTarget(t *target, why string) {
	c.s.log.Info("no certificate: target refused", "conn", c.id, "why", why)
	if !c.mayRecord(evTargetRefused) {
		return
	}
	f := map[string]any{"conn": c.id, "reason": why, "caller": c.caller(), "forwarded": c.forwarded()}
	if t != nil {
		if t.route != nil {
			f["route"] = t.route.Name
		}
		if t.user != "" {
			f["user"] = t.user
		}
		if t.host != "" {
			f["host"] = t.host
		}
	}
	if last, _, fp := c.lastBind(); last != nil {
		f["host_key"] = fp
	}
	_ = c.s.record(context.Background(), evTargetRefused, f)
}

// wardenEntries returns the certificates to list on this connection. A
// tainted connection gets none; an unbound one only those of routes that
// let clients without session-bind sign (require_bind: false), the only
// ones it could use.
func (c *conn) wardenEntries(ctx context.Context) []*signer.Entry {
	if c.trust() == trustTainted {
		c.s.log.Debug("no certificate for a tainted connection", "conn", c.id, "why", c.taint)
		return nil
	}
	t, all, why, refused := c.resolve()
	if all {
		return c.bindFreeOnly(c.s.cache.Valid())
	}
	if refused {
		c.refusedTarget(t, why)
		return nil
	}
	if why != "" {
		c.s.log.Debug("no certificate for this connection", "conn", c.id, "why", why)
		return nil
	}
	c.target = t
	if !t.bound {
		// Without session-bind the target is not proven, so nothing new is
		// issued; a certificate the hint already obtained may be listed.
		if e := c.s.cache.Current(signer.CacheKey{Route: t.route.Name, Principal: t.principal}); e != nil {
			return c.bindFreeOnly([]*signer.Entry{e})
		}
		return nil
	}
	e, err := c.s.obtain(ctx, t)
	if err != nil {
		c.s.log.Warn("no certificate listed", "conn", c.id, "route", t.route.Name, "principal", t.principal, "err", err)
		return nil
	}
	return []*signer.Entry{e}
}

// bindFreeOnly keeps the certificates of require_bind: false routes: a
// connection without session-bind cannot sign with any other, and
// paramiko and x/crypto clients try just the first key an agent offers.
func (c *conn) bindFreeOnly(entries []*signer.Entry) []*signer.Entry {
	cat := c.s.cfg.Catalog()
	return slices.DeleteFunc(entries, func(e *signer.Entry) bool {
		r := cat.RouteByName(e.Key.Route)
		return r == nil || r.BindRequired()
	})
}

// signWarden applies the sign-time checks to a warden certificate and
// signs: the data must be a userauth request for this certificate, in the
// session the connection is bound to, for a user the certificate allows;
// the use is recorded durably before the signature is made.
func (c *conn) signWarden(e *signer.Entry, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	s := c.s
	blob := e.Blob
	u := signUse{conn: c, e: e}
	u.serial, u.serialDec = c.serials(e)
	last, lastBlob, lastFP := c.lastBind()
	u.bound = last != nil
	ctx := s.signContext()
	deny := func(reason string) (*ssh.Signature, error) {
		s.stats.Denied.Add(1)
		f := u.fields()
		f.String("reason", reason)
		_ = s.recordFields(ctx, evSignDenied, f)
		return nil, fmt.Errorf("signature denied: %s", reason)
	}
	if s.isLocked() {
		return deny("agent is locked")
	}
	class := c.trust()
	if class == trustTainted {
		return deny("connection is tainted: " + c.taint)
	}
	ua, err := parseUserauth(data)
	if err != nil {
		return deny("only SSH logins may be signed with a warden certificate (" + err.Error() + ")")
	}
	u.ua = ua
	u.sidHash = c.sessionHash(ua.SessionID)
	if !bytes.Equal(ua.PublicKey, blob) {
		return deny("the login request names another key")
	}
	if ua.Service != serviceConnection {
		return deny(fmt.Sprintf("the login request is for service %q, not %q", ua.Service, serviceConnection))
	}
	if !algorithmFits(ua.Algorithm, e.Cert) {
		return deny(fmt.Sprintf("the login request names algorithm %q for a %s certificate", ua.Algorithm, e.Cert.Key.Type()))
	}
	if t := c.target; t != nil && t.route.Name == e.Key.Route && t.host != "" {
		u.host = t.host
	}
	route := s.cfg.Catalog().RouteByName(e.Key.Route)
	if route == nil {
		return deny("route " + e.Key.Route + " is no longer in the catalog")
	}
	if last != nil {
		u.hostKey = lastFP
		switch {
		case last.Forwarding:
			return deny("connection is bound for agent forwarding, not for a login")
		case class == trustForwarded && ua.Method != methodHostbound:
			// Only the hostbound method names the host in the signed data,
			// so only it stops a far host from using the signature on
			// another host.
			return deny("a forwarded agent signs only publickey-hostbound-v00@openssh.com logins")
		case !bytes.Equal(ua.SessionID, last.SessionID):
			return deny("session id does not match the bound session")
		// The raw blob equal to the bound key's wire form is the common
		// case; otherwise compare the re-marshalled key, as before.
		case ua.HostKey != nil && !bytes.Equal(ua.HostKeyBlob, lastBlob) && !bytes.Equal(ua.HostKey.Marshal(), lastBlob):
			return deny("host key in the request differs from the bound host key")
		case !c.listed[string(blob)]:
			return deny("certificate was not offered on this connection")
		}
	} else {
		if class != trustUnbound {
			return deny("connection is " + class.String())
		}
		if route.BindRequired() {
			return deny(fmt.Sprintf("client sent no session-bind@openssh.com and route %s requires it (require_bind: false allows tunnel programs that cannot bind)", route.Name))
		}
		t := &target{route: route, principal: e.Key.Principal, user: ua.User, callers: c.peer.Chain, connID: c.id, caller: c.caller()}
		// The policy (which may ask the user) gets the whole deadline.
		actx, cancel := context.WithTimeout(context.Background(), s.cfg.ListDeadline)
		dec := s.authorize(actx, t)
		cancel()
		if !dec.Allow {
			return deny((&PolicyDeniedError{Decision: dec}).Error())
		}
	}
	if route.Principal != "" {
		if !route.AllowsUser(ua.User) {
			return deny(fmt.Sprintf("route %s does not allow remote user %s", route.Name, ua.User))
		}
	} else if !slices.Contains(e.Cert.ValidPrincipals, ua.User) {
		return deny(fmt.Sprintf("user %s is not a principal of the certificate (%v)", ua.User, e.Cert.ValidPrincipals))
	}
	used := u.fields()
	used.String("result", "signed")
	if err := s.recordFields(ctx, evCertUsed, used); err != nil {
		return deny("audit log unavailable")
	}
	sig, err := signWithFlags(e.Signer, data, flags)
	if err != nil {
		return nil, err
	}
	s.stats.Used.Add(1)
	return sig, nil
}

// serviceConnection is the only service a login is for (RFC 4252).
const serviceConnection = "ssh-connection"

// algorithmFits reports whether alg is a signature algorithm of cert: its
// own type, or for an RSA certificate one of the rsa-sha2 variants.
func algorithmFits(alg string, cert *ssh.Certificate) bool {
	if alg == cert.Type() {
		return true
	}
	if cert.Key.Type() == ssh.KeyAlgoRSA {
		return alg == ssh.CertAlgoRSASHA256v01 || alg == ssh.CertAlgoRSASHA512v01
	}
	return false
}

// signUse is what the cert.used and sign.denied records of one signature
// say, gathered as the checks go.
type signUse struct {
	conn              *conn
	e                 *signer.Entry
	serial, serialDec string
	bound             bool
	ua                *userauthRequest // nil until parsed
	sidHash           string
	host, hostKey     string
}

// fields are what the cert.used and sign.denied records of a signature
// share, built without maps (one record per signature).
func (u *signUse) fields() *audit.Fields {
	f := audit.NewFields(768)
	f.String("conn", u.conn.id)
	f.String("route", u.e.Key.Route)
	f.String("principal", u.e.Key.Principal)
	f.String("serial", u.serial)
	f.String("serial_dec", u.serialDec)
	f.String("key_fingerprint", u.e.Fingerprint)
	f.Object("caller", u.conn.callerObject())
	f.Bool("bound", u.bound)
	if u.ua != nil {
		f.String("user", u.ua.User)
		f.Bool("hostbound", u.ua.Method == methodHostbound)
		f.String("session_id_hash", u.sidHash)
	}
	if u.host != "" {
		f.String("host", u.host)
	}
	if u.hostKey != "" {
		f.String("host_key", u.hostKey)
	}
	return f
}

// signWithFlags honours the rsa-sha2 flags of PROTOCOL.agent §4.5.1 for
// RSA keys; other key types have one signature algorithm.
func signWithFlags(signer ssh.Signer, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	alg := ""
	switch {
	case flags&agent.SignatureFlagRsaSha512 != 0:
		alg = ssh.KeyAlgoRSASHA512
	case flags&agent.SignatureFlagRsaSha256 != 0:
		alg = ssh.KeyAlgoRSASHA256
	}
	pub := signer.PublicKey()
	if cert, ok := pub.(*ssh.Certificate); ok {
		pub = cert.Key
	}
	if as, ok := signer.(ssh.AlgorithmSigner); ok && alg != "" && pub.Type() == ssh.KeyAlgoRSA {
		return as.SignWithAlgorithm(rand.Reader, data, alg)
	}
	return signer.Sign(rand.Reader, data)
}

// Limits on hint fields: ssh's own limits are smaller (user names,
// NI_MAXHOST); these only keep a hostile hint from filling memory.
const (
	maxHintUser = 256
	maxHintHost = 1025
)

// hint records what an ssh process is about to connect to and issues its
// certificate ahead, so that a refusal reaches the terminal through the
// hint command's stderr.
func (c *conn) hint(contents []byte) ([]byte, error) {
	s := c.s
	var req HintRequest
	if err := json.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("hint: %w", err)
	}
	if req.SSHPid <= 1 || req.User == "" || req.Host == "" || len(req.User) > maxHintUser || len(req.Host) > maxHintHost || req.Port < 0 || req.Port > 65535 {
		return jsonReply(HintReply{Error: "hint needs --user and --host and an ssh process (run it from ssh's Match exec, see `warden-agent ssh-config`)"})
	}
	if c.hints++; c.hints > hintsPerConn {
		return nil, fmt.Errorf("more than %d hints on one connection", hintsPerConn)
	}
	if ok, _ := s.hintRate.Allow(time.Now()); !ok {
		return jsonReply(HintReply{Error: "too many hints at once; the agent is refusing hints for a moment"})
	}
	// A process speaks only for its own ssh: the pid must be the caller
	// or one of its ancestors (ssh runs Match exec through a shell). This
	// also keeps the reply from telling live pids from dead ones.
	if !c.isSelfOrDescendant(req.SSHPid) {
		return jsonReply(HintReply{Error: fmt.Sprintf("pid %d is not this process or one of its parents: a hint speaks only for the ssh that runs it (see `warden-agent ssh-config`)", req.SSHPid)})
	}
	start, err := startTime(s.cfg.ProcRoot, req.SSHPid)
	if err != nil {
		return jsonReply(HintReply{Error: fmt.Sprintf("no process with pid %d", req.SSHPid)})
	}
	h := &hint{HintRequest: req, id: s.newID(), start: start, at: s.cfg.Now()}
	if old := s.hints.get(req.SSHPid, start, h.at); old != nil && old.HintRequest != req {
		// A live hint is never replaced: ssh evaluates its config once per
		// connection, so a second, different hint for the same process is
		// not ssh's.
		return jsonReply(HintReply{Error: fmt.Sprintf("ssh process %d already has a hint for %s@%s; a hint is never replaced", req.SSHPid, old.User, old.Host)})
	}
	k := hintKey{req.User, req.Host, req.Port}
	// ssh -G and -O never log in: nothing is issued for them, and they
	// neither use nor end a memo (their hint is recorded, as ever).
	noLogin := isNoLogin(cmdline(s.cfg.ProcRoot, req.SSHPid))
	if !noLogin {
		if reply, ok := c.hintFromMemory(k, h); ok {
			return jsonReply(reply)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ListDeadline)
	defer cancel()
	// Best effort, as upstream.used: a hint is not a signature (each of
	// those waits for its own durable cert.used), and an issuance below
	// waits for its cert.issued record, which makes this one durable too.
	answered := 0
	if !noLogin {
		answered = s.hints.forget(k)
	}
	if c.mayRecord(evHint) {
		f := c.hintFields(h)
		if answered > 0 {
			f.Int("answered_from_memory", int64(answered))
		}
		s.recordLater(evHint, f)
	}

	if s.isLocked() {
		h.refused = "agent is locked"
		s.hints.put(h)
		return jsonReply(HintReply{Error: "the agent is locked; unlock it with ssh-add -X"})
	}
	r := s.cfg.Catalog().RouteForHost(req.Host)
	if r == nil {
		s.hints.put(h)
		return jsonReply(HintReply{OK: true, Note: "no route for " + req.Host + ": only your own keys are offered"})
	}
	p, err := r.PrincipalFor(req.User)
	if err != nil {
		h.refused = err.Error()
		s.hints.put(h)
		c.s.log.Info("no certificate: target refused", "conn", h.id, "why", h.refused)
		if c.mayRecord(evTargetRefused) {
			_ = s.record(ctx, evTargetRefused, map[string]any{"conn": h.id, "route": r.Name, "user": req.User, "host": req.Host,
				"reason": h.refused, "source": "hint", "caller": c.caller()})
		}
		return jsonReply(HintReply{Route: r.Name, Error: err.Error()})
	}
	s.hints.put(h)
	reply := HintReply{OK: true, Route: r.Name, Principal: p}
	if noLogin {
		reply.Note = "ssh -G or -O does not log in: nothing issued"
		return jsonReply(reply)
	}
	t := &target{route: r, principal: p, user: req.User, host: req.Host, source: "hint", bound: true,
		callers: c.chainFrom(req.SSHPid), connID: h.id, caller: c.caller()}
	e, err := s.obtain(ctx, t)
	if t.decided != nil && t.decided.Allow {
		s.hints.update(h, func(x *hint) { x.decided = t.decided })
	}
	if err != nil {
		var pd *PolicyDeniedError
		if errors.As(err, &pd) {
			s.hints.update(h, func(x *hint) { x.refused = err.Error() })
		}
		return jsonReply(HintReply{Route: r.Name, Principal: p, Error: err.Error()})
	}
	reply.Serial = fmt.Sprintf("%x", e.Cert.Serial)
	s.hints.remember(k, &hintMemo{id: h.id, route: r.Name, principal: p, entry: e, at: h.at})
	return jsonReply(reply)
}

// chainFrom is pid and its ancestors, nearest first: the part of the
// caller's chain, read when it connected, from pid up when that chain
// is whole (not cut at maxChain), else read again.
func (c *conn) chainFrom(pid int) []Process {
	chain := c.peer.Chain
	if len(chain) < maxChain {
		for i, p := range chain {
			if p.Pid == pid {
				return chain[i:]
			}
		}
	}
	return processChain(c.s.cfg.ProcRoot, pid)
}

// hintFields are a hint record's fields.
func (c *conn) hintFields(h *hint) *audit.Fields {
	f := audit.NewFields(512)
	f.String("conn", h.id)
	f.Int("ssh_pid", int64(h.SSHPid))
	f.String("user", h.User)
	f.String("host", h.Host)
	f.Int("port", int64(h.Port))
	f.Object("caller", c.callerObject())
	return f
}

// hintFromMemory answers h from the full hint that accepted the same
// target (k) less than hintRepeatWindow ago, while the agent is unlocked,
// the catalog still gives the same route and principal and the
// certificate that hint obtained is still the cache's current one. It
// neither asks the policy nor issues: the hint stored for the ssh process
// carries no decision, so the policy runs when that process connects
// (resolve, obtain). Its record is written then too (hintStore.claim);
// an ssh that rides a ControlMaster and never connects is only counted,
// on the next full hint's record. The caller has checked the pid.
func (c *conn) hintFromMemory(k hintKey, h *hint) (HintReply, bool) {
	s := c.s
	m := s.hints.memo(k, h.at)
	if m == nil || s.isLocked() {
		return HintReply{}, false
	}
	r := s.cfg.Catalog().RouteForHost(k.host)
	if r == nil || r.Name != m.route {
		return HintReply{}, false
	}
	if p, err := r.PrincipalFor(k.user); err != nil || p != m.principal {
		return HintReply{}, false
	}
	e := s.cache.Current(signer.CacheKey{Route: m.route, Principal: m.principal})
	if e == nil || e != m.entry {
		return HintReply{}, false
	}
	if c.mayRecord(evHint) {
		f := c.hintFields(h)
		f.String("answered_by", m.id)
		h.unrecorded = func() { s.recordLater(evHint, f) }
	}
	if !s.hints.answer(k, m.id, h) {
		return HintReply{}, false
	}
	return HintReply{OK: true, Route: m.route, Principal: m.principal, Serial: c.hintSerial(e)}, true
}

// hintSerial is e's serial in hex, as HintReply carries it.
func (c *conn) hintSerial(e *signer.Entry) string {
	hex, _ := c.serials(e)
	return hex
}
