package agentproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
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
