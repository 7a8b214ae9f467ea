package agentproxy

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

// Extensions warden adds to the agent protocol (PROTOCOL.agent §
// "extension mechanism": names in the name@domain form). Requests and
// replies carry JSON; a reply is SSH_AGENT_SUCCESS followed by the JSON.
const (
	// ExtHint tells the agent what an ssh process is about to connect to.
	ExtHint = hintcall.ExtName
	// extQuery lists the extensions this agent supports (OpenSSH 10.3).
	extQuery = "query"
)

// HintRequest is sent by `warden-agent hint` and `warden-hint` from ssh's
// Match exec; HintReply is the answer.
type (
	HintRequest = hintcall.Request
	HintReply   = hintcall.Reply
)

// ErrNoAgent means nothing answers on the socket.
var ErrNoAgent = hintcall.ErrNoAgent

// maxReply bounds replies read by CallExtension.
const maxReply = MaxMessageSize

// CallExtension sends one warden extension request over the agent socket
// and decodes the JSON reply. It is the client half used by the CLI.
func CallExtension(socket, name string, req, reply any, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return fmt.Errorf("%w on %s: %v", ErrNoAgent, socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := ssh.Marshal(struct {
		Type     byte
		Name     string
		Contents []byte `ssh:"rest"`
	}{msgExtension, name, body})
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := c.Write(append(frame, msg...)); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxReply {
		return fmt.Errorf("agent on %s: reply of %d bytes", socket, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("agent on %s: %w", socket, err)
	}
	switch buf[0] {
	case msgSuccess:
	case msgFailure:
		return fmt.Errorf("agent on %s does not support %s (is it warden-agent?)", socket, name)
	default:
		return fmt.Errorf("agent on %s refused %s", socket, name)
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(buf[1:], reply); err != nil {
		return fmt.Errorf("agent on %s: bad reply: %w", socket, err)
	}
	return nil
}

// jsonReply frames a JSON extension reply.
func jsonReply(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgSuccess}, b...), nil
}

// IsWarden reports whether the agent on socket is a warden-agent: it
// lists ExtHint in its answer to the "query" extension. Used to refuse an
// upstream that would loop back into warden.
func IsWarden(socket string, timeout time.Duration) bool {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	reply, err := agent.NewClient(struct {
		io.Reader
		io.Writer
	}{c, c}).Extension(extQuery, nil)
	if err != nil {
		return false
	}
	// Both forms: OpenSSH's (EXTENSION_RESPONSE "query" names…) and the
	// SUCCESS names… that warden answered before.
	return slices.Contains(parseQueryReply(reply), ExtHint)
}
