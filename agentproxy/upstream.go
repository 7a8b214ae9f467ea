package agentproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// upstream is one connection to the user's own agent. warden passes
// frames to it byte for byte and reads back exactly one reply frame per
// request, so it never needs to understand a key type, a constraint or an
// extension it does not own.
//
// Every call has a deadline; a call that times out or fails leaves the
// stream out of step, so the connection is marked broken and the next
// call dials again. A plain refusal (SSH_AGENT_FAILURE: a denied
// confirmation, a key the agent does not hold) leaves it in step and the
// connection is kept: the upstream agent remembers the session binds
// forwarded on it, and a fresh connection would be unbound ("refusing use
// of destination-constrained key to sign on unbound connection").
type upstream struct {
	nc      net.Conn
	timeout time.Duration
	// signTimeout bounds a signature, which may wait for a human: see
	// Config.UpstreamSignTimeout.
	signTimeout time.Duration
	broken      atomic.Bool
	// callMu makes calls one at a time: a List abandoned at its deadline
	// may still be reading its reply when the next request comes.
	callMu sync.Mutex
	// lastUsed is when the last call ended (unix nanoseconds), so an idle
	// connection can be closed.
	lastUsed atomic.Int64

	// deadline is the last deadline set on nc (under callMu).
	deadline time.Time

	mu       sync.Mutex // guards lastList
	lastList []byte     // the last identities answer, for key comments
}

var (
	errUpstreamReply  = errors.New("upstream agent sent a malformed reply")
	errUpstreamBroken = errors.New("upstream connection broken by an earlier call")
)

func dialUpstream(path string, timeout time.Duration) (*upstream, error) {
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	u := &upstream{nc: nc, timeout: timeout, signTimeout: timeout}
	u.lastUsed.Store(time.Now().UnixNano())
	return u, nil
}

func (u *upstream) close() { u.nc.Close() }

// roundTrip sends one request body (without its length) and returns the
// reply body. After a plain refusal with nothing unread behind it the
// connection is kept; after any other failure (EOF, reset, timeout, an
// oversized or empty reply) it is marked broken.
func (u *upstream) roundTrip(body []byte, timeout time.Duration) ([]byte, error) {
	if err := u.send(body, timeout); err != nil {
		return nil, err
	}
	return u.recv(time.Time{})
}

// send starts a call: it takes the connection (callMu) and writes the
// request with its length in one system call. Every send that returns nil
// must be followed by recv, which ends the call.
func (u *upstream) send(body []byte, timeout time.Duration) error {
	u.callMu.Lock()
	if u.broken.Load() {
		u.callMu.Unlock()
		return errUpstreamBroken
	}
	// The deadline bounds the write and the read of this call; renewed
	// only when it moved by more than an eighth (a timer update per
	// request was measurable), never left later than now+timeout.
	want := time.Now().Add(timeout)
	if u.deadline.After(want) || u.deadline.Before(want.Add(-timeout/8)) {
		u.nc.SetDeadline(want)
		u.deadline = want
	}
	if err := writeWithLength(u.nc, body); err != nil {
		u.broken.Store(true)
		u.endCall()
		return err
	}
	return nil
}

// recv reads the reply to the request send wrote and ends the call. A
// non-zero by moves the read deadline there, but never to less than
// replyGrace from now: a reply already waiting is taken even when the
// caller used up its own deadline meanwhile.
func (u *upstream) recv(by time.Time) ([]byte, error) {
	defer u.endCall()
	if !by.IsZero() {
		by = later(by, time.Now().Add(replyGrace))
		u.nc.SetReadDeadline(by)
		u.deadline = time.Time{} // the next send sets both again
	}
	buf := frameBufs.Get().(*[frameBufSize]byte)
	defer frameBufs.Put(buf)
	got := 0
	for got < 4 {
		k, err := u.nc.Read(buf[got:])
		got += k
		if err != nil && got < 4 {
			u.broken.Store(true)
			return nil, err
		}
	}
	n := binary.BigEndian.Uint32(buf[:4])
	if n == 0 || n > MaxMessageSize {
		u.broken.Store(true)
		return nil, fmt.Errorf("%w: %d-byte reply", errUpstreamReply, n)
	}
	if uint64(got-4) > uint64(n) {
		// More than one reply: every later request would get the answer
		// to the one before.
		u.broken.Store(true)
		return nil, fmt.Errorf("%w: more than one reply", errUpstreamReply)
	}
	reply := make([]byte, n)
	k := copy(reply, buf[4:got])
	if _, err := io.ReadFull(u.nc, reply[k:]); err != nil {
		u.broken.Store(true)
		return nil, err
	}
	// An agent that sent more than one reply would answer every later
	// request with the reply to the one before. A refusal is where that
	// has been seen (ssh-agent answering out of turn after an error), so
	// that is where it is checked.
	if n == 1 && isFailure(reply[0]) && !u.drained() {
		u.broken.Store(true)
	}
	return reply, nil
}

