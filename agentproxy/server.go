// Package agentproxy is the SSH agent protocol server: the socket, peer
// identity, session-bind, per-connection state, the merging of
// just-in-time certificates with the user's own agent's keys, and the
// checks made before a certificate signs anything.
package agentproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
)

// Recorder writes audit records. Record returns only when the record is
// durable; an error means it is not, and the action it describes must not
// happen (fail closed).
type Recorder interface {
	Record(ctx context.Context, event string, fields map[string]any) error
	// Head is the current audit chain head, sent to the issuer as an anchor.
	Head() string
}

// FieldsRecorder is a Recorder that also takes fields already encoded for
// the audit log (audit.Fields), as *audit.Log's AppendFields and
// AppendLater do. The events written on every signature (cert.used,
// upstream.used) use it when the Recorder has it, so that the signing path
// builds no map and encodes nothing by reflection; a Recorder without it
// gets the same fields as a map.
type FieldsRecorder interface {
	// RecordFields is Record for Fields: it returns only when the record
	// is durable.
	RecordFields(ctx context.Context, event string, f *audit.Fields) error
	// RecordFieldsLater queues a best-effort record without waiting and
	// calls done (which must not block) once it is written or refused. It
	// returns false, without calling done, if it could not queue it.
	RecordFieldsLater(event string, f *audit.Fields, done func(error)) bool
}

// AuthRequest is what the policy is asked before a certificate is issued
// or, for a connection without session-bind, used.
type AuthRequest struct {
	Subject   string // the local user
	Principal string
	User      string   // the remote user, when known
	Host      string   // the target host, when known
	Hosts     []string // names resolved for the bound host key
	Route     string
	Callers   []Process // nearest first
	Forwarded bool
	Bound     bool
}

// AuthDecision is the policy's answer.
type AuthDecision struct {
	Allow  bool
	Rule   string
	Reason string
	// MaxTTL caps the certificate lifetime when non-zero.
	MaxTTL time.Duration
	// Confirmed is set when a person confirmed (a confirm rule).
	Confirmed bool
	// Gate is the decision service's answer: "" when not asked, "allow"
	// or "deny"; GateReason its reason, or why asking it failed.
	Gate       string
	GateReason string
	// FailOpen is set when the gate could not be asked and its on_error
	// allowed the request anyway.
	FailOpen bool
}

// addTo writes the decision into an audit record: the deciding rule, the
// confirmation and the gate's answer, so that every allow says why.
func (d *AuthDecision) addTo(f map[string]any) {
	f["rule"] = d.Rule
	if d.Reason != "" {
		f["decision"] = d.Reason
	}
	if d.Confirmed {
		f["confirmed"] = true
	}
	if d.Gate != "" {
		f["gate"] = d.Gate
		if d.GateReason != "" {
			f["gate_reason"] = d.GateReason
		}
	}
	if d.FailOpen {
		f["gate_fail_open"] = true
	}
}

// Authorizer decides AuthRequests. It may prompt (confirm) or call a
// decision service; it must honour ctx.
type Authorizer func(ctx context.Context, req AuthRequest) AuthDecision

