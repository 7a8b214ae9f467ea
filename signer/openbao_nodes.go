package signer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openbao/openbao/api/v2"
)

// healthEvery is how often every node's sys/health is sampled; a failure
// also triggers a sample at once.
const healthEvery = 10 * time.Second

// maxHealthTimeout bounds one sys/health call: a node slower than that to
// say how it is is treated as hung.
const maxHealthTimeout = 2 * time.Second

// electionRetry is the pause between passes over the nodes while the
// cluster has no leader.
const electionRetry = 250 * time.Millisecond

// recentIssue is how long a failed issuance keeps the issuer degraded when
// no issuance succeeded since.
const recentIssue = 5 * time.Minute

// HealthNoLeader is a node that is unsealed but cannot find an active
// node; HealthUnknown one not sampled yet.
const (
	HealthNoLeader HealthState = "no leader"
	HealthUnknown  HealthState = "unknown"
)

// node is one listed OpenBao server. Its mutable fields are guarded by
// OpenBao.mu.
type node struct {
	addr   string
	client *api.Client

	state     HealthState
	stateErr  string
	checkedAt time.Time
	lastErr   string
	lastErrAt time.Time
}

// usable reports a node worth sending a request to.
func (n *node) usable() bool {
	switch n.state {
	case HealthActive, HealthStandby, HealthUnknown, "":
		return true
	}
	return false
}

// rank orders nodes: active, then standby, then not yet sampled.
func (n *node) rank() int {
	switch n.state {
	case HealthActive:
		return 0
	case HealthStandby:
		return 1
	}
	return 2
}

// NodeStatus is what status shows about one listed node.
type NodeStatus struct {
	Address   string
	State     HealthState
	StateErr  string
	CheckedAt time.Time
	// InUse is the node that last answered.
	InUse bool
	// Up is true for an active or standby node.
	Up          bool
	LastError   string
	LastErrorAt time.Time
}

// Nodes reports every listed node, from memory.
func (o *OpenBao) Nodes() []NodeStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]NodeStatus, len(o.nodes))
	for i, n := range o.nodes {
		st := n.state
		if st == "" {
			st = HealthUnknown
		}
		out[i] = NodeStatus{Address: n.addr, State: st, StateErr: n.stateErr, CheckedAt: n.checkedAt, InUse: i == o.cur,
			Up: st == HealthActive || st == HealthStandby, LastError: n.lastErr, LastErrorAt: n.lastErrAt}
	}
	return out
}

// issueRecord remembers the last issuance outcomes, for status.
type issueRecord struct {
	okAt, failAt time.Time
	failErr      string
}

// HealthSummary is the issuer's state from memory, for status: the best
// node state, or "failing" when the last issuances failed for want of a
// usable node (within 5 minutes, none succeeding since).
func (o *OpenBao) HealthSummary() (state string, errText string, checkedAt time.Time) {
	st, err := o.bestHealth()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.nodes {
		if n.checkedAt.After(checkedAt) {
			checkedAt = n.checkedAt
		}
	}
	if err != nil {
		errText = err.Error()
	}
	r := o.issues
	if r.failAt.After(r.okAt) && o.now().Sub(r.failAt) < recentIssue && (st == HealthActive || st == HealthStandby) {
		return "failing", "the last issuance failed: " + r.failErr, checkedAt
	}
	return string(st), errText, checkedAt
}

// noteIssue records an issuance's outcome; only unavailability counts as
// a failure (a role refusing a principal says nothing about the nodes).
func (o *OpenBao) noteIssue(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.issues.okAt = o.now()
		return
	}
	var ue *UnavailableError
	var ce *ClusterUnavailableError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		o.issues.failAt, o.issues.failErr = o.now(), err.Error()
	}
}

// healthRank orders states from best to worst for bestHealth.
var healthRank = []HealthState{HealthActive, HealthStandby, HealthUnknown, HealthNoLeader, HealthSealed, HealthUninitialized, HealthUnreachable}

// bestHealth is the best state of any node; with none active or standby,
// the error names every node's state.
func (o *OpenBao) bestHealth() (HealthState, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	best := len(healthRank) - 1
	var errs []string
	for _, n := range o.nodes {
		st := n.state
		if st == "" {
			st = HealthUnknown
		}
		if r := slices.Index(healthRank, st); r >= 0 && r < best {
			best = r
		}
		e := strings.TrimPrefix(n.stateErr, "openbao: ")
		if e == "" {
			e = n.addr + " " + string(st)
		}
		errs = append(errs, e)
	}
	st := healthRank[best]
	switch {
	case st == HealthActive || st == HealthStandby || st == HealthUnknown:
		return st, nil
	case len(o.nodes) == 1:
		return st, errors.New("openbao: " + errs[0])
	}
	return st, errors.New("openbao: no usable node: " + strings.Join(errs, "; "))
}

