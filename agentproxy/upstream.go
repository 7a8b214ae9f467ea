package agentproxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// upstream is one connection to the user's own agent. Every call has a
// deadline; a call that times out leaves the stream out of step, so the
// connection is marked broken and the next call dials again.
type upstream struct {
	nc      net.Conn
	client  agent.ExtendedAgent
	timeout time.Duration
	broken  atomic.Bool

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
	rw := struct {
		io.Reader
		io.Writer
	}{nc, nc}
	return &upstream{nc: nc, client: agent.NewClient(rw), timeout: timeout}, nil
}

func (u *upstream) close() { u.nc.Close() }

// call runs f under the deadline. After any error the connection is
// marked broken and the next call dials again: x/crypto's client does not
// wrap its transport errors, so a dead or restarted agent (EOF, reset), a
// timeout or an oversized reply cannot be told from a plain refusal, and
// a fresh unix-socket connection costs little.
func (u *upstream) call(f func() error) error {
	u.nc.SetDeadline(time.Now().Add(u.timeout))
	err := f()
	if err != nil {
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
	err = u.call(func() error { sig, err = u.client.SignWithFlags(key, data, flags); return err })
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
