package agentproxy

import (
	"context"
	"sync"
	"time"
)

// Limits on the audit records a peer can cause: a forwarded channel or a
// same-uid process must not be able to fill the disk or rotate the log's
// history away with binds, refusals or hints. Records that a signature
// waits for (cert.used) are never limited: they are the signature's
// precondition, not its echo.
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

// rateLimiter is a token bucket. dropping is set at the first refusal and
// cleared only once the bucket is half full again, so a steady flood is
// one run, recorded once, not one run per refilled token.
type rateLimiter struct {
	mu       sync.Mutex
	rate     float64
	burst    float64
	tokens   float64
	last     time.Time
	dropping bool
}

func newRateLimiter(rate, burst float64) rateLimiter {
	return rateLimiter{rate: rate, burst: burst, tokens: burst}
}

// allow takes a token; first is true for the first refusal after a run
// of allowed calls.
func (l *rateLimiter) allow(now time.Time) (ok, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.dropping && l.tokens >= l.burst/2 {
		l.dropping = false // recovered: a new run will be recorded again
	}
	if l.tokens >= 1 {
		l.tokens--
		return true, false
	}
	first = !l.dropping
	l.dropping = true
	return false, first
}

// mayRecord reports whether the connection may write one more record of
// event now. When it may not, the first refusal of a run writes one
// audit.limited record naming the connection and the event; the records
// after it are dropped (and still logged at debug level).
func (c *conn) mayRecord(event string) bool {
	now := time.Now()
	ok, first := c.records.allow(now)
	scope := "connection"
	if ok {
		if ok, first = c.s.records.allow(now); !ok {
			scope = "agent"
		}
	}
	if ok {
		return true
	}
	if first {
		_ = c.s.record(context.Background(), evAuditLimited, map[string]any{
			"conn": c.id, "limited_event": event, "scope": scope, "caller": c.caller(),
		})
	}
	c.s.log.Debug("audit record dropped by the rate limit", "conn", c.id, "event", event, "scope", scope)
	return false
}
