package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// worker is one client: its own connection, set up before timing starts.
// op is one request and its reply.
type worker interface {
	op() error
	close()
}

// sample is the outcome of one measured window (or one fixed count of
// operations).
type sample struct {
	Ops      int
	Errors   int
	FirstErr string
	Elapsed  time.Duration
	Lat      []time.Duration // sorted
	CPU      map[string]time.Duration
}

func (s *sample) opsPerSec() float64 { return float64(s.Ops) / s.Elapsed.Seconds() }

func (s *sample) pct(p float64) time.Duration {
	if len(s.Lat) == 0 {
		return 0
	}
	i := int(p * float64(len(s.Lat)-1))
	return s.Lat[i]
}

// cpuPerOp is the CPU time proc used per successful operation, in µs.
func (s *sample) cpuPerOp(name string) float64 {
	if s.Ops == 0 {
		return 0
	}
	return float64(s.CPU[name].Microseconds()) / float64(s.Ops)
}

// cpuSnapshot reads the CPU time of every watched process.
func cpuSnapshot(watch []*proc) (map[string]time.Duration, error) {
	m := map[string]time.Duration{}
	for _, p := range watch {
		t, err := cpuTime(p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s cpu: %w", p.name, err)
		}
		m[p.name] = t
	}
	return m, nil
}

func cpuDelta(before, after map[string]time.Duration) map[string]time.Duration {
	d := map[string]time.Duration{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

// runWindow sets up clients workers, runs them all for warmup, then
// measures for window. Only operations that start and end inside the
// window count; CPU of the watched processes is read at its edges.
func runWindow(clients int, warmup, window time.Duration, newWorker func(i int) (worker, error), watch []*proc) (*sample, error) {
	workers := make([]worker, 0, clients)
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	for i := range clients {
		w, err := newWorker(i)
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		workers = append(workers, w)
	}
	const (
		warming = iota
		measuring
		stopped
	)
	var phase atomic.Int32
	lats := make([][]time.Duration, clients)
	errs := make([]int, clients)
	firstErr := make([]error, clients)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := phase.Load()
				if p == stopped {
					return
				}
				t0 := time.Now()
				err := w.op()
				d := time.Since(t0)
				if p != measuring || phase.Load() != measuring {
					continue
				}
				if err != nil {
					errs[i]++
					if firstErr[i] == nil {
						firstErr[i] = err
					}
					continue
				}
				lats[i] = append(lats[i], d)
			}
		}()
	}
	time.Sleep(warmup)
	before, err := cpuSnapshot(watch)
	if err != nil {
		phase.Store(stopped)
		wg.Wait()
		return nil, err
	}
	t0 := time.Now()
	phase.Store(measuring)
	time.Sleep(window)
	phase.Store(stopped)
	elapsed := time.Since(t0)
	after, err := cpuSnapshot(watch)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	s := &sample{Elapsed: elapsed, CPU: cpuDelta(before, after)}
	for i := range clients {
		s.Lat = append(s.Lat, lats[i]...)
		s.Errors += errs[i]
		if firstErr[i] != nil && s.FirstErr == "" {
			s.FirstErr = firstErr[i].Error()
		}
	}
	slices.Sort(s.Lat)
	s.Ops = len(s.Lat)
	return s, nil
}

// runCount runs op n times from one client and measures each.
func runCount(n int, op func() error, watch []*proc) (*sample, error) {
	before, err := cpuSnapshot(watch)
	if err != nil {
		return nil, err
	}
	s := &sample{}
	t0 := time.Now()
	for range n {
		t := time.Now()
		if err := op(); err != nil {
			s.Errors++
			if s.FirstErr == "" {
				s.FirstErr = err.Error()
			}
			continue
		}
		s.Lat = append(s.Lat, time.Since(t))
	}
	s.Elapsed = time.Since(t0)
	after, err := cpuSnapshot(watch)
	if err != nil {
		return nil, err
	}
	s.CPU = cpuDelta(before, after)
	slices.Sort(s.Lat)
	s.Ops = len(s.Lat)
	return s, nil
}
