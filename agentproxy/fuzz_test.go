package agentproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

// Seeds are shaped like real ssh and ssh-add traffic: a userauth request
// as ssh 9.2 sends it for a hostbound login, and a session-bind.
func FuzzParseUserauth(f *testing.F) {
	host := newHostKey(f)
	key := newHostKey(f).PublicKey()
	sid := bytes.Repeat([]byte{7}, 32)
	f.Add(userauthData(sid, "deploy", key, nil))
	f.Add(userauthData(sid, "deploy", key, host.PublicKey()))
	f.Add([]byte("SSHSIG"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseUserauth(data)
		if err == nil && (len(r.SessionID) == 0 || len(r.SessionID) > maxSessionIDLen) {
			t.Fatalf("accepted session id of %d bytes", len(r.SessionID))
		}
	})
}

func FuzzParseSessionBind(f *testing.F) {
	host := newHostKey(f)
	sid := bytes.Repeat([]byte{9}, 32)
	sig, _ := host.Sign(rand.Reader, sid)
	f.Add(ssh.Marshal(sessionBindMsg{HostKey: host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig)}))
	f.Add(ssh.Marshal(sessionBindMsg{HostKey: host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig), Forwarding: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseSessionBind(data)
		if err == nil {
			// Anything accepted must carry a signature that verifies.
			if len(b.SessionID) > maxSessionIDLen {
				t.Fatal("oversized session id accepted")
			}
		}
	})
}

// FuzzServeConnection feeds a whole byte stream to one connection of a
// real server: no panic, no hang, and replies only in well-formed frames.
func FuzzServeConnection(f *testing.F) {
	env := startServer(f, nil)
	frame := func(msgs ...[]byte) []byte {
		var out []byte
		for _, m := range msgs {
			out = binary.BigEndian.AppendUint32(out, uint32(len(m)))
			out = append(out, m...)
		}
		return out
	}
	sid := bytes.Repeat([]byte{3}, 32)
	sig, _ := env.host.Sign(rand.Reader, sid)
	bindMsg := append([]byte{msgExtension}, ssh.Marshal(struct {
		N string
		R []byte `ssh:"rest"`
	}{extSessionBind, ssh.Marshal(sessionBindMsg{HostKey: env.host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig)})})...)
	f.Add(frame([]byte{11}))                         // ssh-add -l
	f.Add(frame(bindMsg, []byte{11}))                // ssh: bind then list
	f.Add(frame([]byte{19}, []byte{22, 0, 0, 0, 0})) // remove all, lock
	f.Add(frame(append([]byte{msgExtension}, ssh.Marshal(struct{ N string }{extQuery})...)))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			c.Write(stream)
			c.(*net.UnixConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("server hung")
				}
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n == 0 || n > MaxMessageSize {
				t.Fatalf("reply frame of %d bytes", n)
			}
			if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
				return
			}
		}
	})
}

// Besides the seeds synthesized above, each target has a corpus recorded
// from real ssh, ssh-add and warden-agent traffic in testdata/fuzz
// (TestRecordSeeds in cmd/warden-agent, `make fuzz-seeds`). The tests
// below hold the recorded seeds to more than "no panic": what real
// OpenSSH sent must be accepted.

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestRecordedSessionBinds: every session-bind a real ssh sent (logins,
// ssh -J, ssh -A's forwarding bind) parses and its signature verifies.
func TestRecordedSessionBinds(t *testing.T) {
	seeds := fuzzseed.Recorded(t, "FuzzParseSessionBind", "ssh-")
	forwarding := 0
	for _, name := range sortedNames(seeds) {
		b, err := parseSessionBind(seeds[name])
		if err != nil {
			t.Errorf("%s: real session-bind refused: %v", name, err)
			continue
		}
		if b.Forwarding {
			forwarding++
		}
	}
	if forwarding == 0 {
		t.Errorf("no recorded forwarding bind (ssh -A)")
	}
}

// TestRecordedUserauth: the data of every sign request of a real ssh
// login parses as a userauth request whose session id is the one the
// same connection bound last.
func TestRecordedUserauth(t *testing.T) {
	signs := fuzzseed.Recorded(t, "FuzzParseUserauth", "ssh-")
	binds := fuzzseed.Recorded(t, "FuzzParseSessionBind", "ssh-")
	for _, name := range sortedNames(signs) {
		if strings.HasPrefix(name, "ssh-add-") {
			continue // ssh-add -T signs random data
		}
		r, err := parseUserauth(signs[name])
		if err != nil {
			t.Errorf("%s: real userauth request refused: %v", name, err)
			continue
		}
		conn, _, _ := strings.Cut(name, "-sign")
		var last []byte
		for i := 1; ; i++ {
			raw, ok := binds[conn+"-bind"+strconv.Itoa(i)]
			if !ok {
				break
			}
			last = raw
		}
		if last == nil {
			t.Errorf("%s: no recorded bind on its connection", name)
			continue
		}
		b, err := parseSessionBind(last)
		if err != nil {
			continue // reported by TestRecordedSessionBinds
		}
		if !bytes.Equal(b.SessionID, r.SessionID) {
			t.Errorf("%s: session id %x, the connection bound %x", name, r.SessionID, b.SessionID)
		}
		if r.Method != "publickey-hostbound-v00@openssh.com" && r.Method != "publickey" {
			t.Errorf("%s: method %q", name, r.Method)
		}
	}
}

// TestRecordedStreams replays every recorded client stream to a real
// server: the agent protocol is request and reply, so every request gets
// exactly one well-formed reply frame.
func TestRecordedStreams(t *testing.T) {
	env := startServer(t, nil)
	seeds := fuzzseed.Recorded(t, "FuzzServeConnection", "")
	for _, name := range sortedNames(seeds) {
		stream := seeds[name]
		requests := 0
		for rest := stream; len(rest) >= 4; {
			n := binary.BigEndian.Uint32(rest)
			if n == 0 || uint64(n) > uint64(len(rest)-4) {
				t.Fatalf("%s: recorded stream is not whole frames", name)
			}
			requests++
			rest = rest[4+n:]
		}
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(stream)
			c.(*net.UnixConn).CloseWrite()
		}()
		replies := 0
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("%s: server hung after %d replies", name, replies)
				}
				break
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n == 0 || n > MaxMessageSize {
				t.Errorf("%s: reply frame of %d bytes", name, n)
				break
			}
			if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
				t.Errorf("%s: short reply frame: %v", name, err)
				break
			}
			replies++
		}
		c.Close()
		if replies != requests {
			t.Errorf("%s: %d requests, %d replies", name, requests, replies)
		}
	}
}