// sampleHealth asks every node's sys/health at once and records the states.
func (o *OpenBao) sampleHealth(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range o.nodes {
		wg.Go(func() {
			st, err := o.nodeHealth(ctx, n)
			if ctx.Err() != nil {
				return // our caller gave up, not the node
			}
			o.mu.Lock()
			n.state, n.stateErr, n.checkedAt = st, "", o.now()
			if err != nil {
				n.stateErr = err.Error()
			}
			o.mu.Unlock()
		})
	}
	wg.Wait()
}

// refreshHealth samples every node, joining a sample already running
// (twenty logins waiting out an election share one), and waits for it or
// for ctx.
func (o *OpenBao) refreshHealth(ctx context.Context) {
	select {
	case <-o.refreshStart():
	case <-ctx.Done():
	}
}

// kickHealth samples in the background after a failure, once at a time.
func (o *OpenBao) kickHealth() { o.refreshStart() }

// refreshStart starts a sample unless one runs (or the issuer is closed)
// and returns a channel closed when it ends.
func (o *OpenBao) refreshStart() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sampleDone != nil {
		return o.sampleDone
	}
	ch := make(chan struct{})
	select {
	case <-o.stop:
		close(ch)
		return ch
	default:
	}
	o.sampleDone = ch
	go func() {
		// Each node's call is bounded by min(timeout, 2s).
		o.sampleHealth(context.Background())
		o.mu.Lock()
		o.sampleDone = nil
		o.mu.Unlock()
		close(ch)
	}()
	return ch
}

func (o *OpenBao) nodeHealth(ctx context.Context, n *node) (HealthState, error) {
	ctx, cancel := context.WithTimeout(ctx, min(o.cfg.timeout, maxHealthTimeout))
	defer cancel()
	resp, _, err := o.doOnce(ctx, n, http.MethodGet, "sys/health", nil, "", nil)
	if err != nil {
		return HealthUnreachable, err
	}
	switch resp.status {
	case http.StatusOK:
		return HealthActive, nil
	case http.StatusTooManyRequests, 472, 473: // standby, DR secondary, performance standby
		return HealthStandby, nil
	case http.StatusServiceUnavailable:
		return HealthSealed, &UnavailableError{Address: n.addr, Reason: ReasonSealed, Status: resp.status, Message: "Vault is sealed"}
	case http.StatusNotImplemented:
		return HealthUninitialized, &UnavailableError{Address: n.addr, Reason: ReasonServerError, Status: resp.status, Message: "not initialized"}
	}
	return HealthUnreachable, &UnavailableError{Address: n.addr, Reason: ReasonServerError, Status: resp.status, Message: errorMessage(resp.body)}
}

// order lists the nodes to try: usable ones, active first, then standbys,
// then unsampled ones, each in listed order.
func (o *OpenBao) order() []*node {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*node
	for _, n := range o.nodes {
		if n.usable() {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b *node) int { return a.rank() - b.rank() })
	return out
}

// markFailed records a node's failure and, when it tells, its state.
func (o *OpenBao) markFailed(n *node, st HealthState, err error) {
	o.mu.Lock()
	n.lastErr, n.lastErrAt = err.Error(), o.now()
	if st != "" {
		n.state, n.stateErr, n.checkedAt = st, err.Error(), o.now()
	}
	o.mu.Unlock()
	o.kickHealth()
}

// markUsed records the node that answered; a success proves a node that
// looked down is back (the next sample tells active from standby).
func (o *OpenBao) markUsed(n *node, status int) {
	o.mu.Lock()
	back := status/100 == 2 && n.state != HealthActive && n.state != HealthStandby
	if back {
		n.state, n.stateErr, n.checkedAt = HealthActive, "", o.now()
	}
	i := slices.Index(o.nodes, n)
	if i != o.cur {
		o.log.Warn("openbao: now using another node", "from", o.nodes[o.cur].addr, "to", n.addr)
		o.cur = i
	}
	o.mu.Unlock()
	if back {
		o.kickHealth()
	}
}

func (o *OpenBao) nodeFor(rawURL string) *node {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	for _, n := range o.nodes {
		nu, _ := url.Parse(n.addr)
		if nu != nil && strings.EqualFold(nu.Scheme, u.Scheme) && strings.EqualFold(nu.Host, u.Host) {
			return n
		}
	}
	return nil
}

// idempotent reports a call that may be sent again after it may have
// been processed: reads, and token renewal (renewing twice is harmless).
// Signing and logins mint something each time and are sent at most once.
func idempotent(method, path string) bool {
	return method == http.MethodGet || path == "auth/token/renew-self"
}

