package openbaotest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// noLeader is what an OpenBao standby answers when it cannot find the
// active node to forward to.
const noLeader = "local node not active but active cluster node not found"

// Cluster is several OpenBao-compatible nodes sharing one state (tokens,
// roles, CA, counters), one of them active, as a Raft cluster is. Switches
// kill, seal or hang a node, take the leader away for a while (with
// standbys redirecting to the dead leader), and turn standby reads off.
//
// A standby answers sys/health with 429. With standby reads on (OpenBao's
// default) it serves reads and signing itself and forwards logins and
// renewals to the active node (500 "no active node" without one). With
// standby reads off it answers everything but sys/health with a 307 to the
// leader it knows, or 500 when it knows none.
type Cluster struct {
	// Server is the shared state; its own URL is not a node.
	*Server
	Nodes []*Node

	mu           sync.Mutex
	active       int    // index of the active node, -1 during an election
	leaderURL    string // where standbys redirect; the dead leader's while electing
	standbyReads bool
	timers       []*time.Timer
}

// Node is one member of a Cluster.
type Node struct {
	// URL is the node's address, stable across Kill and Revive.
	URL string

	c    *Cluster
	idx  int
	addr string
	ts   *httptest.Server

	// guarded by c.mu
	killed   bool
	sealed   bool
	hang     chan struct{}
	requests map[string]int
}

// NewCluster starts n nodes (node 0 active) and stops them with t.Cleanup.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	opts.TLS = false
	s := NewServer(t, opts)
	c := &Cluster{Server: s, standbyReads: true}
	for i := range n {
		nd := &Node{c: c, idx: i, requests: map[string]int{}}
		nd.ts = httptest.NewServer(http.HandlerFunc(nd.serve))
		nd.URL, nd.addr = nd.ts.URL, nd.ts.Listener.Addr().String()
		c.Nodes = append(c.Nodes, nd)
	}
	c.leaderURL = c.Nodes[0].URL
	t.Cleanup(c.close)
	return c
}

// URLs lists the nodes' addresses in order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = nd.URL
	}
	return out
}

// Target describes the cluster as a Target whose Addresses are its nodes.
func (c *Cluster) Target() *Target {
	tg := c.Server.Target()
	tg.Address = c.Nodes[0].URL
	tg.Addresses = c.URLs()
	tg.HTTPClient = nil
	tg.Cluster = c
	return tg
}

func (c *Cluster) close() {
	c.mu.Lock()
	for _, tm := range c.timers {
		tm.Stop()
	}
	for _, nd := range c.Nodes {
		if nd.hang != nil {
			close(nd.hang)
			nd.hang = nil
		}
	}
	c.mu.Unlock()
	for _, nd := range c.Nodes {
		nd.ts.Close()
	}
}

// Active returns the index of the active node, -1 while there is none.
func (c *Cluster) Active() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

// SetStandbyReads turns standby reads on (the default) or off
// (disable_standby_reads = true).
func (c *Cluster) SetStandbyReads(on bool) {
	c.mu.Lock()
	c.standbyReads = on
	c.mu.Unlock()
}

// Kill stops node i listening (connections are refused). Killing the
// active node leaves the cluster without one until election has passed;
// meanwhile standbys redirect to the dead leader.
func (c *Cluster) Kill(i int, election time.Duration) {
	c.mu.Lock()
	nd := c.Nodes[i]
	nd.killed = true
	wasActive := c.active == i
	if wasActive {
		c.active = -1
	}
	c.mu.Unlock()
	nd.ts.Listener.Close()
	nd.ts.CloseClientConnections()
	// A killed process's sockets are reset at once; give clients' idle
	// connections the moment they need to notice, as they would.
	time.Sleep(20 * time.Millisecond)
	if wasActive {
		c.electAfter(election)
	}
}

