package agentproxy

import (
	"sync"
	"time"
)

// latencyBuckets are the upper bounds of the issuance latency histogram,
// in seconds (Prometheus "le" labels).
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyHistogram counts issuance latencies in fixed buckets: constant
// memory however long the agent runs.
type latencyHistogram struct {
	mu     sync.Mutex // guards the fields below
	counts []uint64   // per bucket; the last entry is +Inf
	sum    float64
	n      uint64
}

func newLatencyHistogram() *latencyHistogram {
	return &latencyHistogram{counts: make([]uint64, len(latencyBuckets)+1)}
}

func (h *latencyHistogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += s
	h.n++
	h.mu.Unlock()
}

// Histogram is a snapshot: cumulative counts per upper bound, as
// Prometheus exposes them, plus estimated quantiles.
type Histogram struct {
	Buckets []HistogramBucket `json:"buckets"`
	Count   uint64            `json:"count"`
	SumSec  float64           `json:"sum_seconds"`
	// P50Sec and P99Sec are the upper bounds of the buckets holding those
	// quantiles (0 with no observations; -1 when beyond the last bound).
	P50Sec float64 `json:"p50_seconds"`
	P99Sec float64 `json:"p99_seconds"`
}

// HistogramBucket is one cumulative bucket.
type HistogramBucket struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

func (h *latencyHistogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Histogram{Count: h.n, SumSec: h.sum}
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i]
		out.Buckets = append(out.Buckets, HistogramBucket{LE: le, Count: cum})
	}
	out.P50Sec, out.P99Sec = h.quantileLocked(0.5), h.quantileLocked(0.99)
	return out
}

func (h *latencyHistogram) quantileLocked(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i]
		if cum >= rank {
			return le
		}
	}
	return -1
}
