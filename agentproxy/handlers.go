package agentproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/signer"
)

// handleList returns warden's certificate for this connection's target
// first, then the upstream agent's keys as they came. sshd counts every
// offered key against MaxAuthTries, so the certificate leads and an
// expired one is never listed. Both halves run under ListDeadline; a
// failure of either still returns the other. When the upstream agent is
// unreachable and warden has nothing to list, the answer is failure, so
// ssh-add reports an error rather than "The agent has no identities".
func (c *conn) handleList() []byte {
	// The upstream request goes out first and its answer is read after
	// warden's own part, so the two overlap without a goroutine.
	start := time.Now()
	up, upErr := c.upstreamAgent()
	if upErr == nil {
		upErr = up.send([]byte{msgRequestIdentities}, min(up.timeout, c.s.cfg.ListDeadline))
	}
	var ids []identity
	for _, e := range c.wardenEntries(c.s.signContext()) {
		if c.listed == nil {
			c.listed = map[string]bool{}
		}
		c.listed[string(e.Blob)] = true
		ids = append(ids, identity{Blob: e.Blob, Comment: []byte("warden:" + e.Key.Route + ":" + e.Key.Principal)})
	}
	var answer []byte
	n := 0
	if upErr == nil {
		answer, upErr = up.recv(start.Add(min(up.timeout, c.s.cfg.ListDeadline)))
		if upErr == nil {
			n, upErr = up.keepList(answer)
		}
	}
	if upErr != nil && !errors.Is(upErr, errNoUpstream) {
		if c.s.upstreamDown.CompareAndSwap(false, true) {
			c.s.log.Warn("upstream agent unavailable; listing warden certificates only", "conn", c.id, "upstream", c.s.cfg.Upstream, "err", upErr)
		}
		if len(ids) == 0 {
			return replyFailure
		}
	} else if upErr == nil {
		c.s.upstreamDown.Store(false)
	}
	if upErr != nil {
		return identitiesAnswer(ids)
	}
	return prependIdentities(ids, answer, n)
}

// handleSign signs with a warden certificate after the sign-time checks,
// or passes the frame to the upstream agent unchanged.
func (c *conn) handleSign(body []byte) []byte {
	req, err := parseSignRequest(body)
	if err != nil {
		c.refuse(err.Error(), msgSignRequest)
		return replyFailure
	}
	if e := c.s.cache.Lookup(req.Blob); e != nil {
		sig, err := c.signWarden(e, req.Data, agent.SignatureFlags(req.Flags))
		if err != nil {
			return replyFailure
		}
		return appendString([]byte{msgSignResponse}, ssh.Marshal(sig))
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return replyFailure
	}
	reply, err := up.roundTrip(body, up.signTimeout)
	if err != nil {
		c.s.log.Warn("upstream agent did not sign", "conn", c.id, "err", err)
		return replyFailure
	}
	if reply[0] != msgSignResponse {
		return reply
	}
	c.s.stats.UpstreamSigned.Add(1)
	if !c.mayRecord(evUpstreamUsed) {
		return reply
	}
	f := audit.NewFields(512)
	f.String("conn", c.id)
	f.String("key_fingerprint", c.blobFingerprint(req.Blob))
	f.Object("caller", c.callerObject())
	if comment := up.comment(req.Blob); comment != "" {
		f.String("comment", comment)
	}
	if ua, err := parseUserauth(req.Data); err == nil {
		f.String("user", ua.User)
		if ua.HostKey != nil {
			f.String("host_key", signer.KeyFingerprint(ua.HostKey))
		} else if _, _, fp := c.lastBind(); fp != "" {
			f.String("host_key", fp)
		}
	}
	// Upstream keys are the user's own; their use is recorded best effort
	// and off the reply path, so neither a broken audit log nor its fsync
	// stands between users and their own keys.
	c.s.recordLater(evUpstreamUsed, f)
	return reply
}

// blobFingerprint is the SHA256 fingerprint OpenSSH shows for a key blob
// (for a certificate, its key's), remembered per connection. A blob warden
// cannot parse (a newer key type) is fingerprinted as it is, which is what
// OpenSSH shows for a plain key.
func (c *conn) blobFingerprint(blob []byte) string {
	if fp, ok := c.audit.fingerprints[string(blob)]; ok {
		return fp
	}
	var fp string
	if key, err := ssh.ParsePublicKey(blob); err == nil {
		fp = signer.KeyFingerprint(key)
	} else {
		fp = rawFingerprint(blob)
	}
	if c.audit.fingerprints == nil || len(c.audit.fingerprints) >= 64 {
		c.audit.fingerprints = map[string]string{}
	}
	c.audit.fingerprints[string(blob)] = fp
	return fp
}

