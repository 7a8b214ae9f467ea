package signer

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// CacheKey identifies one certificate target: a route and a principal.
type CacheKey struct {
	Route     string
	Principal string
}

// Entry is a cached certificate and the in-memory key it certifies.
type Entry struct {
	Key    CacheKey
	Cert   *ssh.Certificate
	Issued *Issued
	// Signer signs with the ephemeral key, presenting the certificate.
	Signer ssh.Signer
	// Ephemeral is the private half; it stays in memory.
	Ephemeral *EphemeralKey
	IssuedAt  time.Time
	// Blob is the certificate's wire form and Fingerprint the SHA256
	// fingerprint of its key (KeyFingerprint), computed once: every list
	// and signature needs them.
	Blob        []byte
	Fingerprint string
}

// ValidBefore is the end of the certificate's validity.
func (e *Entry) ValidBefore() time.Time { return time.Unix(int64(e.Cert.ValidBefore), 0) }

// Lifetime is the span from issuance to expiry.
func (e *Entry) Lifetime() time.Duration { return e.ValidBefore().Sub(e.IssuedAt) }

// ValidAt reports whether the certificate may be listed at t.
func (e *Entry) ValidAt(t time.Time) bool {
	return t.Before(e.ValidBefore()) && !t.Before(time.Unix(int64(e.Cert.ValidAfter), 0))
}

// IssueFunc obtains a certificate for key's target, certifying eph.
type IssueFunc func(ctx context.Context, key CacheKey, eph *EphemeralKey) (*Issued, error)

// CacheOptions configures a Cache.
type CacheOptions struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IssueTimeout bounds one issuance, independent of any one waiter.
	IssueTimeout time.Duration
	// MinRemaining: a certificate with less validity left than this is not
	// handed out (a login takes a few seconds). Default 15s.
	MinRemaining time.Duration
}

// Cache keeps one certificate per (route, principal). A certificate is
// reused while more than a third of its lifetime remains; past that it is
// still handed out while a background refresh runs, and it is never handed
// out once less than MinRemaining is left. Concurrent requests for the same
// target share one issuance. After a failed issuance, further attempts for
// that target wait out a short back-off with jitter, so an issuer outage
// does not turn into a storm of sign requests.
//
// Lock order: mu only; it is never held across an issuance.
type Cache struct {
	opts   CacheOptions
	ctx    context.Context // parent of every issuance; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	entries  map[CacheKey]*Entry
	byBlob   map[string]*Entry // every unexpired certificate ever handed out
	inflight map[CacheKey]*issueCall
	failures map[CacheKey]*failure
}

type issueCall struct {
	done  chan struct{}
	entry *Entry
	err   error
}

type failure struct {
	err   error
	until time.Time
	delay time.Duration
}

// Back-off after failed issuance: first retry allowed after backoffMin,
// doubling up to backoffMax.
const (
	backoffMin = 500 * time.Millisecond
	backoffMax = 15 * time.Second
)

// ErrBackoff wraps the last issuance error while the cache waits before
// asking the issuer again.
var ErrBackoff = errors.New("issuance backing off after a failure")

// NewCache makes an empty cache.
func NewCache(opts CacheOptions) *Cache {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IssueTimeout <= 0 {
		opts.IssueTimeout = 10 * time.Second
	}
	if opts.MinRemaining <= 0 {
		opts.MinRemaining = 15 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		opts:     opts,
		ctx:      ctx,
		cancel:   cancel,
		entries:  map[CacheKey]*Entry{},
		byBlob:   map[string]*Entry{},
		inflight: map[CacheKey]*issueCall{},
		failures: map[CacheKey]*failure{},
	}
}