// Config is what a Server is built from.
type Config struct {
	// Issuer mints certificates.
	Issuer signer.Issuer
	// Catalog returns the routes in force (it may change on reload).
	Catalog func() *catalog.Catalog
	// KnownHosts returns the known_hosts index used to find the route of a
	// server known only by its host key; may be nil.
	KnownHosts func() *catalog.KnownHosts
	// Authorize is the policy; nil allows whatever the catalog allows.
	Authorize Authorizer
	// Recorder is the audit log; nil logs with Logger only.
	Recorder Recorder
	// Logger receives operational logs; never secrets.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Upstream is the socket of the user's own agent; empty for none.
	Upstream string
	// SocketPath is our own socket, to refuse proxying to ourselves.
	SocketPath string
	// ListDeadline bounds REQUEST_IDENTITIES (ssh waits on the agent
	// without a timeout). Default 10s.
	ListDeadline time.Duration
	// UpstreamTimeout bounds each call to the upstream agent but
	// signatures. Default 5s.
	UpstreamTimeout time.Duration
	// UpstreamSignTimeout bounds a signature by an upstream key. ssh-agent
	// asks a human first for a key added with ssh-add -c and waits as long
	// as they take, so it is long. Default 2 minutes.
	UpstreamSignTimeout time.Duration
	// LocalUser is the subject of policy decisions.
	LocalUser string
	// ProcRoot is /proc (tests may point elsewhere).
	ProcRoot string
	// HintProgram is the warden-hint program installed beside warden-agent
	// (empty when there is none): the agent takes the hint extension from
	// a process running that file, besides from its own program.
	HintProgram string
	// Version is reported by status.
	Version string
	// FrameTimeout bounds how long the rest of a message may take once
	// its first byte arrived. Default 10s: ssh writes whole frames, so a
	// peer that stops in the middle is only holding a connection open.
	FrameTimeout time.Duration
	// MaxConnsPerPid caps the connections one peer process may hold open
	// at once. Default 128: a remote host with a forwarded agent opens one
	// per channel through the local ssh process.
	MaxConnsPerPid int
	// StatusExtra adds the wiring's view (issuer, catalog, policy, audit)
	// to status; it must answer from memory.
	StatusExtra func(ctx context.Context) any
}

// Server serves the agent protocol on one or more listeners.
type Server struct {
	cfg   Config
	log   *slog.Logger
	cache *signer.Cache
	hints *hintStore

	started  time.Time
	nextConn atomic.Uint64
	stopping atomic.Bool

	lockMu    sync.Mutex // guards the fields below
	locked    bool
	lockSalt  []byte // made at start; the passphrase itself is not kept
	lockHash  []byte // SHA-256 of salt and passphrase
	lockFails int
	// unlockMu takes unlock attempts one at a time across connections,
	// held through a wrong guess's delay.
	unlockMu sync.Mutex

	// records limits peer-caused audit records across connections.
	records *audit.Limiter
	// hintRate limits hints across connections.
	hintRate *audit.Limiter
	// upstreamDown is set once an unreachable upstream was logged, until
	// it answers again.
	upstreamDown atomic.Bool

	// The upstream agent's query answer (upstreamExtensions).
	upExtsMu sync.Mutex
	upExts   []string
	upExtsAt time.Time
	// perPid counts open connections by peer pid (connMu).
	perPid map[int]int

	connMu sync.Mutex // guards conns
	conns  map[*conn]struct{}
	wg     sync.WaitGroup // connections
	// bg counts background work started by connections (best-effort
	// records); Shutdown waits for it after the connections, so no Add
	// can race the Wait.
	bg sync.WaitGroup

	stats   Stats
	latency *latencyHistogram // issuance latency

	// signDeadline is the deadline context signatures share (signContext).
	signDeadline atomic.Pointer[sharedDeadline]
}

// sharedDeadline is a context with a deadline, made at made.
type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // called by the context's own timer
	made   time.Time
}

// Stats are counters since start.
type Stats struct {
	Issued, IssueFailed, Used, Denied, UpstreamSigned, Refused atomic.Uint64
}