// handleAdd passes a key or PKCS#11 provider to the user's agent byte for
// byte, constraints untouched, and records what it can read of it.
func (c *conn) handleAdd(body []byte) []byte {
	if err := c.permit(actAddKey); err != nil {
		return c.refused(body[0], err)
	}
	timeout := c.s.cfg.UpstreamTimeout
	if body[0] == msgAddSmartcardKey || body[0] == msgAddSmartcardConstraint {
		timeout = c.s.cfg.UpstreamSignTimeout // a token may be slow to load
	}
	reply := c.forward(body, timeout)
	if !isSuccess(reply) || !c.mayRecord(evKeyAdded) {
		return reply
	}
	info := describeAdd(body)
	fields := map[string]any{"conn": c.id, "caller": c.caller()}
	if info.Provider != "" {
		fields["provider"] = info.Provider
	} else {
		fields["key_fingerprint"] = info.Fingerprint
		fields["comment"] = info.Comment
	}
	if info.LifetimeSecs > 0 {
		fields["lifetime_secs"] = info.LifetimeSecs
	}
	fields["confirm"] = info.Confirm
	if len(info.Constraints) > 0 {
		fields["constraints"] = info.Constraints
	}
	_ = c.s.record(context.Background(), evKeyAdded, fields)
	return reply
}

func isSuccess(reply []byte) bool { return len(reply) == 1 && reply[0] == msgSuccess }

// handleRemove drops a warden certificate from the cache, or passes the
// removal of another key upstream.
func (c *conn) handleRemove(body []byte) []byte {
	if err := c.permit(actRemoveKey); err != nil {
		return c.refused(body[0], err)
	}
	blob, rest, ok := parseString(body[1:])
	if !ok || len(rest) != 0 {
		c.refuse("malformed remove request", body[0])
		return replyFailure
	}
	fields := map[string]any{"conn": c.id, "key_fingerprint": c.blobFingerprint(blob), "caller": c.caller()}
	if c.s.cache.Lookup(blob) != nil {
		c.s.cache.Drop(func(e *signer.Entry) bool { return bytes.Equal(e.Blob, blob) })
		fields["warden"] = true
		_ = c.s.record(context.Background(), evKeyRemoved, fields)
		return replySuccess
	}
	reply := c.forward(body, c.s.cfg.UpstreamTimeout)
	if isSuccess(reply) && c.mayRecord(evKeyRemoved) {
		_ = c.s.record(context.Background(), evKeyRemoved, fields)
	}
	return reply
}

// handleRemoveAll drops warden's cached certificates and passes the
// request upstream (ssh-add -D).
func (c *conn) handleRemoveAll(body []byte) []byte {
	if err := c.permit(actRemoveKey); err != nil {
		return c.refused(body[0], err)
	}
	dropped := c.s.cache.Drop(func(*signer.Entry) bool { return true })
	reply := replySuccess
	if c.s.cfg.Upstream != "" {
		reply = c.forward(body, c.s.cfg.UpstreamTimeout)
	}
	_ = c.s.record(context.Background(), evKeyRemoved, map[string]any{"conn": c.id, "all": true, "warden_dropped": dropped, "caller": c.caller()})
	return reply
}

// handleRemoveSmartcard passes the removal of a PKCS#11 provider upstream.
func (c *conn) handleRemoveSmartcard(body []byte) []byte {
	if err := c.permit(actRemoveKey); err != nil {
		return c.refused(body[0], err)
	}
	reply := c.forward(body, c.s.cfg.UpstreamTimeout)
	if isSuccess(reply) && c.mayRecord(evKeyRemoved) {
		fields := map[string]any{"conn": c.id, "caller": c.caller()}
		if p, _, ok := parseString(body[1:]); ok {
			fields["provider"] = string(p)
		}
		_ = c.s.record(context.Background(), evKeyRemoved, fields)
	}
	return reply
}

