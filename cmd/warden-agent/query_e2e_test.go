package main

// Frames built by hand (issue 13): the "query" extension, and a
// session-bind with a host key algorithm warden does not know.
//
// The "query" extension: OpenSSH 10.3's ssh-add -Q sends
// SSH_AGENTC_EXTENSION "query" and expects SSH_AGENT_EXTENSION_RESPONSE
// (29), the string "query", then one string per extension name
// (PROTOCOL.agent, ssh-agent.c process_ext_query). Through warden the
// names are warden's own merged with the upstream agent's. OpenSSH 9.2's
// ssh-agent does not answer "query" and its ssh-add has no -Q, so the
// frames are built by hand here, and the 10.x upstream is an agent in this
// file that answers as OpenSSH 10.3 does.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/agentproxy"
)

const (
	agentFailure           = 5
	agentRequestIdentities = 11
	agentIdentitiesAnswer  = 12
	agentExtension         = 27
	agentExtensionResponse = 29 // SSH_AGENT_EXTENSION_RESPONSE, OpenSSH 10.3
)

// agentString is an SSH wire string.
func agentString(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// agentRoundTrip sends one agent message and returns the reply's contents
// (type byte first).
func agentRoundTrip(socket string, msg []byte) ([]byte, error) {
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
		return nil, err
	}
	return readAgentFrame(c)
}

func readAgentFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	l := binary.BigEndian.Uint32(n[:])
	if l == 0 || l > 256*1024 {
		return nil, fmt.Errorf("agent frame of %d bytes", l)
	}
	b := make([]byte, l)
	_, err := io.ReadFull(r, b)
	return b, err
}

// parseQueryReply checks a query reply's form and returns its names.
func parseQueryReply(b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, errors.New("empty reply")
	}
	if b[0] != agentExtensionResponse {
		return nil, fmt.Errorf("reply type %d, want SSH_AGENT_EXTENSION_RESPONSE (%d)", b[0], agentExtensionResponse)
	}
	var strs []string
	rest := b[1:]
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, fmt.Errorf("truncated string length in %x", b)
		}
		l := binary.BigEndian.Uint32(rest)
		if uint64(l) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("string of %d bytes overruns the reply", l)
		}
		strs = append(strs, string(rest[4:4+l]))
		rest = rest[4+l:]
	}
	if len(strs) == 0 || strs[0] != "query" {
		return nil, fmt.Errorf("reply does not start with the string \"query\": %q", strs)
	}
	return strs[1:], nil
}

// serveFakeAgent runs an agent on a new socket in dir that answers each
// frame with reply(frame), until the test ends.
func serveFakeAgent(t *testing.T, sock string, reply func(m []byte) []byte) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					m, err := readAgentFrame(c)
					if err != nil {
						return
					}
					r := reply(m)
					c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(r))), r...))
				}
			}()
		}
	}()
}

// startQueryAgent is an upstream agent that answers "query" as OpenSSH
// 10.3's ssh-agent does, with names, an empty identity list, and failure
// to everything else.
func startQueryAgent(t *testing.T, dir string, names ...string) string {
	t.Helper()
	sock := filepath.Join(dir, "q.sock")
	serveFakeAgent(t, sock, func(m []byte) []byte {
		switch {
		case m[0] == agentRequestIdentities:
			return []byte{agentIdentitiesAnswer, 0, 0, 0, 0}
		case m[0] == agentExtension && len(m) >= 5 && string(m[5:]) == "query":
			reply := append([]byte{agentExtensionResponse}, agentString("query")...)
			for _, n := range names {
				reply = append(reply, agentString(n)...)
			}
			return reply
		}
		return []byte{agentFailure}
	})
	return sock
}