// New checks cfg and makes a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Issuer == nil {
		return nil, errors.New("agentproxy: no issuer")
	}
	if cfg.Catalog == nil {
		return nil, errors.New("agentproxy: no catalog")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ListDeadline <= 0 {
		cfg.ListDeadline = 10 * time.Second
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 5 * time.Second
	}
	if cfg.UpstreamSignTimeout <= 0 {
		cfg.UpstreamSignTimeout = 2 * time.Minute
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = 10 * time.Second
	}
	if cfg.MaxConnsPerPid <= 0 {
		cfg.MaxConnsPerPid = 128
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Upstream != "" && cfg.SocketPath != "" && sameFile(cfg.Upstream, cfg.SocketPath) {
		return nil, fmt.Errorf("upstream agent %s is warden's own socket; start warden-agent with the SSH_AUTH_SOCK of your real agent or --upstream none", cfg.Upstream)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		started:  cfg.Now(),
		latency:  newLatencyHistogram(),
		hints:    newHintStore(),
		conns:    map[*conn]struct{}{},
		perPid:   map[int]int{},
		records:  audit.NewLimiter(globalRecordRate, globalRecordBurst),
		hintRate: audit.NewLimiter(globalHintRate, globalHintBurst),
		lockSalt: newLockSalt(),
		// The issuance ends a little before the List deadline, so a waiter
		// gets the issuer's own error (which names the address and what
		// happened) rather than its own bare deadline, and the upstream
		// keys still make it into the list.
		cache: signer.NewCache(signer.CacheOptions{Now: cfg.Now, IssueTimeout: issueTimeout(cfg.ListDeadline)}),
	}
	if _, err := selfExecutable(); err != nil {
		s.log.Warn("cannot identify the agent's own executable: warden's extensions (hint, status, sign) will be refused", "err", err)
	}
	return s, nil
}

// sameFile reports whether two socket paths name the same file, before
// either may exist: other spellings ("d/../d/agent.sock") and symlinks,
// dangling ones included, are resolved.
// issueTimeout leaves a tenth of the List deadline (at least 100ms, at
// most 1s) for the answer to travel back.
func issueTimeout(listDeadline time.Duration) time.Duration {
	return listDeadline - min(max(listDeadline/10, 100*time.Millisecond), time.Second)
}

func sameFile(a, b string) bool {
	ca, cb := canonicalPath(a), canonicalPath(b)
	if ca == cb {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// canonicalPath follows symlinks at p itself (even to a file that does not
// exist yet) and in its directory.
func canonicalPath(p string) string {
	for i := 0; i < 40; i++ { // ELOOP bound, as the kernel's
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	dir, base := filepath.Split(abs)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	return filepath.Join(dir, base)
}

// Cache exposes the certificate cache (for status and reload handling).
func (s *Server) Cache() *signer.Cache { return s.cache }

// Stats returns the counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts connections until the listener is closed. Running out of
// file descriptors pauses accepting instead of spinning.
func (s *Server) Serve(ln *net.UnixListener) error {
	var backoff time.Duration
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept paused", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		// Add under connMu and only while not stopping, so no Add races
		// Shutdown's Wait.
		s.connMu.Lock()
		if s.stopping.Load() {
			s.connMu.Unlock()
			c.Close()
			return nil
		}
		s.wg.Add(1)
		s.connMu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) handle(uc *net.UnixConn) {
	pid, uid, err := peerCred(uc)
	if err != nil {
		s.log.Warn("connection refused: no peer credentials", "err", err)
		uc.Close()
		return
	}
	if uid != os.Getuid() && uid != 0 {
		s.stats.Refused.Add(1)
		s.log.Warn("connection refused: peer belongs to another user", "peer_uid", uid, "peer_pid", pid)
		uc.Close()
		return
	}
	s.connMu.Lock()
	if s.perPid[pid] >= s.cfg.MaxConnsPerPid {
		s.connMu.Unlock()
		s.stats.Refused.Add(1)
		s.log.Warn("connection refused: too many open connections from one process", "peer_pid", pid, "limit", s.cfg.MaxConnsPerPid)
		uc.Close()
		return
	}
	s.perPid[pid]++
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		if s.perPid[pid]--; s.perPid[pid] <= 0 {
			delete(s.perPid, pid)
		}
		s.connMu.Unlock()
	}()
	c := s.newConn(uc, readPeer(s.cfg.ProcRoot, pid, uid))
	s.connMu.Lock()
	if s.stopping.Load() {
		s.connMu.Unlock()
		uc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
		c.close()
	}()
	c.serve()
}

// Shutdown stops accepting (the caller closes the listener), lets
// requests in flight finish, and closes idle connections. It returns when
// every connection is closed or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.connMu.Lock()
	s.stopping.Store(true)
	for c := range s.conns {
		c.stop()
	}
	s.connMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.connMu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.connMu.Unlock()
		<-done
	}
	s.bg.Wait()
	s.cache.Close()
	return nil
}

// background runs f on its own goroutine, owned by the server: called
// only from a connection's goroutine, waited for by Shutdown.
func (s *Server) background(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// record writes an audit record (and a log line). It returns an error
// only when a Recorder is configured and the record is not durable.
func (s *Server) record(ctx context.Context, event string, fields map[string]any) error {
	if level := s.logLevel(event); s.log.Enabled(ctx, level) {
		attrs := make([]slog.Attr, 0, len(fields))
		for k, v := range fields {
			attrs = append(attrs, slog.Any(k, v))
		}
		s.log.LogAttrs(ctx, level, event, attrs...)
	}
	if s.cfg.Recorder == nil {
		return nil
	}
	if err := s.cfg.Recorder.Record(ctx, event, fields); err != nil {
		s.log.Error("audit record not durable", "event", event, "err", err)
		return err
	}
	return nil
}

// recordFields is record for the per-signature events, with fields built
// as audit.Fields.
func (s *Server) recordFields(ctx context.Context, event string, f *audit.Fields) error {
	s.logFields(ctx, event, f)
	if s.cfg.Recorder == nil {
		return nil
	}
	var err error
	if fr, ok := s.cfg.Recorder.(FieldsRecorder); ok {
		err = fr.RecordFields(ctx, event, f)
	} else {
		err = s.cfg.Recorder.Record(ctx, event, f.Map())
	}
	if err != nil {
		s.log.Error("audit record not durable", "event", event, "err", err)
	}
	return err
}

// recordLater writes a best-effort record off the caller's path: queued
// on the audit log's writer when the Recorder can take it that way, else
// on a goroutine bounded by UpstreamTimeout. Shutdown waits for it.
func (s *Server) recordLater(event string, f *audit.Fields) {
	s.logFields(context.Background(), event, f)
	if s.cfg.Recorder == nil {
		return
	}
	if fr, ok := s.cfg.Recorder.(FieldsRecorder); ok {
		s.bg.Add(1)
		if fr.RecordFieldsLater(event, f, func(err error) {
			if err != nil {
				s.log.Error("audit record not durable", "event", event, "err", err)
			}
			s.bg.Done()
		}) {
			return
		}
		s.bg.Done()
	}
	s.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.UpstreamTimeout)
		defer cancel()
		_ = s.recordFields(ctx, event, f)
	})
}

