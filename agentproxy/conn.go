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
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/signer"
)

// conn is one client connection: its peer, its session binds and its own
// upstream connection. x/crypto's agent server has no per-connection
// context, so each connection is served by its own ExtendedAgent value.
//
// ServeAgent calls the agent methods one at a time, so the fields below
// mu are only touched from the serving goroutine, except where List runs
// the upstream call beside the issuance; mu guards those.
type conn struct {
	s    *Server
	nc   *net.UnixConn
	id   string
	peer Peer
	// loginID is the id of the login connection of the same ssh process,
	// for a later connection of it (agent forwarding); empty otherwise.
	loginID string

	busy     atomic.Bool // a request is being processed
	stopping atomic.Bool

	binds []sessionBind
	// listed are the warden certificates offered on this connection; a
	// bound connection may sign only with those.
	listed map[string]bool
	// target is the last target a certificate was listed for.
	target *target

	mu sync.Mutex // guards up and bindMsgs
	up *upstream
	// bindMsgs are the verified session-bind requests, as received: a new
	// upstream connection gets them all again, since ssh-agent keeps binds
	// per connection and refuses destination-restricted keys without them.
	bindMsgs [][]byte

	// Parts of the per-signature audit records that stay the same for many
	// signatures, computed once (only the serving goroutine touches them).
	audit auditCache
}

// auditCache holds what the records of signatures made on one connection
// share: the caller block, the serial of the certificate last used, and
// the host key and session of the last bind.
type auditCache struct {
	caller    audit.Object
	hasCaller bool

	entry             *signer.Entry
	serial, serialDec string

	bind     int // len(binds) the fields below describe; 0 for none
	bindBlob []byte
	bindFP   string
	sid      []byte
	sidHash  string
}

var _ agent.ExtendedAgent = (*conn)(nil)

// errLocked, errNoUpstream and friends are the named errors behind
// SSH_AGENT_FAILURE replies.
var (
	errLocked      = errors.New("agent is locked")
	errNoUpstream  = errors.New("no upstream agent configured")
	errUnsupported = errors.New("operation not supported by warden-agent")
	errForwarded   = errors.New("refused on a forwarded agent connection")
)

func (s *Server) newConn(nc *net.UnixConn, p Peer) *conn {
	c := &conn{s: s, nc: nc, id: s.newID(), peer: p, listed: map[string]bool{}}
	// The first agent connection of an ssh process that sent a hint
	// continues the hint's id, so the hint, its issuance, the bind and
	// every signature of one login share a connection id in the audit
	// log. Its later connections (forwarded agents) keep their own id and
	// name the login's in their session.bind records.
	if start, err := startTime(s.cfg.ProcRoot, p.Pid); err == nil {
		if h, first := s.hints.claim(p.Pid, start, s.cfg.Now()); h != nil {
			if first {
				c.id = h.id
			} else {
				c.loginID = h.id
			}
		}
	}
	return c
}

// newID makes a connection id: a counter for humans, random bits so ids
// from different agent runs do not collide in OpenBao's audit log.
func (s *Server) newID() string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("c%d-%s", s.nextConn.Add(1), hex.EncodeToString(b[:]))
}

func (c *conn) serve() {
	err := agent.ServeAgent(c, &connIO{c: c, f: newFrameLimiter(c.nc, MaxMessageSize)})
	var tooLarge ErrMessageTooLarge
	if errors.As(err, &tooLarge) {
		c.s.log.Warn("connection closed: message too large", "conn", c.id, "size", tooLarge.Size, "peer_pid", c.peer.Pid)
	}
}

// connIO marks a connection busy from the first byte of a request to the
// reply, so Shutdown can let requests in flight finish.
type connIO struct {
	c *conn
	f *frameLimiter
}

func (x *connIO) Read(p []byte) (int, error) {
	if x.f.pending == 0 && x.f.hdrLeft == 0 {
		x.c.busy.Store(false)
		if x.c.stopping.Load() {
			return 0, io.EOF
		}
	}
	n, err := x.f.Read(p)
	if n > 0 {
		x.c.busy.Store(true)
	}
	return n, err
}

func (x *connIO) Write(p []byte) (int, error) { return x.f.Write(p) }

// stop ends the connection after any request in flight.
func (c *conn) stop() {
	c.stopping.Store(true)
	// Unblock an idle read; a busy request re-checks stopping before its
	// next read.
	c.nc.SetReadDeadline(time.Now())
}

func (c *conn) close() {
	c.nc.Close()
	c.mu.Lock()
	if c.up != nil {
		c.up.close()
	}
	c.mu.Unlock()
}