// Revive makes a killed node listen again on its address, as a standby.
func (c *Cluster) Revive(t testing.TB, i int) {
	t.Helper()
	nd := c.Nodes[i]
	l, err := net.Listen("tcp", nd.addr)
	if err != nil {
		t.Fatalf("openbaotest: revive %s: %v", nd.URL, err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(nd.serve))
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	c.mu.Lock()
	old := nd.ts
	nd.ts, nd.killed = ts, false
	c.mu.Unlock()
	t.Cleanup(ts.Close)
	_ = old
}

// Seal seals node i. A sealed active node steps down and the first usable
// standby takes over at once.
func (c *Cluster) Seal(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Nodes[i].sealed = true
	if c.active == i {
		c.electLocked()
	}
}

// Unseal unseals node i (it comes back as a standby).
func (c *Cluster) Unseal(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Nodes[i].sealed = false
	if c.active < 0 && c.leaderURL == "" {
		c.electLocked()
	}
}

// Hang makes node i accept connections and never answer (SIGSTOP) until
// Unhang.
func (c *Cluster) Hang(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Nodes[i].hang == nil {
		c.Nodes[i].hang = make(chan struct{})
	}
}

// Unhang releases node i.
func (c *Cluster) Unhang(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.Nodes[i].hang; h != nil {
		close(h)
		c.Nodes[i].hang = nil
	}
}

// NoLeader leaves the cluster without an active node (and without a
// leader to redirect to) for d, then elects the first usable node.
func (c *Cluster) NoLeader(d time.Duration) {
	c.mu.Lock()
	c.active, c.leaderURL = -1, ""
	c.mu.Unlock()
	c.electAfter(d)
}

func (c *Cluster) electAfter(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.electLocked()
	}))
}

// electLocked makes the first node that is neither killed nor sealed
// active; with none, the cluster stays leaderless.
func (c *Cluster) electLocked() {
	c.active, c.leaderURL = -1, ""
	for i, nd := range c.Nodes {
		if !nd.killed && !nd.sealed {
			c.active, c.leaderURL = i, nd.URL
			return
		}
	}
}

// NodeRequests returns how many requests for path (without /v1/) reached
// node i, whatever it answered.
func (c *Cluster) NodeRequests(i int, path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i].requests[path]
}

func (nd *Node) serve(w http.ResponseWriter, r *http.Request) {
	c := nd.c
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	c.mu.Lock()
	nd.requests[path]++
	hang, sealed := nd.hang, nd.sealed
	active, hasLeader, leader, reads := c.active == nd.idx, c.active >= 0, c.leaderURL, c.standbyReads
	c.mu.Unlock()

	if hang != nil {
		// Consume the body so net/http notices the client leaving.
		raw, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
		r.Body = io.NopCloser(bytes.NewReader(raw))
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		if r.Context().Err() != nil {
			return // the client gave up: nothing is processed
		}
	}
	if path == "sys/health" {
		nd.health(w, sealed, active)
		return
	}
	if sealed {
		writeErr(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	if active {
		c.Server.serve(w, r)
		return
	}
	if !reads {
		if leader == "" {
			writeErr(w, http.StatusInternalServerError, noLeader)
			return
		}
		w.Header().Set("Location", leader+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	// Standby reads: signing writes no storage and is served here; logins
	// and renewals write and are forwarded to the active node.
	if r.Method == http.MethodGet || strings.HasPrefix(path, c.mount+"/sign/") {
		c.Server.serve(w, r)
		return
	}
	if !hasLeader {
		writeErr(w, http.StatusInternalServerError, noLeader)
		return
	}
	c.Server.serve(w, r)
}

func (nd *Node) health(w http.ResponseWriter, sealed, active bool) {
	var b bytes.Buffer
	rec := httptest.NewRecorder()
	nd.c.Server.health(rec, nil, sealed)
	b.Write(rec.Body.Bytes())
	status := rec.Code
	if !sealed && !active {
		status = http.StatusTooManyRequests
		b.Reset()
		b.WriteString(strings.Replace(rec.Body.String(), `"standby":false`, `"standby":true`, 1))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
