package audit

// Event names. docs/audit.md lists the fields of each with an example.
const (
	EventAgentStart          = "agent.start"
	EventAgentStop           = "agent.stop"
	EventHint                = "hint"
	EventSessionBind         = "session.bind"
	EventCertIssued          = "cert.issued"
	EventCertIssueFailed     = "cert.issue_failed"
	EventCertUsed            = "cert.used"
	EventSignDenied          = "sign.denied"
	EventUpstreamUsed        = "upstream.used"
	EventKeyAdded            = "key.added"
	EventKeyRemoved          = "key.removed"
	EventAgentLocked         = "agent.locked"
	EventAgentUnlocked       = "agent.unlocked"
	EventPolicyReloaded      = "policy.reloaded"
	EventPolicyReloadFailed  = "policy.reload_failed"
	EventCatalogReloaded     = "catalog.reloaded"
	EventCatalogReloadFailed = "catalog.reload_failed"
	// EventRecovered is written by Open (or a later reopen) when it found a
	// torn last line, kept it aside and continued the chain.
	EventRecovered = "audit.recovered"
	// EventLimited is written once when a Limiter starts refusing records
	// a peer causes, in place of the first one refused: conn and caller
	// (for a per-connection limit), scope ("connection" or "global"),
	// limited_event (the event refused), rate, burst and dropped (the
	// limiter's refusals so far). Nothing more is written until the
	// limiter allows records again.
	EventLimited = "audit.limited"
)

// Events lists every event name this package defines, for completion and
// for validating --event.
var Events = []string{
	EventAgentStart, EventAgentStop, EventHint, EventSessionBind,
	EventCertIssued, EventCertIssueFailed, EventCertUsed, EventSignDenied,
	EventUpstreamUsed, EventKeyAdded, EventKeyRemoved, EventAgentLocked,
	EventAgentUnlocked, EventPolicyReloaded, EventPolicyReloadFailed,
	EventCatalogReloaded, EventCatalogReloadFailed, EventRecovered,
	EventLimited,
}

// Caller is the "caller" field of every event made on behalf of an agent
// connection: who asked, best effort from /proc. Pass it as
// fields["caller"]; Query's Caller filter and WriteTable read it.
type Caller struct {
	PID int    `json:"pid"`
	UID int    `json:"uid"`
	Exe string `json:"exe,omitempty"`
	// Chain is the process and its ancestors, nearest first, for example
	// "ssh(4242) ← git(4240) ← zsh(100)".
	Chain string `json:"chain,omitempty"`
}