// ClusterUnavailableError reports that no listed node could serve a
// request. Errs holds each node's failure, in the order tried.
type ClusterUnavailableError struct {
	Errs []error
	// NoLeader: the cluster had no active node while the request waited.
	NoLeader bool
	Waited   time.Duration
}

// Error names every node and what it said.
func (e *ClusterUnavailableError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = strings.TrimPrefix(err.Error(), "openbao: ")
	}
	msg := "openbao: no OpenBao node could serve the request: " + strings.Join(parts, "; ")
	if e.NoLeader {
		msg += fmt.Sprintf("; the cluster has no leader (an election is under way or quorum is lost); waited %s, up to the login's list_deadline", e.Waited.Round(time.Millisecond))
	}
	return msg
}

// Unwrap returns each node's error.
func (e *ClusterUnavailableError) Unwrap() []error { return e.Errs }

// verdict is what one answer means for the request.
type verdict int

const (
	answered   verdict = iota // a real answer: return it
	nextNode                  // nothing was processed: try another node
	redirected                // a standby pointed at a listed node: try it
	maybeDone                 // it may have been processed: resend only a read
)

// do sends one request to the cluster. It tries the usable nodes in order
// and moves on only when the answer proves nothing was processed: no
// connection, a sealed node, a standby without a leader or one that
// refuses (429), or a redirect (followed itself only to a listed node).
// A request that may have been processed (written, then no answer) is
// sent again only when it is idempotent. While the cluster has no leader
// it keeps trying at short intervals until ctx's deadline.
func (o *OpenBao) do(ctx context.Context, method, path string, body any, token string, hdr http.Header) (*rawResponse, error) {
	retry := idempotent(method, path)
	start := time.Now()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(2 * o.cfg.timeout)
	}
	var last *ClusterUnavailableError
	for pass := 0; ; pass++ {
		if last != nil && ctx.Err() != nil {
			last.Waited = time.Since(start)
			return nil, last
		}
		order := o.order()
		if len(order) == 0 {
			// Every node looked unusable: look again before giving up.
			o.refreshHealth(ctx)
			if order = o.order(); len(order) == 0 {
				order = slices.Clone(o.nodes)
			}
		}
		var errs []error
		leaderless := false
		via := map[*node]*node{}   // redirect target → node that redirected
		tried := map[*node]error{} // each node at most once a pass; its error
		for i := 0; i < len(order); i++ {
			n := order[i]
			if _, done := tried[n]; done {
				continue
			}
			tried[n] = nil
			resp, sent, err := o.doOnce(ctx, n, method, path, body, token, hdr)
			v, st, ferr := o.judge(n, resp, sent, err, via[n])
			if err != nil && ctx.Err() != nil {
				st = "" // the caller's deadline passed: it says nothing about the node
			}
			switch v {
			case answered:
				o.markUsed(n, resp.status)
				return resp, nil
			case maybeDone:
				o.markFailed(n, st, ferr)
				if !retry {
					return nil, ferr
				}
			case redirected:
				t := o.nodeFor(resp.location)
				terr, done := tried[t]
				if !done {
					// Follow it next; a failure there names both nodes.
					via[t] = n
					order = slices.Insert(order, i+1, t)
					continue
				}
				// Already asked in this pass: say what it said, once.
				if terr == nil {
					terr = errors.New("it redirects too")
				}
				ferr = &redirectError{from: n.addr, to: t.addr, err: terr}
				leaderless = true
				o.markFailed(n, "", ferr)
			case nextNode:
				o.markFailed(n, st, ferr)
				if st == HealthNoLeader || via[n] != nil {
					leaderless = true
				}
			}
			tried[n] = ferr
			errs = append(errs, ferr)
			if ctx.Err() != nil {
				break
			}
		}
		if len(errs) == 1 && !leaderless {
			return nil, errs[0]
		}
		if !leaderless && last != nil && ctx.Err() != nil {
			// This pass ran out of time: the cause is still the election.
			last.Waited = time.Since(start)
			return nil, last
		}
		last = &ClusterUnavailableError{Errs: errs, NoLeader: leaderless, Waited: time.Since(start)}
		left := time.Until(deadline)
		if !leaderless || ctx.Err() != nil || left < 2*electionRetry {
			return nil, last
		}
		if pass == 0 {
			o.log.Warn("openbao: the cluster has no leader; waiting", "path", path, "up_to", left.Round(time.Millisecond))
		}
		select {
		case <-time.After(electionRetry):
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(ctx, electionRetry)
		o.refreshHealth(sctx)
		cancel()
	}
}

