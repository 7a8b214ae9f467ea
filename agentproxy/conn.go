package agentproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/signer"
)

// conn is one client connection: its peer, its session binds, what is
// verified about them (trust.go), and its own upstream connection. Frames
// are read and answered one at a time by serve (router.go), so the fields
// below mu are only touched from the serving goroutine, except where List
// runs the upstream call beside the issuance; mu guards those.
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

	// Owned by the serving goroutine (router.go): the frame buffer, from
	// the pool while a frame is being read, with unread bytes
	// frameBuf[rpos:rend]; and the deadlines last set, renewed lazily.
	raw           syscall.RawConn
	readFn        func(fd uintptr) bool
	readN         int
	readErr       error
	frameBuf      *[frameBufSize]byte
	rpos, rend    int
	readDeadline  time.Time
	writeDeadline time.Time

	binds []sessionBind
	// taint says why a bind failed or could not be verified; once set,
	// nothing on the connection is trusted for warden's certificates or
	// extensions (trust.go).
	taint string
	// listed are the warden certificates offered on this connection; a
	// bound connection may sign only with those.
	listed map[string]bool
	// target is the last target a certificate was listed for.
	target *target
	// hints counts the hints sent on this connection.
	hints int
	// records limits the audit records this connection's peer can cause
	// (binds, refusals, hints, upstream use).
	records *audit.Limiter

	mu sync.Mutex // guards up and bindMsgs
	up *upstream
	// bindMsgs are the session-bind requests as received, verified or
	// not: a new upstream connection gets them all again, since ssh-agent
	// keeps binds per connection, refuses destination-restricted keys
	// without them, and taints itself after a failed one.
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
	callerMap map[string]any

	entry             *signer.Entry
	serial, serialDec string

	bind     int // len(binds) the fields below describe; 0 for none
	bindBlob []byte
	bindFP   string
	sid      []byte
	sidHash  string

	// fingerprints of upstream keys used on this connection, by blob.
	fingerprints map[string]string
}

// errNoUpstream means no upstream agent is configured (--upstream none).
var errNoUpstream = errors.New("no upstream agent configured")

func (s *Server) newConn(nc *net.UnixConn, p Peer) *conn {
	c := &conn{s: s, nc: nc, id: s.newID(), peer: p, records: audit.NewLimiter(connRecordRate, connRecordBurst)}
	c.raw, _ = nc.SyscallConn()
	// The first agent connection of an ssh process that sent a hint
	// continues the hint's id, so the hint, its issuance, the bind and
	// every signature of one login share a connection id in the audit
	// log. Its later connections (forwarded agents) keep their own id and
	// name the login's in their session.bind records.
	if p.Pid > 1 && p.start != 0 {
		if h, first := s.hints.claim(p.Pid, p.start, s.cfg.Now()); h != nil {
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
//
// The map is made once per connection (the peer does not change) and
// shared by every record that names it: callers must not modify it.
func (c *conn) caller() map[string]any {
	if c.audit.callerMap == nil {
		c.audit.callerMap = map[string]any{"pid": c.peer.Pid, "uid": c.peer.Uid, "exe": c.peer.Exe, "chain": c.peer.ChainString()}
	}
	return c.audit.callerMap
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
		c.audit.serial = fmt.Sprintf("%x", e.Cert.Serial)
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