// replyGrace is how long recv still waits for a reply after its caller's
// deadline passed.
const replyGrace = 20 * time.Millisecond

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (u *upstream) endCall() {
	u.lastUsed.Store(time.Now().UnixNano())
	u.callMu.Unlock()
}

// call is roundTrip under the ordinary deadline.
func (u *upstream) call(body []byte) ([]byte, error) { return u.roundTrip(body, u.timeout) }

// drained reports whether nothing is waiting to be read.
func (u *upstream) drained() bool {
	sc, ok := u.nc.(syscall.Conn)
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

func isFailure(t byte) bool { return t == msgFailure || t == msgExtensionFailure }

// List asks for the upstream identities and remembers the answer for
// the comments in the audit records of their use.
func (u *upstream) List() ([]identity, error) {
	reply, err := u.call([]byte{msgRequestIdentities})
	if err != nil {
		return nil, err
	}
	if _, err := u.keepList(reply); err != nil {
		return nil, err
	}
	return parseIdentitiesAnswer(reply)
}

// keepList checks an identities answer, keeps it and returns its count;
// a malformed one breaks the connection.
func (u *upstream) keepList(reply []byte) (int, error) {
	n, err := checkIdentitiesAnswer(reply)
	if err != nil {
		u.broken.Store(true)
		return 0, err
	}
	u.mu.Lock()
	u.lastList = reply
	u.mu.Unlock()
	return n, nil
}

// comment returns the comment the upstream agent listed for a key.
func (u *upstream) comment(blob []byte) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return commentOf(u.lastList, blob)
}

// statusOf turns a SUCCESS/FAILURE reply into an error.
func statusOf(reply []byte, err error) error {
	if err != nil {
		return err
	}
	if len(reply) == 1 && reply[0] == msgSuccess {
		return nil
	}
	return errUpstreamRefused
}

var errUpstreamRefused = errors.New("upstream agent refused the request")

// SignWithFlags is a typed signature request (tests and warden's own
// checks; the proxy path passes the client's frame unchanged).
func (u *upstream) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	body := ssh.Marshal(struct {
		Type  byte
		Blob  []byte
		Data  []byte
		Flags uint32
	}{msgSignRequest, key.Marshal(), data, uint32(flags)})
	reply, err := u.roundTrip(body, u.signTimeout)
	if err != nil {
		return nil, err
	}
	if reply[0] != msgSignResponse {
		if !isFailure(reply[0]) {
			u.broken.Store(true) // a reply of another kind: out of step
		}
		return nil, errUpstreamRefused
	}
	blob, rest, ok := parseString(reply[1:])
	if !ok || len(rest) != 0 {
		u.broken.Store(true)
		return nil, errUpstreamReply
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(blob, sig); err != nil {
		return nil, fmt.Errorf("%w: %v", errUpstreamReply, err)
	}
	return sig, nil
}

// Remove asks the upstream agent to drop one key.
func (u *upstream) Remove(key ssh.PublicKey) error {
	return statusOf(u.call(ssh.Marshal(struct {
		Type byte
		Blob []byte
	}{msgRemoveIdentity, key.Marshal()})))
}

// RemoveAll asks the upstream agent to drop every key.
func (u *upstream) RemoveAll() error { return statusOf(u.call([]byte{msgRemoveAllIdentities})) }

// Extension sends an extension request and returns the raw reply.
func (u *upstream) Extension(name string, contents []byte) ([]byte, error) {
	return u.call(extensionBody(name, contents))
}