// logLevel is the operational log's level for an event: with an audit
// log, per-signature events are already recorded there and the
// operational log repeats them only at debug level.
func (s *Server) logLevel(event string) slog.Level {
	if s.cfg.Recorder != nil && (event == evCertUsed || event == evUpstreamUsed || event == evSessionBind) {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// logFields repeats an event built as audit.Fields in the operational log.
func (s *Server) logFields(ctx context.Context, event string, f *audit.Fields) {
	level := s.logLevel(event)
	if !s.log.Enabled(ctx, level) {
		return
	}
	m := f.Map()
	attrs := make([]slog.Attr, 0, len(m))
	for k, v := range m {
		attrs = append(attrs, slog.Any(k, v))
	}
	s.log.LogAttrs(ctx, level, event, attrs...)
}

// signContext returns a context that ends ListDeadline after it was made,
// shared by the signatures of the same tenth of that deadline (at most a
// second): every signature's wait for its audit record stays bounded by at
// most ListDeadline, without arming a timer of its own (adding a timer
// wakes the network poller, a system call per signature). Nothing cancels
// it early; it ends at its deadline.
func (s *Server) signContext() context.Context {
	now := time.Now()
	refresh := min(s.cfg.ListDeadline/10, time.Second)
	if d := s.signDeadline.Load(); d != nil && now.Sub(d.made) < refresh {
		return d.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ListDeadline)
	s.signDeadline.Store(&sharedDeadline{ctx: ctx, cancel: cancel, made: now})
	return ctx
}

func (s *Server) auditHead() string {
	if s.cfg.Recorder == nil {
		return ""
	}
	return s.cfg.Recorder.Head()
}

func (s *Server) isLocked() bool {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	return s.locked
}