// TestQueryExtension: the raw reply to "query" through warden is type 29,
// "query", and the names of warden's extensions plus the upstream
// agent's: a real OpenSSH 9.2 ssh-agent (which answers "query" with
// failure, so contributes no names) and an OpenSSH 10.3-style agent.
func TestQueryExtension(t *testing.T) {
	needPrograms(t, "ssh-agent")
	query := append([]byte{agentExtension}, agentString("query")...)
	own := []string{"query", "session-bind@openssh.com", agentproxy.ExtHint}

	t.Run("ssh-agent-9.2", func(t *testing.T) {
		e := newTestEnv(t)
		up := startSSHAgentAt(t, e, "up.sock")
		a := startAgent(t, e, nil, "--upstream", up.socket)
		b, err := agentRoundTrip(a.socket, query)
		if err != nil {
			t.Fatal(err)
		}
		names, err := parseQueryReply(b)
		if err != nil {
			t.Fatalf("query through warden: %v (reply %x)", err, b)
		}
		for _, n := range own {
			if !slices.Contains(names, n) {
				t.Errorf("query through warden lists %q, missing warden's %q", names, n)
			}
		}
	})

	t.Run("ssh-agent-10.3", func(t *testing.T) {
		e := newTestEnv(t)
		upstreamOnly := []string{"query", "session-bind@openssh.com", "upstream-only@example.org"}
		up := startQueryAgent(t, e.dir, upstreamOnly...)
		if b, err := agentRoundTrip(up, query); err != nil || b[0] != agentExtensionResponse {
			t.Fatalf("the 10.3-style upstream itself: %x, %v", b, err)
		}
		a := startAgent(t, e, nil, "--upstream", up)
		b, err := agentRoundTrip(a.socket, query)
		if err != nil {
			t.Fatal(err)
		}
		names, err := parseQueryReply(b)
		if err != nil {
			t.Fatalf("query through warden: %v (reply %x)", err, b)
		}
		for _, n := range append(own, "upstream-only@example.org") {
			if !slices.Contains(names, n) {
				t.Errorf("query through warden lists %q, missing %q (warden's and the upstream's names merged)", names, n)
			}
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Errorf("query through warden lists %q twice: %q", n, names)
			}
			seen[n] = true
		}
		// ssh-add -Q (OpenSSH 10.3 and later) prints the same names.
		r := e.sshAdd(a.socket, nil, "-Q")
		switch {
		case r.code != 0 && (strings.Contains(r.stderr, "unknown option -- Q") || strings.Contains(r.stderr, "illegal option")):
			t.Logf("this ssh-add has no -Q (before OpenSSH 10.3): the raw reply above is the check")
		case r.code != 0 || !strings.Contains(r.stdout, "upstream-only@example.org") || !strings.Contains(r.stdout, agentproxy.ExtHint):
			t.Errorf("ssh-add -Q through warden: want warden's and the upstream's extensions: %s", r)
		}
	})
}

// recordingAgent is an upstream agent that keeps every frame it receives,
// answers REQUEST_IDENTITIES with no keys and every extension with
// SSH_AGENT_SUCCESS, as an agent that took the frame would.
type recordingAgent struct {
	socket string
	mu     sync.Mutex
	frames [][]byte
}

func startRecordingAgent(t *testing.T, dir string) *recordingAgent {
	t.Helper()
	ra := &recordingAgent{socket: filepath.Join(dir, "rec.sock")}
	serveFakeAgent(t, ra.socket, func(m []byte) []byte {
		ra.mu.Lock()
		ra.frames = append(ra.frames, m)
		ra.mu.Unlock()
		switch m[0] {
		case agentRequestIdentities:
			return []byte{agentIdentitiesAnswer, 0, 0, 0, 0}
		case agentExtension:
			return []byte{6} // SSH_AGENT_SUCCESS
		}
		return []byte{agentFailure}
	})
	return ra
}

func (ra *recordingAgent) received(msg []byte) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return slices.ContainsFunc(ra.frames, func(f []byte) bool { return bytes.Equal(f, msg) })
}

// TestE2EUnknownBindForwarded: a session-bind whose host key warden
// cannot parse (OpenSSH 10.5's ssh-mldsa44-ed25519@openssh.com, frame
// built by hand as PROTOCOL.agent §session-bind lays it out) reaches the
// upstream agent byte for byte, so the user's agent applies its own
// destination constraints, and warden records it as unverified, naming
// the algorithm (issue 13 item 2).
func TestE2EUnknownBindForwarded(t *testing.T) {
	e := newTestEnv(t)
	up := startRecordingAgent(t, e.dir)
	a := startAgent(t, e, nil, "--upstream", up.socket)

	const alg = "ssh-mldsa44-ed25519@openssh.com"
	pub := bytes.Repeat([]byte{0x5a}, 1312+32) // ML-DSA-44 public key, then Ed25519's
	hostKey := append(agentString(alg), agentString(string(pub))...)
	sig := append(agentString(alg), agentString(string(bytes.Repeat([]byte{0xa5}, 2420+64)))...)
	sid := bytes.Repeat([]byte{0x11}, 32)
	bind := append([]byte{agentExtension}, agentString("session-bind@openssh.com")...)
	bind = append(bind, agentString(string(hostKey))...)
	bind = append(bind, agentString(string(sid))...)
	bind = append(bind, agentString(string(sig))...)
	bind = append(bind, 0) // is_forwarding = false

	c, err := net.DialTimeout("unix", a.socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	for _, msg := range [][]byte{bind, {agentRequestIdentities}} {
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
			t.Fatal(err)
		}
		if _, err := readAgentFrame(c); err != nil {
			t.Fatalf("reply to message type %d: %v", msg[0], err)
		}
	}
	if !waitFor(5*time.Second, func() bool { return up.received(bind) }) {
		t.Errorf("the upstream agent did not receive the %s session-bind unchanged", alg)
	}
	var rec auditRecord
	for _, r := range events(a.audit(t), "session.bind") {
		rec = r
	}
	if rec == nil {
		t.Fatalf("no session.bind record for the %s bind", alg)
	}
	if v, _ := rec["verified"].(bool); v {
		t.Errorf("a bind warden cannot verify is recorded as verified: %v", rec)
	}
	if !strings.Contains(rec.str("reason"), alg) {
		t.Errorf("the session.bind record's reason %q does not name the algorithm %s", rec.str("reason"), alg)
	}
}
