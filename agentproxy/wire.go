package agentproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Agent protocol message numbers (PROTOCOL.agent, draft-miller-ssh-agent).
const (
	msgFailure                = 5  // SSH_AGENT_FAILURE
	msgSuccess                = 6  // SSH_AGENT_SUCCESS
	msgRequestIdentities      = 11 // SSH_AGENTC_REQUEST_IDENTITIES
	msgIdentitiesAnswer       = 12 // SSH_AGENT_IDENTITIES_ANSWER
	msgSignRequest            = 13 // SSH_AGENTC_SIGN_REQUEST
	msgSignResponse           = 14 // SSH_AGENT_SIGN_RESPONSE
	msgAddIdentity            = 17 // SSH_AGENTC_ADD_IDENTITY
	msgRemoveIdentity         = 18 // SSH_AGENTC_REMOVE_IDENTITY
	msgRemoveAllIdentities    = 19 // SSH_AGENTC_REMOVE_ALL_IDENTITIES
	msgAddSmartcardKey        = 20 // SSH_AGENTC_ADD_SMARTCARD_KEY
	msgRemoveSmartcardKey     = 21 // SSH_AGENTC_REMOVE_SMARTCARD_KEY
	msgLock                   = 22 // SSH_AGENTC_LOCK
	msgUnlock                 = 23 // SSH_AGENTC_UNLOCK
	msgAddIDConstrained       = 25 // SSH_AGENTC_ADD_ID_CONSTRAINED
	msgAddSmartcardConstraint = 26 // SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED
	msgExtension              = 27 // SSH_AGENTC_EXTENSION
	msgExtensionFailure       = 28 // SSH_AGENT_EXTENSION_FAILURE
	msgExtensionResponse      = 29 // SSH_AGENT_EXTENSION_RESPONSE
)

// isLegacyV1 reports the message numbers of protocol 1 (RSA1) keys, which
// OpenSSH removed: ssh-agent answers them with failure, and so does warden
// rather than passing a dead protocol to the user's agent.
func isLegacyV1(t byte) bool {
	switch t {
	case 1, 2, 3, 4, 7, 8, 9, 24:
		return true
	}
	return false
}

// Replies that are one byte long.
var (
	replyFailure = []byte{msgFailure}
	replySuccess = []byte{msgSuccess}
)

// identity is one entry of an identities answer, kept opaque: warden
// lists keys of types it cannot parse (security keys, ML-DSA) unchanged.
type identity struct {
	Blob, Comment []byte
}

// maxIdentities bounds an identities answer (ssh-agent's MAX_AGENT_IDENTITIES
// is 2048; the frame limit bounds it anyway).
const maxIdentities = 4096

var errMalformed = errors.New("malformed agent message")

// parseIdentitiesAnswer reads SSH_AGENT_IDENTITIES_ANSWER: uint32 count,
// then count × (string key blob, string comment).
func parseIdentitiesAnswer(b []byte) ([]identity, error) {
	if len(b) < 5 || b[0] != msgIdentitiesAnswer {
		return nil, fmt.Errorf("%w: not an identities answer", errMalformed)
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if n > maxIdentities || uint64(n)*8 > uint64(len(b)-5) {
		return nil, fmt.Errorf("%w: %d identities", errMalformed, n)
	}
	rest := b[5:]
	ids := make([]identity, 0, n)
	for i := uint32(0); i < n; i++ {
		var id identity
		var ok bool
		if id.Blob, rest, ok = parseString(rest); !ok {
			return nil, fmt.Errorf("%w: identity %d", errMalformed, i)
		}
		if id.Comment, rest, ok = parseString(rest); !ok {
			return nil, fmt.Errorf("%w: identity %d comment", errMalformed, i)
		}
		ids = append(ids, id)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(rest))
	}
	return ids, nil
}