// caller is the audit block that says who asked.
func (c *conn) caller() map[string]any {
	return map[string]any{"pid": c.peer.Pid, "uid": c.peer.Uid, "exe": c.peer.Exe, "chain": c.peer.ChainString()}
}

// callerObject is caller() encoded for audit.Fields, once per connection
// (the peer does not change).
func (c *conn) callerObject() audit.Object {
	if !c.audit.hasCaller {
		f := audit.NewFields(128)
		f.Int("pid", int64(c.peer.Pid))
		f.Int("uid", int64(c.peer.Uid))
		f.String("exe", c.peer.Exe)
		f.String("chain", c.peer.ChainString())
		c.audit.caller, c.audit.hasCaller = audit.NewObject(f), true
	}
	return c.audit.caller
}

// serials returns e's serial in hex and decimal, as the audit log writes
// them.
func (c *conn) serials(e *signer.Entry) (hex, dec string) {
	if c.audit.entry != e {
		c.audit.entry = e
		c.audit.serial = fmt.Sprintf("%016x", e.Cert.Serial)
		c.audit.serialDec = strconv.FormatUint(e.Cert.Serial, 10)
	}
	return c.audit.serial, c.audit.serialDec
}

// lastBind returns the connection's last session bind with its host key's
// wire form and fingerprint, computed once per bind.
func (c *conn) lastBind() (b *sessionBind, blob []byte, fp string) {
	if len(c.binds) == 0 {
		return nil, nil, ""
	}
	last := &c.binds[len(c.binds)-1]
	if c.audit.bind != len(c.binds) {
		c.audit.bind = len(c.binds)
		c.audit.bindBlob = last.HostKey.Marshal()
		c.audit.bindFP = signer.KeyFingerprint(last.HostKey)
	}
	return last, c.audit.bindBlob, c.audit.bindFP
}

// sessionHash is sessionIDHash, remembered for the session last seen
// (every signature of a login carries the same session id).
func (c *conn) sessionHash(sid []byte) string {
	if c.audit.sid == nil || !bytes.Equal(sid, c.audit.sid) {
		c.audit.sid = bytes.Clone(sid)
		c.audit.sidHash = sessionIDHash(sid)
	}
	return c.audit.sidHash
}

func (c *conn) forwarded() bool {
	for _, b := range c.binds {
		if b.Forwarding {
			return true
		}
	}
	return false
}

// upstreamAgent dials the user's agent once per connection.
func (c *conn) upstreamAgent() (*upstream, error) {
	up, _, err := c.upstreamConn()
	return up, err
}

// upstreamConn is upstreamAgent that also says whether the connection is
// new. A new one (the first, or one replacing a broken one) is sent this
// connection's session binds before anything else.
func (c *conn) upstreamConn() (up *upstream, fresh bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up != nil && !c.up.broken.Load() {
		return c.up, false, nil
	}
	if c.s.cfg.Upstream == "" {
		return nil, false, errNoUpstream
	}
	if c.up != nil { // broken by a timeout: a fresh connection
		c.up.close()
		c.up = nil
	}
	up, err = dialUpstream(c.s.cfg.Upstream, c.s.cfg.UpstreamTimeout)
	if err != nil {
		return nil, false, err
	}
	up.signTimeout = max(c.s.cfg.UpstreamSignTimeout, c.s.cfg.UpstreamTimeout)
	for _, msg := range c.bindMsgs {
		if _, err := up.Extension(extSessionBind, msg); err != nil {
			// An agent without session-bind is not an error.
			c.s.log.Debug("upstream did not take session-bind", "conn", c.id, "err", err)
		}
	}
	c.up = up
	return up, true, nil
}

// List returns warden's certificate for this connection's target first,
// then the upstream agent's keys. sshd counts every offered key against
// MaxAuthTries, so the certificate leads and an expired one is never
// listed. Both halves run under ListDeadline; a failure of either still
// returns the other.
func (c *conn) List() ([]*agent.Key, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.ListDeadline)
	defer cancel()

	type upResult struct {
		keys []*agent.Key
		err  error
	}
	upCh := make(chan upResult, 1)
	go func() {
		up, err := c.upstreamAgent()
		if err != nil {
			upCh <- upResult{err: err}
			return
		}
		keys, err := up.List()
		upCh <- upResult{keys, err}
	}()

	var keys []*agent.Key
	if !c.s.isLocked() {
		for _, e := range c.wardenEntries(ctx) {
			c.listed[string(e.Blob)] = true
			keys = append(keys, &agent.Key{
				Format:  e.Cert.Type(),
				Blob:    e.Blob,
				Comment: fmt.Sprintf("warden:%s:%s", e.Key.Route, e.Key.Principal),
			})
		}
	}
	// An answer already in is taken even when the issuance used up the
	// deadline; select alone would pick between the two at random.
	var r upResult
	select {
	case r = <-upCh:
	default:
		select {
		case r = <-upCh:
		case <-ctx.Done():
			c.s.log.Warn("upstream agent did not answer within the list deadline", "conn", c.id)
			return keys, nil
		}
	}
	if r.err != nil && !errors.Is(r.err, errNoUpstream) {
		c.s.log.Warn("upstream agent unavailable; listing warden keys only", "conn", c.id, "err", r.err)
	}
	return append(keys, r.keys...), nil
}