// Get returns a usable certificate for key, issuing one with issue when
// none is cached. fresh reports whether this call caused the issuance.
func (c *Cache) Get(ctx context.Context, key CacheKey, issue IssueFunc) (*Entry, error) {
	now := c.opts.Now()
	c.mu.Lock()
	c.pruneLocked(now)
	if e := c.entries[key]; e != nil {
		remaining := e.ValidBefore().Sub(now)
		if remaining > e.Lifetime()/3 {
			c.mu.Unlock()
			return e, nil
		}
		if remaining > c.opts.MinRemaining && e.ValidAt(now) {
			c.startLocked(key, issue) // refresh ahead; this caller uses the current one
			c.mu.Unlock()
			return e, nil
		}
	}
	if f := c.failures[key]; f != nil && now.Before(f.until) {
		c.mu.Unlock()
		return nil, errors.Join(ErrBackoff, f.err)
	}
	call := c.startLocked(key, issue)
	c.mu.Unlock()

	select {
	case <-call.done:
		return call.entry, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startLocked joins the issuance in flight for key or starts one.
func (c *Cache) startLocked(key CacheKey, issue IssueFunc) *issueCall {
	if call := c.inflight[key]; call != nil {
		return call
	}
	call := &issueCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// The issuance has its own deadline: one impatient waiter giving
		// up must not fail the others.
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.IssueTimeout)
		defer cancel()
		call.entry, call.err = c.issue(ctx, key, issue)
		c.mu.Lock()
		delete(c.inflight, key)
		now := c.opts.Now()
		if call.err == nil {
			c.entries[key] = call.entry
			c.byBlob[string(call.entry.Blob)] = call.entry
			delete(c.failures, key)
		} else {
			f := c.failures[key]
			if f == nil {
				f = &failure{delay: backoffMin}
				c.failures[key] = f
			} else {
				f.delay = min(f.delay*2, backoffMax)
			}
			f.err = call.err
			// Jitter spreads retries from many agents after an outage.
			f.until = now.Add(f.delay/2 + rand.N(f.delay/2+1))
		}
		c.mu.Unlock()
		close(call.done)
	}()
	return call
}

func (c *Cache) issue(ctx context.Context, key CacheKey, issue IssueFunc) (*Entry, error) {
	eph, err := NewEphemeralKey()
	if err != nil {
		return nil, err
	}
	issuedAt := c.opts.Now()
	iss, err := issue(ctx, key, eph)
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewCertSigner(iss.Cert, eph.Signer)
	if err != nil {
		return nil, err
	}
	return &Entry{Key: key, Cert: iss.Cert, Issued: iss, Signer: s, Ephemeral: eph, IssuedAt: issuedAt,
		Blob: iss.Cert.Marshal(), Fingerprint: KeyFingerprint(iss.Cert)}, nil
}

func (c *Cache) pruneLocked(now time.Time) {
	for blob, e := range c.byBlob {
		if !now.Before(e.ValidBefore()) {
			delete(c.byBlob, blob)
			if c.entries[e.Key] == e {
				delete(c.entries, e.Key)
			}
		}
	}
}

// Lookup returns the unexpired certificate whose wire form is blob.
func (c *Cache) Lookup(blob []byte) *Entry {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byBlob[string(blob)]
	if e == nil || !e.ValidAt(now) {
		return nil
	}
	return e
}

// Current returns the newest certificate for key if it is valid now.
func (c *Cache) Current(key CacheKey) *Entry {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil && e.ValidAt(now) && e.ValidBefore().Sub(now) > c.opts.MinRemaining {
		return e
	}
	return nil
}

// Valid returns the newest usable certificate of every target, by route
// and principal.
func (c *Cache) Valid() []*Entry {
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Entry
	for _, e := range c.entries {
		if e.ValidAt(now) && e.ValidBefore().Sub(now) > c.opts.MinRemaining {
			out = append(out, e)
		}
	}
	// A fixed order (map order is random): clients that try only the
	// first key they are offered must see the same one each time.
	slices.SortFunc(out, func(a, b *Entry) int {
		return cmp.Or(cmp.Compare(a.Key.Route, b.Key.Route), cmp.Compare(a.Key.Principal, b.Key.Principal))
	})
	return out
}

// Drop removes every certificate for which drop returns true, e.g. after
// a catalog or policy reload no longer allows its route.
func (c *Cache) Drop(drop func(*Entry) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for blob, e := range c.byBlob {
		if drop(e) {
			delete(c.byBlob, blob)
			if c.entries[e.Key] == e {
				delete(c.entries, e.Key)
			}
			n++
		}
	}
	return n
}

// Close cancels issuances in flight and waits for them.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
}
