package audit

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// Limiter is a token bucket for records a peer can cause (hints, refused
// requests): up to burst at once, then rate per second. One per
// connection and one shared by all of them bound what a forwarded channel
// or a local flood can write, and fsync, into the log.
//
// When Allow first refuses, it says so (firstDrop), and the caller writes
// one EventLimited record instead of the one refused. The run of refusals
// lasts until the bucket is half full again: a steady flood that gets a
// token back now and then is one run, recorded once, not one record per
// returning token. Dropped counts every refusal, for that record
// and for status.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu       sync.Mutex
	tokens   float64
	last     time.Time // when tokens was computed
	limiting bool      // refusing, and not yet back to half the burst
	dropped  uint64
}

// NewLimiter returns a limiter that allows burst records at once and rate
// records per second on average. A burst below 1 is 1; a rate of 0 or less
// allows burst records and then none.
func NewLimiter(rate float64, burst int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: max(rate, 0), burst: float64(burst), tokens: float64(burst)}
}

// Allow takes a token at time now. ok says whether the record may be
// written; firstDrop is true for the first refusal of a run, the one that
// should be replaced by an EventLimited record. A clock that goes
// backwards adds no tokens.
func (l *Limiter) Allow(now time.Time) (ok, firstDrop bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	if l.last.IsZero() || now.After(l.last) {
		l.last = now
	}
	if l.limiting && l.tokens >= l.burst/2 {
		l.limiting = false // recovered: a new run is recorded again
	}
	if l.tokens >= 1 {
		l.tokens--
		return true, false
	}
	l.dropped++
	first := !l.limiting
	l.limiting = true
	return false, first
}

// Dropped is how many records Allow has refused so far.
func (l *Limiter) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// LimitedFields starts the fields of the EventLimited record to write when
// Allow reports firstDrop: scope ("connection" or "global"),
// limited_event, rate (records a second; a string when not whole), burst
// and dropped. The caller adds conn and caller for a per-connection limit.
func (l *Limiter) LimitedFields(scope, limitedEvent string) *Fields {
	f := NewFields(256)
	f.String("scope", scope)
	f.String("limited_event", limitedEvent)
	if l.rate == math.Trunc(l.rate) && l.rate <= maxSafeInt {
		f.Int("rate", int64(l.rate))
	} else {
		f.String("rate", strconv.FormatFloat(l.rate, 'g', -1, 64))
	}
	f.Int("burst", int64(l.burst))
	f.Int("dropped", int64(min(l.Dropped(), maxSafeInt)))
	return f
}
