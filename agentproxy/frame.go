package agentproxy

// MaxMessageSize is OpenSSH's limit on one agent message (AGENT_MAX_LEN in
// ssh-agent.c, 256 KiB). The length is checked before a frame is
// allocated; x/crypto's server would accept 16 MiB.
const MaxMessageSize = 256 << 10
