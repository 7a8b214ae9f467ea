package agentproxy

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Limits from OpenSSH's ssh-agent.c (AGENT_MAX_SID_LEN,
// AGENT_MAX_SESSION_IDS).
const (
	maxSessionIDLen = 128
	maxBinds        = 16
)

// extSessionBind is the extension ssh sends after key exchange
// (PROTOCOL.agent, "session-bind@openssh.com").
const extSessionBind = "session-bind@openssh.com"

// sessionBind is one verified binding of a connection to an SSH session.
type sessionBind struct {
	HostKey   ssh.PublicKey
	SessionID []byte
	// Forwarding is true when the binding is for agent forwarding to that
	// host rather than for authenticating to it.
	Forwarding bool
}

// sessionBindMsg is the wire form:
//
//	string  hostkey
//	string  session identifier
//	string  signature
//	bool    is_forwarding
type sessionBindMsg struct {
	HostKey    []byte
	SessionID  []byte
	Signature  []byte
	Forwarding bool
}

var errBindRefused = errors.New("session-bind refused")

// parseSessionBind parses and verifies a session-bind request: the host's
// signature over the session id must verify with the host key, as
// process_ext_session_bind in ssh-agent.c requires.
func parseSessionBind(contents []byte) (*sessionBind, error) {
	var m sessionBindMsg
	if err := ssh.Unmarshal(contents, &m); err != nil {
		return nil, fmt.Errorf("%w: malformed: %v", errBindRefused, err)
	}
	if len(m.SessionID) == 0 || len(m.SessionID) > maxSessionIDLen {
		return nil, fmt.Errorf("%w: session id of %d bytes (1 to %d allowed)", errBindRefused, len(m.SessionID), maxSessionIDLen)
	}
	key, err := ssh.ParsePublicKey(m.HostKey)
	if err != nil {
		if alg, _, ok := parseString(m.HostKey); ok && len(alg) <= 64 {
			return nil, fmt.Errorf("%w: host key algorithm %q cannot be verified by warden: %v", errBindRefused, alg, err)
		}
		return nil, fmt.Errorf("%w: host key: %v", errBindRefused, err)
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(m.Signature, sig); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", errBindRefused, err)
	}
	if err := key.Verify(m.SessionID, sig); err != nil {
		return nil, fmt.Errorf("%w: host key signature over the session id does not verify: %v", errBindRefused, err)
	}
	return &sessionBind{HostKey: key, SessionID: m.SessionID, Forwarding: m.Forwarding}, nil
}

// addBind applies OpenSSH's rules for recording a new binding on a
// connection: at most maxBinds; no new binding once the connection was
// bound for authentication; the same session id again is accepted only
// with the same key (a no-op). It returns the new list and whether the
// binding was new.
func addBind(binds []sessionBind, b *sessionBind) ([]sessionBind, bool, error) {
	for _, old := range binds {
		if bytes.Equal(old.SessionID, b.SessionID) {
			if bytes.Equal(old.HostKey.Marshal(), b.HostKey.Marshal()) {
				return binds, false, nil
			}
			return binds, false, fmt.Errorf("%w: session id already bound to another host key", errBindRefused)
		}
		if !old.Forwarding {
			return binds, false, fmt.Errorf("%w: connection already bound for authentication", errBindRefused)
		}
	}
	if len(binds) >= maxBinds {
		return binds, false, fmt.Errorf("%w: more than %d session binds on one connection", errBindRefused, maxBinds)
	}
	return append(binds, *b), true, nil
}
