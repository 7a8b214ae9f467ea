package agentproxy

import (
	"encoding/json"
	"io"
	"net"
	"slices"
	"time"

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

// CallExtension sends one warden extension request over the agent socket
// and decodes the JSON reply. It is the client half used by the CLI.
func CallExtension(socket, name string, req, reply any, timeout time.Duration) error {
	return hintcall.CallExtension(socket, name, req, reply, timeout)
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
