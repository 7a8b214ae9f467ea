package signer

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newCacheIssuer(t *testing.T, clock *fakeClock) (*Cache, IssueFunc, *atomic.Int64) {
	ca, err := OpenLocalCA(filepath.Join(t.TempDir(), "ca"), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	issue := func(ctx context.Context, key CacheKey, eph *EphemeralKey) (*Issued, error) {
		n.Add(1)
		return ca.Issue(ctx, Request{PublicKey: eph.PublicKey(), Principals: []string{key.Principal}, TTL: 6 * time.Minute})
	}
	c := NewCache(CacheOptions{Now: clock.Now})
	t.Cleanup(c.Close)
	return c, issue, &n
}

func TestCacheReusesThenRefreshesAheadAndNeverServesExpired(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	c, issue, n := newCacheIssuer(t, clock)
	key := CacheKey{Route: "r", Principal: "alice"}
	ctx := context.Background()
	first, err := c.Get(ctx, key, issue)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Minute) // half the lifetime left: reuse
	if e, _ := c.Get(ctx, key, issue); e != first || n.Load() != 1 {
		t.Fatalf("reuse: issued %d, same entry %v", n.Load(), e == first)
	}
	clock.Advance(90 * time.Second) // a quarter left: still served, refresh starts
	if e, _ := c.Get(ctx, key, issue); e != first {
		t.Fatal("the current certificate was not served during refresh-ahead")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Current(key) == first {
		if time.Now().After(deadline) {
			t.Fatal("refresh-ahead did not replace the certificate")
		}
		time.Sleep(time.Millisecond)
	}
	if n.Load() != 2 {
		t.Fatalf("%d issuances, want 2", n.Load())
	}
	clock.Advance(7 * time.Minute) // everything expired
	if e := c.Lookup(first.Cert.Marshal()); e != nil {
		t.Fatal("expired certificate still found")
	}
	if len(c.Valid()) != 0 {
		t.Fatal("expired certificate listed")
	}
}

func TestCacheSingleIssuanceForConcurrentCallers(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	c, inner, n := newCacheIssuer(t, clock)
	gate := make(chan struct{})
	issue := func(ctx context.Context, k CacheKey, e *EphemeralKey) (*Issued, error) {
		<-gate
		return inner(ctx, k, e)
	}
	var wg sync.WaitGroup
	results := make([]*Entry, 100)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = c.Get(context.Background(), CacheKey{"r", "bob"}, issue)
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	for _, r := range results {
		if r == nil || r != results[0] {
			t.Fatal("callers got different or no certificates")
		}
	}
	if n.Load() != 1 {
		t.Fatalf("%d issuances, want 1", n.Load())
	}
}

func TestCacheBacksOffAfterFailure(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	c := NewCache(CacheOptions{Now: clock.Now})
	defer c.Close()
	var n atomic.Int64
	boom := errors.New("sealed")
	fail := func(context.Context, CacheKey, *EphemeralKey) (*Issued, error) { n.Add(1); return nil, boom }
	key := CacheKey{"r", "x"}
	if _, err := c.Get(context.Background(), key, fail); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Get(context.Background(), key, fail); !errors.Is(err, ErrBackoff) || !errors.Is(err, boom) {
			t.Fatalf("during back-off: err = %v", err)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("%d issuer calls during back-off, want 1", n.Load())
	}
	clock.Advance(backoffMax)
	c.Get(context.Background(), key, fail)
	if n.Load() != 2 {
		t.Fatalf("after back-off: %d calls, want 2", n.Load())
	}
}

func TestCacheWaiterDeadlineDoesNotCancelIssuance(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	c, inner, n := newCacheIssuer(t, clock)
	slow := func(ctx context.Context, k CacheKey, e *EphemeralKey) (*Issued, error) {
		time.Sleep(100 * time.Millisecond)
		return inner(ctx, k, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, CacheKey{"r", "y"}, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	e, err := c.Get(context.Background(), CacheKey{"r", "y"}, slow)
	if err != nil || e == nil || n.Load() != 1 {
		t.Fatalf("second caller: %v, issuances %d (want the first issuance to finish and be reused)", err, n.Load())
	}
}
