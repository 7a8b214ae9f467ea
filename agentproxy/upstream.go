package agentproxy

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// upstream is one connection to the user's own agent. Every call has a
// deadline; a call that times out leaves the stream out of step, so the
// connection is marked broken and the next call dials again.
//
// A plain refusal (SSH_AGENT_FAILURE: a denied confirmation, a key the
// agent does not hold) leaves the stream in step, and the connection is
// kept: the upstream agent remembers the session binds forwarded on it,
// and a fresh connection would be unbound, so a destination-restricted
// key would be refused after any earlier refusal on the same client
// connection (ssh-agent: "refusing use of destination-constrained key to
// sign on unbound connection").
type upstream struct {
	nc      net.Conn
	sc      *stepConn
	client  agent.ExtendedAgent
	timeout time.Duration
	// signTimeout bounds a signature, which may wait for a human: see
	// Config.UpstreamSignTimeout.
	signTimeout time.Duration
	broken      atomic.Bool

	mu       sync.Mutex        // guards comments
	comments map[string]string // key blob → comment from the last List
}

func dialUpstream(path string, timeout time.Duration) (*upstream, error) {
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	// Passing only Reader and Writer keeps x/crypto's client synchronous
	// (no pipelining reader goroutine), so per-call deadlines are simple.
	sc := &stepConn{c: nc}
	rw := struct {
		io.Reader
		io.Writer
	}{sc, sc}
	return &upstream{nc: nc, sc: sc, client: agent.NewClient(rw), timeout: timeout, signTimeout: timeout}, nil
}

// stepConn is the upstream connection as x/crypto's client sees it; it
// tells whether the stream is still in step after a call: no read or
// write failed, and every reply was read to its end. x/crypto's client
// does not wrap its errors, so a failed call cannot otherwise be told
// from a refusal. The client reads and writes one call at a time; mu is
// for inStep, which a List abandoned at its deadline may ask while the
// next call runs.
type stepConn struct {
	c      net.Conn
	mu     sync.Mutex
	failed bool    // a read or write failed (EOF, reset, deadline)
	hdr    [4]byte // the length of the reply being read
	hdrN   int     // bytes of hdr read; 4 while in a body
	left   uint32  // bytes of the reply's body not yet read
	// lastLen and lastType are the length and first byte of the last
	// reply: a refusal is a one-byte failure message.
	lastLen  uint32
	lastType byte
}

func (s *stepConn) Read(p []byte) (int, error) {
	n, err := s.c.Read(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for b := p[:n]; len(b) > 0; {
		if s.hdrN < 4 {
			k := copy(s.hdr[s.hdrN:], b)
			s.hdrN += k
			b = b[k:]
			if s.hdrN == 4 {
				s.left = binary.BigEndian.Uint32(s.hdr[:])
				s.lastLen, s.lastType = s.left, 0
				if s.left == 0 {
					s.hdrN = 0
				}
			}
			continue
		}
		if s.left == s.lastLen {
			s.lastType = b[0]
		}
		k := uint32(len(b))
		if k > s.left {
			k = s.left // more than one reply: not expected of an agent
		}
		s.left -= k
		b = b[k:]
		if s.left == 0 {
			s.hdrN = 0
		}
	}
	if err != nil {
		s.failed = true
	}
	return n, err
}

func (s *stepConn) Write(p []byte) (int, error) {
	n, err := s.c.Write(p)
	if err != nil || n < len(p) {
		s.mu.Lock()
		s.failed = true
		s.mu.Unlock()
	}
	return n, err
}

// refused reports whether the last call ended in a plain refusal with the
// stream in step: the whole reply read, and it was SSH_AGENT_FAILURE or
// SSH_AGENT_EXTENSION_FAILURE. Any other error (a reply x/crypto could not
// parse, say) may mean the agent answered out of turn, so it is not kept.
func (s *stepConn) refused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.failed && s.hdrN == 0 && s.left == 0 && s.lastLen == 1 &&
		(s.lastType == msgFailure || s.lastType == msgExtensionFailure)
}

// drained reports whether nothing is waiting to be read: an agent that
// sent more than one reply would otherwise answer every later request
// with the reply to the one before. It is asked only after a refusal.
func (s *stepConn) drained() bool {
	sc, ok := s.c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Open and nothing to read is EAGAIN; data, end of file (0 bytes)
	// or an error all mean the stream cannot be trusted.
	empty := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		empty = rerr == syscall.EAGAIN
		return true // never wait for data
	})
	return err == nil && empty
}

func (u *upstream) close() { u.nc.Close() }

// call runs f under the deadline. After a plain refusal the connection is
// kept, with the session binds the upstream agent holds for it; after any
// other error — a dead or restarted agent (EOF, reset), a timeout, an
// oversized reply left unread, a reply that did not parse — it is marked
// broken and the next call dials again.
func (u *upstream) call(f func() error) error { return u.callFor(u.timeout, f) }

func (u *upstream) callFor(timeout time.Duration, f func() error) error {
	u.nc.SetDeadline(time.Now().Add(timeout))
	err := f()
	if err != nil && !(u.sc.refused() && u.sc.drained()) {
		u.broken.Store(true)
	}
	u.nc.SetDeadline(time.Time{})
	return err
}

func (u *upstream) List() (keys []*agent.Key, err error) {
	err = u.call(func() error { keys, err = u.client.List(); return err })
	if err == nil {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[string(k.Blob)] = k.Comment
		}
		u.mu.Lock()
		u.comments = m
		u.mu.Unlock()
	}
	return keys, err
}

// comment returns the comment the upstream agent listed for a key.
func (u *upstream) comment(blob []byte) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.comments[string(blob)]
}

func (u *upstream) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (sig *ssh.Signature, err error) {
	err = u.callFor(u.signTimeout, func() error { sig, err = u.client.SignWithFlags(key, data, flags); return err })
	return sig, err
}

func (u *upstream) Add(key agent.AddedKey) error {
	return u.call(func() error { return u.client.Add(key) })
}

func (u *upstream) Remove(key ssh.PublicKey) error {
	return u.call(func() error { return u.client.Remove(key) })
}

func (u *upstream) RemoveAll() error { return u.call(u.client.RemoveAll) }

func (u *upstream) Lock(p []byte) error { return u.call(func() error { return u.client.Lock(p) }) }

func (u *upstream) Unlock(p []byte) error { return u.call(func() error { return u.client.Unlock(p) }) }

func (u *upstream) Extension(name string, contents []byte) (reply []byte, err error) {
	err = u.call(func() error { reply, err = u.client.Extension(name, contents); return err })
	return reply, err
}