// Sign is SignWithFlags without flags.
func (c *conn) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return c.SignWithFlags(key, data, 0)
}

// SignWithFlags signs with a warden certificate after the sign-time
// checks, or passes the request to the upstream agent.
func (c *conn) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	blob := key.Marshal()
	if e := c.s.cache.Lookup(blob); e != nil {
		return c.signWarden(e, data, flags)
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return nil, err
	}
	sig, err := up.SignWithFlags(key, data, flags)
	if err != nil {
		return nil, err
	}
	c.s.stats.UpstreamSigned.Add(1)
	f := audit.NewFields(512)
	f.String("conn", c.id)
	f.String("key_fingerprint", signer.KeyFingerprint(key))
	f.Object("caller", c.callerObject())
	if comment := up.comment(blob); comment != "" {
		f.String("comment", comment)
	}
	if ua, err := parseUserauth(data); err == nil {
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
	return sig, nil
}

// Add forwards a key to the upstream agent with all its constraints:
// x/crypto's server parsed lifetime, confirm and extension constraints
// (restrict-destination-v00@openssh.com among them) and its client writes
// them all back; any other constraint fails parsing and is refused there.
func (c *conn) Add(key agent.AddedKey) error {
	if c.forwarded() {
		c.s.log.Warn("key add refused on a forwarded connection", "conn", c.id)
		return errForwarded
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return err
	}
	if err := up.Add(key); err != nil {
		return err
	}
	fields := map[string]any{"conn": c.id, "comment": key.Comment, "lifetime_secs": key.LifetimeSecs,
		"confirm": key.ConfirmBeforeUse, "caller": c.caller()}
	if pub := addedPublicKey(key); pub != nil {
		fields["key_fingerprint"] = signer.KeyFingerprint(pub)
	}
	if len(key.ConstraintExtensions) > 0 {
		var names []string
		for _, ce := range key.ConstraintExtensions {
			names = append(names, ce.ExtensionName)
		}
		fields["constraints"] = names
	}
	_ = c.s.record(context.Background(), evKeyAdded, fields)
	return nil
}

func addedPublicKey(key agent.AddedKey) ssh.PublicKey {
	if key.Certificate != nil {
		return key.Certificate
	}
	s, err := ssh.NewSignerFromKey(key.PrivateKey)
	if err != nil {
		return nil
	}
	return s.PublicKey()
}

// Remove forwards to the upstream agent; a warden certificate is dropped
// from the cache instead.
func (c *conn) Remove(key ssh.PublicKey) error {
	if c.forwarded() {
		return errForwarded
	}
	blob := key.Marshal()
	if c.s.cache.Lookup(blob) != nil {
		c.s.cache.Drop(func(e *signer.Entry) bool { return string(e.Blob) == string(blob) })
		_ = c.s.record(context.Background(), evKeyRemoved, map[string]any{"conn": c.id, "key_fingerprint": signer.KeyFingerprint(key), "warden": true, "caller": c.caller()})
		return nil
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return err
	}
	if err := up.Remove(key); err != nil {
		return err
	}
	_ = c.s.record(context.Background(), evKeyRemoved, map[string]any{"conn": c.id, "key_fingerprint": signer.KeyFingerprint(key), "caller": c.caller()})
	return nil
}

// RemoveAll forwards to the upstream agent.
func (c *conn) RemoveAll() error {
	if c.forwarded() {
		return errForwarded
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return err
	}
	if err := up.RemoveAll(); err != nil {
		return err
	}
	_ = c.s.record(context.Background(), evKeyRemoved, map[string]any{"conn": c.id, "all": true, "caller": c.caller()})
	return nil
}

