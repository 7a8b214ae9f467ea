package agentproxy

import "github.com/netkingdom/ops-warden/audit"

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

// Events of the trust boundary.
const (
	// evRequestRefused: a request the connection may not make (trust.go).
	evRequestRefused = "request.refused"
	// evTargetRefused: a route's check refused the target (a principal
	// it does not allow, a host key it does not pin, a host certificate
	// that does not verify).
	evTargetRefused = "target.refused"
	// evAuditLimited: a peer caused more records than its rate allows;
	// written once per run of dropped records.
	evAuditLimited = audit.EventLimited
)