// judge classifies one attempt at node n (redirected there from from, if
// not nil) and returns the error to report and the node state it shows.
func (o *OpenBao) judge(n *node, resp *rawResponse, sent bool, err error, from *node) (verdict, HealthState, error) {
	if from != nil && err != nil {
		err = &redirectError{from: from.addr, to: n.addr, err: err}
	}
	if err != nil {
		if !sent {
			return nextNode, HealthUnreachable, err
		}
		var ue *UnavailableError
		if errors.As(err, &ue) && ue.Reason == ReasonTimeout {
			err = fmt.Errorf("%w; the request may have been processed, so it is not sent again (the next login asks again)", err)
		}
		return maybeDone, HealthUnreachable, err
	}
	msg := errorMessage(resp.body)
	switch {
	case resp.status == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(msg), "sealed"):
		return nextNode, HealthSealed, statusError(resp, msg)
	case resp.status == http.StatusInternalServerError && isNoLeader(msg):
		return nextNode, HealthNoLeader, &UnavailableError{Address: n.addr, Reason: ReasonServerError, Status: resp.status,
			Message: msg + "; the cluster has no leader"}
	case resp.status == http.StatusTooManyRequests && o.isStandby(n):
		return nextNode, "", statusError(resp, msg)
	case resp.status >= 300 && resp.status < 400:
		t := o.nodeFor(resp.location)
		switch {
		case resp.location == "":
			return nextNode, "", &UnavailableError{Address: n.addr, Reason: ReasonBadResponse, Status: resp.status,
				Err: errors.New("a redirect without a Location")}
		case t == nil:
			return nextNode, HealthNoLeader, &UnavailableError{Address: n.addr, Reason: ReasonBadResponse, Status: resp.status,
				Err: fmt.Errorf("redirected to %s, which is not a listed node; warden follows redirects only to the nodes in signer.openbao.addresses", clipURL(resp.location))}
		case t == n:
			return nextNode, "", &UnavailableError{Address: n.addr, Reason: ReasonBadResponse, Status: resp.status,
				Err: errors.New("redirected to itself")}
		}
		return redirected, "", nil
	}
	return answered, "", nil
}

// redirectError is a failure at a node a standby redirected to; it names
// both.
type redirectError struct {
	from, to string
	err      error
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("openbao: OpenBao at %s redirected to %s: %s", e.from, e.to, strings.TrimPrefix(e.err.Error(), "openbao: "))
}

func (e *redirectError) Unwrap() error { return e.err }

func (o *OpenBao) isStandby(n *node) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return n.state == HealthStandby
}

// isNoLeader recognises a standby that cannot reach an active node.
func isNoLeader(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "active cluster node not found") || strings.Contains(m, "no active node") ||
		strings.Contains(m, "leader not found")
}

func clipURL(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// doOnce sends one request to one node, bounded by the configured timeout
// and ctx. sent reports whether the whole request was written, i.e.
// whether the server may have processed it.
func (o *OpenBao) doOnce(ctx context.Context, n *node, method, path string, body any, token string, hdr http.Header) (*rawResponse, bool, error) {
	timeout, setting := o.cfg.timeout, "signer.openbao.timeout"
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		// The caller's deadline is shorter: for a login that is the
		// agent's list_deadline, and that is what a timeout should name.
		timeout, setting = max(time.Until(dl), 0), "list_deadline"
	}
	var mu sync.Mutex
	sent := false
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		mu.Lock()
		sent = sent || i.Err == nil
		mu.Unlock()
	}}
	wasSent := func() bool { mu.Lock(); defer mu.Unlock(); return sent }
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), o.cfg.timeout)
	defer cancel()
	r := n.client.NewRequest(method, "/v1/"+path)
	r.ClientToken = token
	for k, v := range hdr {
		r.Headers[k] = v
	}
	if body != nil {
		if err := r.SetJSONBody(body); err != nil {
			return nil, false, fmt.Errorf("openbao: encoding request: %w", err)
		}
	}
	resp, err := n.client.RawRequestWithContext(ctx, r)
	if resp == nil {
		if err == nil {
			err = errors.New("no response")
		}
		return nil, wasSent(), classify(err, n.addr, timeout, setting)
	}
	defer resp.Body.Close()
	// On an error status api/v2 has already buffered the (bounded) body
	// into resp.Body; either way we read what there is.
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if rerr == nil && len(data) > maxResponseBody {
		rerr = errBodyTooLarge
	}
	if rerr != nil {
		return nil, true, classify(rerr, n.addr, timeout, setting)
	}
	return &rawResponse{status: resp.StatusCode, body: data, addr: n.addr, location: resp.Header.Get("Location")}, true, nil
}
