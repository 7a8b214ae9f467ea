package agentproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// The frame router. warden parses only the frames it owns or must
// inspect — identities, signatures with its own certificates,
// session-bind, lock and unlock, its own extensions and "query" — and
// what the trust model needs from adds and removes. Every other frame,
// and every frame for a key that is not warden's, goes to the user's
// agent byte for byte and its reply comes back byte for byte, so key
// types, constraints and extensions warden has never heard of keep
// working (security keys, PKCS#11, ML-DSA, associated-certs).

const (
	// upstreamIdle closes an upstream connection nobody used for this
	// long; the next request dials again and replays the binds.
	upstreamIdle = time.Minute

	// frameBufSize is the buffer a frame is read into together with its
	// length: a List, and a signature with an ed25519 or ECDSA
	// certificate, fit. A connection holds one only while it reads.
	frameBufSize = 2048
)

var frameBufs = sync.Pool{New: func() any { return new([frameBufSize]byte) }}

// ErrMessageTooLarge closes a connection that sent an oversized message.
type ErrMessageTooLarge struct{ Size uint32 }

func (e ErrMessageTooLarge) Error() string {
	return fmt.Sprintf("agent message of %d bytes exceeds the %d-byte limit", e.Size, MaxMessageSize)
}

var errPartialFrame = errors.New("a partial message was not completed in time")

// serve reads one frame at a time and writes one reply for each. A
// malformed message gets a failure reply and the connection keeps
// serving; an oversized one or a stalled partial frame ends it.
func (c *conn) serve() {
	defer c.releaseFrameBuf()
	for {
		body, err := c.readFrame()
		if err != nil {
			var tooLarge ErrMessageTooLarge
			switch {
			case errors.As(err, &tooLarge):
				c.s.log.Warn("connection closed: message too large", "conn", c.id, "size", tooLarge.Size, "peer_pid", c.peer.Pid)
			case errors.Is(err, errPartialFrame):
				c.s.log.Warn("connection closed: partial message timed out", "conn", c.id, "peer_pid", c.peer.Pid)
			}
			return
		}
		var reply []byte
		if len(body) == 0 {
			// A zero-length frame has no type: answered, as ssh-agent's
			// parser does for any message it cannot read.
			reply = replyFailure
		} else {
			reply = c.dispatch(body)
		}
		if err := c.writeFrame(reply); err != nil {
			return
		}
	}
}

// writeFrame writes one reply with its length in one system call,
// without a buffer kept per connection.
func (c *conn) writeFrame(reply []byte) error {
	// A client that stops reading must not hold the goroutine forever:
	// the deadline is renewed when less than 7/8 of it is left, not
	// per reply (a timer update per request was measurable).
	want := time.Now().Add(c.s.cfg.ListDeadline)
	if c.writeDeadline.Before(want.Add(-c.s.cfg.ListDeadline / 8)) {
		c.nc.SetWriteDeadline(want)
		c.writeDeadline = want
	}
	return writeWithLength(c.nc, reply)
}

// writeWithLength writes a message with its length in one system call,
// through a pooled buffer when it fits.
func writeWithLength(w io.Writer, body []byte) error {
	if 4+len(body) > frameBufSize {
		out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
		_, err := w.Write(append(out, body...))
		return err
	}
	buf := frameBufs.Get().(*[frameBufSize]byte)
	binary.BigEndian.PutUint32(buf[:4], uint32(len(body)))
	n := 4 + copy(buf[4:], body)
	_, err := w.Write(buf[:n])
	frameBufs.Put(buf)
	return err
}