// handleLock locks the upstream agent and hides warden's certificates
// until Unlock.
func (c *conn) handleLock(body []byte) []byte {
	if err := c.permit(actLock); err != nil {
		return c.refused(body[0], err)
	}
	pass, rest, ok := parseString(body[1:])
	if !ok || len(rest) != 0 {
		return replyFailure
	}
	s := c.s
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.locked {
		return replyFailure
	}
	if s.cfg.Upstream != "" {
		up, err := c.upstreamAgent()
		if err != nil {
			c.refuse("upstream agent unavailable, not locking: "+err.Error(), body[0])
			return replyFailure
		}
		if err := statusOf(up.call(body)); err != nil {
			c.refuse("upstream agent refused to lock", body[0])
			return replyFailure
		}
	}
	s.locked, s.lockHash = true, lockHash(s.lockSalt, pass)
	_ = s.record(context.Background(), evAgentLocked, map[string]any{"conn": c.id, "caller": c.caller()})
	return replySuccess
}

// handleUnlock checks the passphrase and shows warden's certificates
// again. Attempts are taken one at a time across all connections, and a
// wrong passphrase is answered after a delay that grows with each failure
// (0.1 s more each time, up to 10 s), as ssh-agent does, so guesses in
// parallel are no faster than in a row. A correct passphrase always clears
// warden's own lock, whatever the upstream agent answers: it may have
// been unlocked behind warden's back.
func (c *conn) handleUnlock(body []byte) []byte {
	if err := c.permit(actUnlock); err != nil {
		return c.refused(body[0], err)
	}
	pass, rest, ok := parseString(body[1:])
	if !ok || len(rest) != 0 {
		return replyFailure
	}
	s := c.s
	s.unlockMu.Lock()
	defer s.unlockMu.Unlock()
	s.lockMu.Lock()
	if !s.locked {
		s.lockMu.Unlock()
		return replyFailure
	}
	if subtle.ConstantTimeCompare(lockHash(s.lockSalt, pass), s.lockHash) != 1 {
		s.lockFails = min(s.lockFails+1, 100)
		delay := time.Duration(s.lockFails) * 100 * time.Millisecond
		s.lockMu.Unlock()
		c.refuse("wrong passphrase", body[0])
		time.Sleep(delay)
		return replyFailure
	}
	s.locked, s.lockHash, s.lockFails = false, nil, 0
	s.lockMu.Unlock()
	if s.cfg.Upstream != "" {
		if up, err := c.upstreamAgent(); err == nil {
			if err := statusOf(up.call(body)); err != nil {
				s.log.Warn("upstream agent did not take the unlock (already unlocked?); warden is unlocked", "conn", c.id)
			}
		}
	}
	_ = s.record(context.Background(), evAgentUnlocked, map[string]any{"conn": c.id, "caller": c.caller()})
	return replySuccess
}

// lockHash is the salted hash of a lock passphrase, kept instead of the
// passphrase.
func lockHash(salt, pass []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(pass)
	return h.Sum(nil)
}

func newLockSalt() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// handleExtension answers session-bind, query and warden's own
// extensions, and passes any other extension upstream unchanged.
func (c *conn) handleExtension(body []byte) []byte {
	name, contents, err := parseExtension(body)
	if err != nil {
		c.refuse(err.Error(), msgExtension)
		return replyFailure
	}
	var handler func([]byte) ([]byte, error)
	act := actExtension
	switch name {
	case extSessionBind:
		return c.sessionBind(contents, body)
	case extQuery:
		return c.queryReply()
	case ExtHint:
		handler, act = c.hint, actHint
	case ExtStatus:
		handler = func([]byte) ([]byte, error) { return c.status() }
	case ExtSignCert:
		handler = c.signCert
	default:
		if strings.HasSuffix(name, wardenExtSuffix) {
			return replyFailure
		}
		return c.forward(body, c.s.cfg.UpstreamTimeout)
	}
	if err := c.permit(act); err != nil {
		return c.refused(msgExtension, fmt.Errorf("%s: %w", name, err))
	}
	reply, err := handler(contents)
	if err != nil {
		c.refuse(name+": "+err.Error(), msgExtension)
		return replyFailure
	}
	return reply
}

const wardenExtSuffix = "@ops-warden.netkingdom"

// refused answers a request the trust model refuses: a warn log line, a
// request.refused record (rate-limited: a peer cannot fill the log), and
// failure.
func (c *conn) refused(msgType byte, err error) []byte {
	c.refuse(err.Error(), msgType)
	if c.mayRecord(evRequestRefused) {
		_ = c.s.record(context.Background(), evRequestRefused, map[string]any{
			"conn": c.id, "type": int(msgType), "reason": err.Error(), "trust": c.trust().String(), "caller": c.caller(),
		})
	}
	return replyFailure
}