// FuzzRouter sends one frame of any content to a real server with an
// upstream agent behind it: no panic, one reply, and every frame warden
// does not own reaches the upstream agent byte for byte, its reply coming
// back byte for byte (issue 13).
func FuzzRouter(f *testing.F) {
	upReply := []byte{msgSuccess}
	upSock, upLog := recordingUpstream(f, func(int, []byte) []byte { return frameOf(upReply...) })
	env := startServer(f, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	f.Add([]byte{msgRequestIdentities})
	f.Add(append([]byte{msgAddIDConstrained}, ssh.Marshal(struct{ T, P, A string }{ssh.KeyAlgoSKED25519, strings.Repeat("p", 32), "ssh:"})...))
	f.Add(append([]byte{msgAddSmartcardConstraint}, ssh.Marshal(struct {
		P, Pin string
		C      byte
		N      string
		B      bool
		S      string
	}{"/usr/lib/softhsm/libsofthsm2.so", "", constrainExtension, "associated-certs-v00@openssh.com", true, "certs"})...))
	f.Add([]byte{msgRemoveSmartcardKey, 0, 0, 0, 1, 'p', 0, 0, 0, 0})
	f.Add(extensionBody("custom@example.com", []byte{1, 2, 3}))
	f.Add(extensionBody(extQuery, nil))
	f.Add([]byte{200})
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > MaxMessageSize || (len(body) > 0 && body[0] == msgLock) {
			return // a lock would make every later frame fail
		}
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := len(upLog.snapshot())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(frameOf(body...)); err != nil {
			t.Fatal(err)
		}
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("no reply to %x: %v", body, err)
		}
		reply := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatal(err)
		}
		if !passesThrough(body) {
			return
		}
		if !bytes.Equal(reply, upReply) {
			t.Fatalf("reply %x to a frame warden does not own, want the upstream's %x", reply, upReply)
		}
		conns := upLog.snapshot()
		if len(conns) <= before || len(conns[len(conns)-1]) == 0 {
			t.Fatalf("frame %x did not reach the upstream agent", body)
		}
		msgs := conns[len(conns)-1]
		if got := msgs[len(msgs)-1]; !bytes.Equal(got, body) {
			t.Fatalf("frame changed on the way: sent %x, upstream got %x", body, got)
		}
	})
}

// passesThrough says which frames warden must pass upstream unchanged on
// an unbound connection of its own program: adds, PKCS#11, remove-all,
// extensions it does not own and message numbers it does not know.
func passesThrough(body []byte) bool {
	if len(body) == 0 {
		return false
	}
	switch t := body[0]; t {
	case msgAddIdentity, msgAddIDConstrained, msgAddSmartcardKey, msgAddSmartcardConstraint,
		msgRemoveSmartcardKey, msgRemoveAllIdentities:
		return true
	case msgExtension:
		name, _, err := parseExtension(body)
		return err == nil && name != extSessionBind && name != extQuery && !strings.HasSuffix(name, wardenExtSuffix)
	case msgFailure, msgSuccess, msgRequestIdentities, msgIdentitiesAnswer, msgSignRequest, msgSignResponse,
		msgRemoveIdentity, msgLock, msgUnlock, msgExtensionFailure, msgExtensionResponse:
		return false
	default:
		return !isLegacyV1(t)
	}
}