// Lock locks the upstream agent and hides warden's keys until Unlock.
func (c *conn) Lock(passphrase []byte) error {
	if c.forwarded() {
		return errForwarded
	}
	s := c.s
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.locked {
		return errLocked
	}
	if up, err := c.upstreamAgent(); err == nil {
		if err := up.Lock(passphrase); err != nil {
			return fmt.Errorf("upstream agent refused to lock: %w", err)
		}
	} else if !errors.Is(err, errNoUpstream) {
		return fmt.Errorf("upstream agent unavailable, not locking: %w", err)
	}
	h := sha256.Sum256(passphrase)
	s.locked, s.lockHash, s.lockFails = true, h[:], 0
	_ = s.record(context.Background(), evAgentLocked, map[string]any{"conn": c.id, "caller": c.caller()})
	return nil
}

// Unlock checks the passphrase, unlocks upstream, and shows warden's keys
// again. A wrong passphrase is answered after a growing delay, as
// ssh-agent does, to slow guessing.
func (c *conn) Unlock(passphrase []byte) error {
	s := c.s
	s.lockMu.Lock()
	if !s.locked {
		s.lockMu.Unlock()
		return errors.New("agent is not locked")
	}
	h := sha256.Sum256(passphrase)
	if subtle.ConstantTimeCompare(h[:], s.lockHash) != 1 {
		s.lockFails++
		delay := min(time.Duration(s.lockFails)*100*time.Millisecond, 10*time.Second)
		s.lockMu.Unlock()
		time.Sleep(delay)
		return errors.New("wrong passphrase")
	}
	defer s.lockMu.Unlock()
	if up, err := c.upstreamAgent(); err == nil {
		if err := up.Unlock(passphrase); err != nil {
			return fmt.Errorf("upstream agent refused to unlock: %w", err)
		}
	}
	s.locked, s.lockHash, s.lockFails = false, nil, 0
	_ = s.record(context.Background(), evAgentUnlocked, map[string]any{"conn": c.id, "caller": c.caller()})
	return nil
}

// Signers is not part of the wire protocol.
func (c *conn) Signers() ([]ssh.Signer, error) { return nil, errUnsupported }

// Extension handles session-bind, query and warden's own extensions, and
// passes any other extension to the upstream agent.
func (c *conn) Extension(name string, contents []byte) ([]byte, error) {
	switch name {
	case extSessionBind:
		return nil, c.sessionBind(contents)
	case extQuery:
		return queryReply(), nil
	case ExtHint:
		return c.hint(contents)
	case ExtStatus:
		return c.status()
	case ExtSignCert:
		return c.signCert(contents)
	}
	if strings.HasSuffix(name, "@ops-warden.netkingdom") {
		return nil, agent.ErrExtensionUnsupported
	}
	up, err := c.upstreamAgent()
	if err != nil {
		return nil, agent.ErrExtensionUnsupported
	}
	return up.Extension(name, contents)
}

// queryReply lists the extensions this agent answers (the "query"
// extension: SSH_AGENT_SUCCESS then one string per extension).
func queryReply() []byte {
	out := []byte{msgSuccess}
	for _, n := range []string{extQuery, extSessionBind, ExtHint, ExtStatus, ExtSignCert} {
		out = append(out, ssh.Marshal(struct{ S string }{n})...)
	}
	return out
}

func (c *conn) sessionBind(contents []byte) error {
	fields := map[string]any{"conn": c.id, "caller": c.caller()}
	if c.loginID != "" {
		fields["login_conn"] = c.loginID
	}
	b, err := parseSessionBind(contents)
	if err == nil {
		fields["host_key"] = signer.KeyFingerprint(b.HostKey)
		fields["session_id_hash"] = sessionIDHash(b.SessionID)
		fields["forwarding"] = b.Forwarding
		var added bool
		c.binds, added, err = addBind(c.binds, b)
		if err == nil && added {
			c.mu.Lock()
			c.bindMsgs = append(c.bindMsgs, bytes.Clone(contents))
			c.mu.Unlock()
			c.forwardBind(contents)
		}
	}
	if err != nil {
		fields["verified"] = false
		fields["reason"] = err.Error()
	} else {
		fields["verified"] = true
	}
	_ = c.s.record(context.Background(), evSessionBind, fields)
	return err
}

// forwardBind passes a verified bind to the upstream agent so its own
// destination constraints keep working; an upstream without session-bind
// support is not an error.
func (c *conn) forwardBind(contents []byte) {
	up, fresh, err := c.upstreamConn()
	if err != nil || fresh { // a fresh connection was sent every bind
		return
	}
	if _, err := up.Extension(extSessionBind, contents); err != nil {
		c.s.log.Debug("upstream did not take session-bind", "conn", c.id, "err", err)
	}
}

// sessionIDHash identifies a session in the audit log without recording
// the session id itself.
func sessionIDHash(sid []byte) string {
	h := sha256.Sum256(sid)
	return "SHA256:" + hex.EncodeToString(h[:16])
}