// queryReply answers the "query" extension as OpenSSH 10.3 does:
// SSH_AGENT_EXTENSION_RESPONSE, the string "query", then one string per
// extension, warden's and the upstream agent's merged.
func (c *conn) queryReply() []byte {
	names := []string{extQuery, extSessionBind, ExtHint, ExtStatus, ExtSignCert}
	for _, n := range c.upstreamExtensions() {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	out := appendString([]byte{msgExtensionResponse}, []byte(extQuery))
	for _, n := range names {
		out = appendString(out, []byte(n))
	}
	return out
}

// upstreamExtensions returns the extensions the upstream agent lists in
// its "query" answer. They are the agent program's, not a connection's,
// so they are asked at most once per upstreamExtsTTL for all connections,
// on a connection of their own that is closed at once: a query does not
// leave its client connection holding an upstream one. An agent without
// "query" (OpenSSH before 10.3) has none to add.
func (c *conn) upstreamExtensions() []string {
	s := c.s
	s.upExtsMu.Lock()
	defer s.upExtsMu.Unlock()
	if !s.upExtsAt.IsZero() && time.Since(s.upExtsAt) < upstreamExtsTTL {
		return s.upExts
	}
	if s.cfg.Upstream == "" {
		return nil
	}
	up, err := dialUpstream(s.cfg.Upstream, s.cfg.UpstreamTimeout)
	if err != nil {
		return nil
	}
	defer up.close()
	reply, err := up.Extension(extQuery, nil)
	if err != nil {
		return nil
	}
	s.upExts, s.upExtsAt = parseQueryReply(reply), time.Now()
	return s.upExts
}

// upstreamExtsTTL is how long the upstream agent's query answer is kept.
const upstreamExtsTTL = 10 * time.Second

// maxQueryNames bounds the names taken from an upstream query reply.
const maxQueryNames = 64

// parseQueryReply reads a query reply in either form: OpenSSH's
// (EXTENSION_RESPONSE, "query", names…) or the older SUCCESS, names….
func parseQueryReply(reply []byte) []string {
	if len(reply) == 0 {
		return nil
	}
	rest := reply[1:]
	switch reply[0] {
	case msgExtensionResponse:
		first, r, ok := parseString(rest)
		if !ok || string(first) != extQuery {
			return nil
		}
		rest = r
	case msgSuccess:
	default:
		return nil
	}
	var names []string
	for len(rest) > 0 && len(names) < maxQueryNames {
		n, r, ok := parseString(rest)
		if !ok || len(n) == 0 || len(n) > 256 {
			return names
		}
		names = append(names, string(n))
		rest = r
	}
	return names
}

// sessionBind verifies a bind and applies OpenSSH's rules to it. Every
// bind, verified or not, is passed upstream byte for byte so the user's
// agent applies its own rules (it taints itself after a failed one); a
// bind warden cannot verify taints the connection for warden. The client
// is answered as the user's agent answered when warden could not verify,
// so ssh sees what it would without warden in front.
func (c *conn) sessionBind(contents, body []byte) []byte {
	fields := map[string]any{"conn": c.id, "caller": c.caller()}
	if c.loginID != "" {
		fields["login_conn"] = c.loginID
	}
	b, err := parseSessionBind(contents)
	added := false
	if err == nil {
		fields["host_key"] = signer.KeyFingerprint(b.HostKey)
		fields["session_id_hash"] = sessionIDHash(b.SessionID)
		fields["forwarding"] = b.Forwarding
		c.binds, added, err = addBind(c.binds, b)
	}
	if err != nil && c.taint == "" {
		c.taint = err.Error()
	}
	var upReply []byte
	if up, _, uerr := c.upstreamConn(); uerr == nil { // a fresh one was sent the earlier binds
		upReply, _ = up.call(body)
	}
	if added || err != nil {
		c.mu.Lock()
		if len(c.bindMsgs) < 2*maxBinds {
			c.bindMsgs = append(c.bindMsgs, bytes.Clone(body))
		}
		c.mu.Unlock()
	}
	fields["verified"] = err == nil
	fields["trust"] = c.trust().String()
	if err != nil {
		fields["reason"] = err.Error()
	}
	if c.mayRecord(evSessionBind) {
		_ = c.s.record(context.Background(), evSessionBind, fields)
	}
	if err == nil || isSuccess(upReply) {
		return replySuccess
	}
	c.refuse(err.Error(), msgExtension)
	return replyFailure
}

// sessionIDHash identifies a session in the audit log without recording
// the session id itself.
func sessionIDHash(sid []byte) string {
	h := sha256.Sum256(sid)
	return "SHA256:" + hex.EncodeToString(h[:16])
}