// readFrame reads one message body. While it waits for a new frame it
// closes an idle upstream connection; once a frame has begun, the rest
// must arrive within Config.FrameTimeout. A frame that fits the frame
// buffer is read with its length in one system call.
func (c *conn) readFrame() ([]byte, error) {
	c.busy.Store(false)
	if c.stopping.Load() { // a request sent ahead is not started on the way out
		return nil, io.EOF
	}
	if c.rpos > 0 && c.frameBuf != nil { // keep what is buffered at the start
		c.rend = copy(c.frameBuf[:], c.frameBuf[c.rpos:c.rend])
		c.rpos = 0
	}
	var begun time.Time
	if c.buffered() > 0 { // a client that sent its next request early
		begun = time.Now()
		c.busy.Store(true)
	}
	for c.buffered() < 4 {
		if c.buffered() == 0 {
			// Renewed when less than 7/8 of it is left, so an idle
			// upstream closes between 1 and 1 1/8 minutes after its last
			// use, and a busy connection sets no timer per request.
			want := time.Now().Add(upstreamIdle)
			if c.readDeadline.Before(want.Add(-upstreamIdle / 8)) {
				c.nc.SetReadDeadline(want)
				c.readDeadline = want
			}
		} else {
			c.setReadDeadline(begun.Add(c.s.cfg.FrameTimeout))
		}
		// stop() sets stopping, then a deadline in the past: checked after
		// the deadline above was set, one of the two always wins.
		if c.buffered() == 0 && c.stopping.Load() {
			return nil, io.EOF
		}
		k, err := c.fill()
		if k > 0 && begun.IsZero() {
			begun = time.Now()
			c.busy.Store(true)
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, err
			}
			if c.buffered() > 0 {
				return nil, errPartialFrame
			}
			if c.stopping.Load() {
				return nil, io.EOF
			}
			c.readDeadline = time.Time{} // expired: the next wait sets one
			c.closeIdleUpstream()
		}
	}
	buf := c.frameBuf[c.rpos:c.rend]
	size := binary.BigEndian.Uint32(buf)
	if size > MaxMessageSize {
		return nil, ErrMessageTooLarge{Size: size}
	}
	// The body is a copy: handlers may keep parts of it (binds, keys),
	// and the frame buffer is reused.
	body := make([]byte, size)
	n := copy(body, buf[4:])
	c.rpos += 4 + n
	c.releaseFrameBuf()
	if n < len(body) {
		c.setReadDeadline(begun.Add(c.s.cfg.FrameTimeout))
		if _, err := io.ReadFull(c.nc, body[n:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errPartialFrame
			}
			return nil, err
		}
	}
	return body, nil
}

// setReadDeadline sets the connection's read deadline and remembers it.
func (c *conn) setReadDeadline(t time.Time) {
	if !t.Equal(c.readDeadline) {
		c.nc.SetReadDeadline(t)
		c.readDeadline = t
	}
}

// buffered is the number of bytes read but not yet taken as a frame.
func (c *conn) buffered() int { return c.rend - c.rpos }

// releaseFrameBuf gives the frame buffer back to the pool once it holds
// nothing unread, so an idle connection holds none.
func (c *conn) releaseFrameBuf() {
	if c.frameBuf != nil && c.rpos == c.rend {
		frameBufs.Put(c.frameBuf)
		c.frameBuf, c.rpos, c.rend = nil, 0, 0
	}
}

