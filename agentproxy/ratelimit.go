package agentproxy

import (
	"context"
	"time"
)

// Limits on the audit records a peer can cause: a forwarded channel or a
// same-uid process must not be able to fill the disk or rotate the log's
// history away with binds, refusals or hints. Records that a signature
// or issuance waits for (cert.used, cert.issued) are never limited: they
// are its precondition, not its echo.
const (
	connRecordRate    = 20  // per second, per connection
	connRecordBurst   = 200 // per connection
	globalRecordRate  = 200 // per second, all connections
	globalRecordBurst = 2000
	// hintsPerConn: `warden-agent hint` sends one hint per connection.
	hintsPerConn = 4
	// Hints across connections: ssh runs one per connection it makes;
	// Ansible with many forks makes bursts.
	globalHintRate  = 50
	globalHintBurst = 500
)

// mayRecord reports whether the connection may write one more record of
// event now. When it may not, the first refusal of a run writes one
// audit.limited record naming the connection and the event; the records
// after it are dropped (and still logged at debug level).
func (c *conn) mayRecord(event string) bool {
	now := time.Now()
	lim, scope := c.records, "connection"
	ok, first := lim.Allow(now)
	if ok {
		lim, scope = c.s.records, "agent"
		ok, first = lim.Allow(now)
	}
	if ok {
		return true
	}
	if first {
		f := lim.LimitedFields(scope, event)
		f.String("conn", c.id)
		f.Object("caller", c.callerObject())
		_ = c.s.recordFields(context.Background(), evAuditLimited, f)
	}
	c.s.log.Debug("audit record dropped by the rate limit", "conn", c.id, "event", event, "scope", scope)
	return false
}