// checkIdentitiesAnswer checks an SSH_AGENT_IDENTITIES_ANSWER as
// parseIdentitiesAnswer does, without copying it, and returns the count.
func checkIdentitiesAnswer(b []byte) (int, error) {
	if len(b) < 5 || b[0] != msgIdentitiesAnswer {
		return 0, fmt.Errorf("%w: not an identities answer", errMalformed)
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if n > maxIdentities || uint64(n)*8 > uint64(len(b)-5) {
		return 0, fmt.Errorf("%w: %d identities", errMalformed, n)
	}
	rest := b[5:]
	for i := uint32(0); i < n; i++ {
		var ok bool
		if _, rest, ok = parseString(rest); !ok {
			return 0, fmt.Errorf("%w: identity %d", errMalformed, i)
		}
		if _, rest, ok = parseString(rest); !ok {
			return 0, fmt.Errorf("%w: identity %d comment", errMalformed, i)
		}
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(rest))
	}
	return int(n), nil
}

// commentOf returns the comment of blob in a checked identities answer.
func commentOf(answer, blob []byte) string {
	if len(answer) < 5 {
		return ""
	}
	rest := answer[5:]
	for len(rest) > 0 {
		b, r, ok := parseString(rest)
		if !ok {
			return ""
		}
		c, r, ok := parseString(r)
		if !ok {
			return ""
		}
		if bytes.Equal(b, blob) {
			return string(c)
		}
		rest = r
	}
	return ""
}

// prependIdentities returns a checked identities answer holding n
// identities with ids in front of them, the upstream's bytes unchanged.
func prependIdentities(ids []identity, answer []byte, n int) []byte {
	if len(ids) == 0 {
		return answer
	}
	size := len(answer)
	for _, id := range ids {
		size += 8 + len(id.Blob) + len(id.Comment)
	}
	out := make([]byte, 0, size)
	out = append(out, msgIdentitiesAnswer)
	out = binary.BigEndian.AppendUint32(out, uint32(len(ids)+n))
	for _, id := range ids {
		out = appendString(out, id.Blob)
		out = appendString(out, id.Comment)
	}
	return append(out, answer[5:]...)
}

// identitiesAnswer encodes SSH_AGENT_IDENTITIES_ANSWER.
func identitiesAnswer(ids []identity) []byte {
	size := 5
	for _, id := range ids {
		size += 8 + len(id.Blob) + len(id.Comment)
	}
	out := make([]byte, 0, size)
	out = append(out, msgIdentitiesAnswer)
	out = binary.BigEndian.AppendUint32(out, uint32(len(ids)))
	for _, id := range ids {
		out = appendString(out, id.Blob)
		out = appendString(out, id.Comment)
	}
	return out
}

func appendString(out, s []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(s)))
	return append(out, s...)
}

// extensionBody encodes SSH_AGENTC_EXTENSION: string name, then the
// extension's contents as they are.
func extensionBody(name string, contents []byte) []byte {
	out := make([]byte, 0, 1+4+len(name)+len(contents))
	out = append(out, msgExtension)
	out = appendString(out, []byte(name))
	return append(out, contents...)
}

// signRequest is SSH_AGENTC_SIGN_REQUEST: string key blob, string data,
// uint32 flags.
type signRequest struct {
	Blob, Data []byte
	Flags      uint32
}

func parseSignRequest(b []byte) (*signRequest, error) {
	var r signRequest
	var ok bool
	rest := b[1:]
	if r.Blob, rest, ok = parseString(rest); !ok {
		return nil, fmt.Errorf("%w: sign request key", errMalformed)
	}
	if r.Data, rest, ok = parseString(rest); !ok {
		return nil, fmt.Errorf("%w: sign request data", errMalformed)
	}
	// OpenSSH's client always sends the flags; an older client may not.
	switch len(rest) {
	case 0:
	case 4:
		r.Flags = binary.BigEndian.Uint32(rest)
	default:
		return nil, fmt.Errorf("%w: sign request flags", errMalformed)
	}
	return &r, nil
}

// parseExtension splits SSH_AGENTC_EXTENSION into its name and contents.
func parseExtension(b []byte) (name string, contents []byte, err error) {
	n, rest, ok := parseString(b[1:])
	if !ok || len(n) == 0 || len(n) > 256 {
		return "", nil, fmt.Errorf("%w: extension name", errMalformed)
	}
	return string(n), rest, nil
}

// parseString reads an SSH string (uint32 length + bytes).
func parseString(in []byte) (out, rest []byte, ok bool) {
	if len(in) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(in)
	if uint64(n) > uint64(len(in)-4) {
		return nil, nil, false
	}
	return in[4 : 4+n], in[4+n:], true
}