// dispatch answers one message.
func (c *conn) dispatch(body []byte) []byte {
	t := body[0]
	if c.s.isLocked() {
		// As ssh-agent: a locked agent lists nothing and refuses all but
		// Unlock. warden's status still answers its own program, so a
		// health check can say "locked".
		switch t {
		case msgUnlock:
			return c.handleUnlock(body)
		case msgRequestIdentities:
			return identitiesAnswer(nil)
		case msgExtension:
			name, contents, err := parseExtension(body)
			switch {
			case err != nil:
			case name == ExtStatus:
				return c.handleExtension(body)
			case name == extSessionBind:
				// Refused as ssh-agent refuses it while locked, but still
				// verified and kept: a forwarded channel opened while the
				// agent is locked must not count as unbound (and so be
				// allowed to unlock) once it is.
				c.sessionBind(contents, body)
			}
		}
		c.refuse("agent is locked", t)
		return replyFailure
	}
	switch t {
	case msgRequestIdentities:
		return c.handleList()
	case msgSignRequest:
		return c.handleSign(body)
	case msgAddIdentity, msgAddIDConstrained, msgAddSmartcardKey, msgAddSmartcardConstraint:
		return c.handleAdd(body)
	case msgRemoveIdentity:
		return c.handleRemove(body)
	case msgRemoveAllIdentities:
		return c.handleRemoveAll(body)
	case msgRemoveSmartcardKey:
		return c.handleRemoveSmartcard(body)
	case msgLock:
		return c.handleLock(body)
	case msgUnlock:
		return c.handleUnlock(body)
	case msgExtension:
		return c.handleExtension(body)
	case msgFailure, msgSuccess, msgIdentitiesAnswer, msgSignResponse, msgExtensionFailure, msgExtensionResponse:
		// Replies sent as requests.
		return replyFailure
	}
	if isLegacyV1(t) {
		return replyFailure
	}
	// A message number warden does not know: the user's agent decides.
	return c.forward(body, c.s.cfg.UpstreamTimeout)
}

// refuse logs a refusal at warn with its reason.
func (c *conn) refuse(reason string, msgType byte) {
	c.s.log.Warn("request refused", "conn", c.id, "type", int(msgType), "reason", reason, "peer_pid", c.peer.Pid, "trust", c.trust().String())
}

// forward passes a frame to the upstream agent and returns its reply
// unchanged; with no upstream, or one that fails, the answer is failure.
func (c *conn) forward(body []byte, timeout time.Duration) []byte {
	up, err := c.upstreamAgent()
	if err != nil {
		if !errors.Is(err, errNoUpstream) {
			c.s.log.Warn("upstream agent unavailable", "conn", c.id, "err", err)
		}
		return replyFailure
	}
	reply, err := up.roundTrip(body, timeout)
	if err != nil {
		c.s.log.Warn("upstream agent did not answer", "conn", c.id, "type", int(body[0]), "err", err)
		return replyFailure
	}
	return reply
}

// upstreamAgent dials the user's agent once per connection.
func (c *conn) upstreamAgent() (*upstream, error) {
	up, _, err := c.upstreamConn()
	return up, err
}

// upstreamConn is upstreamAgent that also says whether the connection is
// new. A new one (the first, or one replacing a broken or idle one) is
// sent this connection's session binds before anything else.
func (c *conn) upstreamConn() (up *upstream, fresh bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up != nil && !c.up.broken.Load() {
		return c.up, false, nil
	}
	if c.s.cfg.Upstream == "" {
		return nil, false, errNoUpstream
	}
	if c.up != nil { // broken: a fresh connection
		c.up.close()
		c.up = nil
	}
	up, err = dialUpstream(c.s.cfg.Upstream, c.s.cfg.UpstreamTimeout)
	if err != nil {
		return nil, false, err
	}
	up.signTimeout = max(c.s.cfg.UpstreamSignTimeout, c.s.cfg.UpstreamTimeout)
	for _, msg := range c.bindMsgs {
		if _, err := up.call(msg); err != nil {
			c.s.log.Debug("upstream did not take a replayed session-bind", "conn", c.id, "err", err)
		}
	}
	c.up = up
	return up, true, nil
}

// closeIdleUpstream closes the upstream connection when it has not been
// used for upstreamIdle: an ssh session holds its agent connection open
// for hours, and the user's agent should not hold one per session.
func (c *conn) closeIdleUpstream() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up != nil && time.Since(time.Unix(0, c.up.lastUsed.Load())) >= upstreamIdle {
		c.up.close()
		c.up = nil
	}
}

// fillPlain is fill through net.Conn.Read.
func (c *conn) fillPlain() (int, error) {
	if c.frameBuf == nil {
		c.frameBuf = frameBufs.Get().(*[frameBufSize]byte)
	}
	n, err := c.nc.Read(c.frameBuf[c.rend:])
	c.rend += n
	return n, err
}
