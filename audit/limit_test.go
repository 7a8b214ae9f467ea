package audit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestLimiter: a burst passes, the next record is refused with firstDrop
// once, later refusals are silent, tokens come back at the rate, and a
// new run of refusals after an allowed record reports firstDrop again.
func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(10, 5) // 10 a second, 5 at once
	for i := 0; i < 5; i++ {
		if ok, first := l.Allow(t0); !ok || first {
			t.Fatalf("record %d of the burst: ok %v first %v", i, ok, first)
		}
	}
	if ok, first := l.Allow(t0); ok || !first {
		t.Fatalf("6th record at once: ok %v first %v, want refused and first", ok, first)
	}
	for i := 0; i < 100; i++ {
		if ok, first := l.Allow(t0.Add(time.Duration(i) * time.Millisecond)); ok || first {
			t.Fatalf("refusal %d within 100 ms: ok %v first %v, want silent refusal", i, ok, first)
		}
	}
	if l.Dropped() != 101 {
		t.Fatalf("Dropped = %d, want 101", l.Dropped())
	}
	// 100 ms later one token is back (the refusals above spent none).
	t1 := t0.Add(100 * time.Millisecond)
	if ok, _ := l.Allow(t1); !ok {
		t.Fatal("no token after 100 ms at 10/s")
	}
	if ok, first := l.Allow(t1); ok || first {
		t.Fatalf("one token back does not end the run: ok %v first %v, want a silent refusal", ok, first)
	}
	// Half the burst back (3 of 5 at 10/s: 300 ms) ends it: the next
	// refusal starts a new run.
	t1b := t1.Add(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow(t1b); !ok {
			t.Fatalf("token %d after 300 ms refused", i)
		}
	}
	if ok, first := l.Allow(t1b); ok || !first {
		t.Fatalf("after the bucket recovered the next refusal is a new run: ok %v first %v", ok, first)
	}
	t1 = t1b
	// A long pause refills to the burst, not beyond.
	t2 := t1.Add(time.Hour)
	n := 0
	for {
		if ok, _ := l.Allow(t2); !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Fatalf("after an hour %d records pass at once, want the burst of 5", n)
	}
	// A clock going backwards adds nothing.
	if ok, _ := l.Allow(t0); ok {
		t.Fatal("a clock going backwards gave a token")
	}
}

// TestLimiterSteadyRate: over 10 s at 1000 attempts a second, a 50/s
// limiter with a burst of 20 lets through the burst plus 50 a second.
func TestLimiterSteadyRate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(50, 20)
	allowed, firsts := 0, 0
	for i := 0; i < 10000; i++ {
		ok, first := l.Allow(t0.Add(time.Duration(i) * time.Millisecond))
		if ok {
			allowed++
		}
		if first {
			firsts++
		}
	}
	if want := 20 + 50*10; allowed < want-2 || allowed > want+1 {
		t.Fatalf("%d allowed, want about %d", allowed, want)
	}
	// A steady flood is one run: the bucket never gets back to half full.
	if firsts != 1 {
		t.Fatalf("%d firstDrop in a steady flood, want 1", firsts)
	}
	if got := l.Dropped(); got != uint64(10000-allowed) {
		t.Fatalf("Dropped %d, want %d", got, 10000-allowed)
	}
}

// TestLimiterConcurrent: shared by many connections at once, the limiter
// allows exactly the burst and reports exactly one firstDrop.
func TestLimiterConcurrent(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(0, 100)
	var mu sync.Mutex
	allowed, firsts := 0, 0
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				ok, first := l.Allow(now)
				mu.Lock()
				if ok {
					allowed++
				}
				if first {
					firsts++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 100 || firsts != 1 || l.Dropped() != 700 {
		t.Fatalf("allowed %d, firstDrop %d, dropped %d; want 100, 1, 700", allowed, firsts, l.Dropped())
	}
}

// TestLimitedRecord: the record a caller writes on firstDrop carries the
// fields docs/audit.md lists for audit.limited, and verifies.
func TestLimitedRecord(t *testing.T) {
	lim := NewLimiter(0.5, 3)
	now := time.Now()
	for i := 0; i < 3; i++ {
		lim.Allow(now)
	}
	if _, first := lim.Allow(now); !first {
		t.Fatal("no firstDrop")
	}
	l := openTest(t, Options{})
	f := lim.LimitedFields("connection", EventHint)
	f.String("conn", "c23")
	rec, err := l.AppendFields(context.Background(), EventLimited, f)
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, string(rec.Raw))
	for k, want := range map[string]string{"scope": "connection", "limited_event": "hint", "rate": "0.5", "burst": "3", "dropped": "1", "conn": "c23"} {
		if v := got.FieldString(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	mustVerify(t, l.Status().Path, 1)
}
