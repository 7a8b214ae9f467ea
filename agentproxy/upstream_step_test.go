package agentproxy

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/catalog"
	"golang.org/x/crypto/ssh"
)

// stepUpstream is a unix-socket agent that answers each request with
// reply(n) (n counts requests over all connections, from 0) and counts
// the connections it accepted.
func stepUpstream(t *testing.T, reply func(n int) []byte) (sock string, accepted *atomic.Int32) {
	t.Helper()
	var requests atomic.Int32
	sock, conns := recordingUpstream(t, func(int, []byte) []byte { return reply(int(requests.Add(1) - 1)) })
	accepted = new(atomic.Int32)
	conns.mu.Lock()
	conns.accepted = accepted
	conns.mu.Unlock()
	return sock, accepted
}

// upstreamLog is what a recordingUpstream received: each connection's
// request bodies, in order.
type upstreamLog struct {
	mu       sync.Mutex
	conns    [][][]byte
	accepted *atomic.Int32 // if set, counts connections
}

func (l *upstreamLog) snapshot() [][][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([][][]byte, len(l.conns))
	for i, c := range l.conns {
		out[i] = slices.Clone(c)
	}
	return out
}

// recordingUpstream is a unix-socket agent that records every request and
// answers it with reply(conn, body): nil hangs up, an empty reply answers
// nothing (the call times out).
func recordingUpstream(t testing.TB, reply func(conn int, body []byte) []byte) (string, *upstreamLog) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "step.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	log := &upstreamLog{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			log.mu.Lock()
			idx := len(log.conns)
			log.conns = append(log.conns, nil)
			if log.accepted != nil {
				log.accepted.Add(1)
			}
			log.mu.Unlock()
			go func() {
				defer c.Close()
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(c, body); err != nil {
						return
					}
					log.mu.Lock()
					log.conns[idx] = append(log.conns[idx], body)
					log.mu.Unlock()
					out := reply(idx, body)
					if out == nil {
						return // hang up
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return sock, log
}

func frameOf(body ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestUpstreamRefusalKeepsConnection: a plain SSH_AGENT_FAILURE leaves the
// stream in step, so the connection (and the session binds the upstream
// agent holds for it) is kept; a hang-up or a reply left unread breaks it.
func TestUpstreamRefusalKeepsConnection(t *testing.T) {
	key := newHostKey(t).PublicKey()
	for _, tc := range []struct {
		name       string
		reply      []byte // the first reply; nil hangs up
		wantBroken bool
	}{
		{"failure", frameOf(msgFailure), false},
		{"extension failure", frameOf(msgExtensionFailure), false},
		{"hang-up", nil, true},
		{"oversized reply", binary.BigEndian.AppendUint32(nil, 17<<20), true},
		{"truncated reply", append(binary.BigEndian.AppendUint32(nil, 10), msgFailure), true},
		// Two replies to one request: kept, every later request would
		// read the answer to the one before.
		{"two replies", append(frameOf(msgFailure), frameOf(msgFailure)...), true},
		// A whole reply of the wrong kind may be an answer out of turn.
		{"reply of another kind", frameOf(msgSuccess), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, _ := stepUpstream(t, func(n int) []byte {
				if n == 0 {
					return tc.reply
				}
				return frameOf(msgSuccess)
			})
			up, err := dialUpstream(sock, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer up.close()
			if _, err := up.SignWithFlags(key, []byte("data"), 0); err == nil {
				t.Fatal("sign succeeded; want the refusal")
			}
			if got := up.broken.Load(); got != tc.wantBroken {
				t.Fatalf("broken = %v after %s, want %v", got, tc.name, tc.wantBroken)
			}
			if !tc.wantBroken {
				// The same connection answers the next request.
				if err := up.RemoveAll(); err != nil {
					t.Fatalf("next request on the kept connection: %v", err)
				}
				if up.broken.Load() {
					t.Fatal("broken after a successful request")
				}
			}
		})
	}
}

// TestUpstreamRefusalThenSignSameConnection runs the sequence of the
// e2e case: a bind, a refused sign, another sign, all on one upstream
// connection.
func TestUpstreamRefusalThenSignSameConnection(t *testing.T) {
	sock, accepted := stepUpstream(t, func(n int) []byte {
		if n == 1 {
			return frameOf(msgFailure)
		}
		return frameOf(msgSuccess)
	})
	up, err := dialUpstream(sock, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	if _, err := up.Extension(extSessionBind, []byte("bind")); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := up.Remove(newHostKey(t).PublicKey()); err == nil {
		t.Fatal("want the refusal")
	}
	if err := up.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if up.broken.Load() || accepted.Load() != 1 {
		t.Fatalf("broken=%v, %d connections; want one kept connection", up.broken.Load(), accepted.Load())
	}
}

// TestUpstreamRedialReplaysBinds: when the upstream connection breaks (a
// call timed out), the next one is sent the client connection's session
// binds before anything else; ssh-agent keeps binds per connection and
// refuses destination-restricted keys on an unbound one.
func TestUpstreamRedialReplaysBinds(t *testing.T) {
	sock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte {
		// PROTOCOL.agent: 13 sign request, 11 request identities, 12
		// identities answer.
		switch body[0] {
		case 13:
			return []byte{} // never answered: the call times out
		case 11:
			return frameOf(12, 0, 0, 0, 0)
		}
		return frameOf(msgSuccess)
	})
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Upstream = sock
		cfg.UpstreamTimeout = 300 * time.Millisecond
		cfg.UpstreamSignTimeout = 300 * time.Millisecond
	})
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sign(newHostKey(t).PublicKey(), []byte("data")); err == nil {
		t.Fatal("sign through a silent upstream succeeded")
	}
	if _, err := a.List(); err != nil {
		t.Fatal(err)
	}
	conns := upLog.snapshot()
	if len(conns) != 2 {
		t.Fatalf("%d upstream connections, want 2 (the first broken by the timeout)", len(conns))
	}
	isBind := func(m []byte) bool {
		var ext struct {
			Name string
			Rest []byte `ssh:"rest"`
		}
		return len(m) > 0 && m[0] == msgExtension && ssh.Unmarshal(m[1:], &ext) == nil && ext.Name == extSessionBind
	}
	first, second := conns[0], conns[1]
	if len(first) < 1 || !isBind(first[0]) {
		t.Fatalf("first upstream connection did not start with the bind (%d requests)", len(first))
	}
	if len(second) < 2 || !isBind(second[0]) || string(second[0]) != string(first[0]) {
		t.Fatalf("the new upstream connection did not get the bind again first: %d requests", len(second))
	}
	if second[1][0] != 11 {
		t.Fatalf("after the bind, request type %d, want the list", second[1][0])
	}
}
