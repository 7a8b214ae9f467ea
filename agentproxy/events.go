package agentproxy

// Audit event names; docs/audit.md documents each with an example.
const (
	evHint          = "hint"
	evSessionBind   = "session.bind"
	evCertIssued    = "cert.issued"
	evIssueFailed   = "cert.issue_failed"
	evCertUsed      = "cert.used"
	evSignDenied    = "sign.denied"
	evUpstreamUsed  = "upstream.used"
	evKeyAdded      = "key.added"
	evKeyRemoved    = "key.removed"
	evAgentLocked   = "agent.locked"
	evAgentUnlocked = "agent.unlocked"
)
