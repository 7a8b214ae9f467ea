package signer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// parallelIssues is how many logins run at once in the HA tests.
const parallelIssues = 20

// haTarget is a real cluster when WARDEN_TEST_BAO_ADDRS is set, else a
// three-node test cluster.
func haTarget(t *testing.T) *openbaotest.Target {
	t.Helper()
	if tg := openbaotest.RealCluster(t); tg != nil {
		return tg
	}
	return openbaotest.NewCluster(t, 3, openbaotest.Options{}).Target()
}

// testCluster is a three-node test cluster; tests that drive its switches
// use it, and skip on a real cluster.
func testCluster(t *testing.T) *openbaotest.Cluster {
	t.Helper()
	if os.Getenv(openbaotest.EnvAddrs) != "" {
		t.Skip("needs the test cluster's switches (kill, seal, hang, elections)")
	}
	return openbaotest.NewCluster(t, 3, openbaotest.Options{})
}

// haTimeout is the issuers' per-request timeout: short, but long enough
// for 20 parallel logins on a loaded 2-core machine under -race.
var haTimeout = 2 * time.Second

// haIssuer builds an issuer listing addrs (the cluster's nodes by default).
func haIssuer(t *testing.T, tg *openbaotest.Target, addrs []string) *harness {
	t.Helper()
	if addrs == nil {
		addrs = tg.Addresses
	}
	cfg := OpenBaoConfig{Addresses: addrs, Mount: tg.Mount, Token: tg.NewToken(t, time.Hour), Timeout: haTimeout}
	logs := &syncBuffer{}
	o, err := NewOpenBao(cfg, OpenBaoDeps{
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Getenv:     env{}.get,
		HomeDir:    t.TempDir(),
		HTTPClient: tg.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &harness{t: t, tg: tg, o: o, log: logs}
}

// issueParallel runs n issuances at once, each with listDeadline as its
// deadline, and returns their errors (nil for a success).
func (h *harness) issueParallel(n int, listDeadline time.Duration) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), listDeadline)
			defer cancel()
			_, errs[i] = h.o.Issue(ctx, h.request("alice"))
		})
	}
	wg.Wait()
	return errs
}

// allOK fails the test for every failed issuance and checks that the
// cluster minted exactly one certificate per issuance.
func allOK(t *testing.T, c *openbaotest.Cluster, errs []error, signedBefore int) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Errorf("issuance failed: %v", err)
		}
	}
	if c != nil {
		if got := c.Signed() - signedBefore; got != len(errs) {
			t.Errorf("%d certificates minted for %d issuances", got, len(errs))
		}
	}
}

func nodeState(h *harness, addr string) NodeStatus {
	for _, n := range h.o.Nodes() {
		if n.Address == addr {
			return n
		}
	}
	return NodeStatus{}
}

func TestOpenBaoHAAllNodesUp(t *testing.T) {
	tg := haTarget(t)
	h := haIssuer(t, tg, nil)
	allOK(t, tg.Cluster, h.issueParallel(parallelIssues, 5*time.Second), 0)
	st, err := h.o.Health(context.Background())
	if st != HealthActive || err != nil {
		t.Errorf("health %s %v", st, err)
	}
	ups := 0
	for _, n := range h.o.Nodes() {
		if n.Up {
			ups++
		}
	}
	if ups != len(tg.Addresses) {
		t.Errorf("%d of %d nodes up: %+v", ups, len(tg.Addresses), h.o.Nodes())
	}
}

// TestOpenBaoHAKilledLeaderStandbyReads: with standby reads on (OpenBao's
// default) standbys sign while the cluster elects a new leader.
func TestOpenBaoHAKilledLeaderStandbyReads(t *testing.T) {
	c := testCluster(t)
	h := haIssuer(t, c.Target(), nil)
	c.Kill(0, 5*time.Second)
	allOK(t, c, h.issueParallel(parallelIssues, 3*time.Second), 0)
	if st := nodeState(h, c.Nodes[0].URL); st.Up || st.State != HealthUnreachable || !strings.Contains(st.LastError, c.Nodes[0].URL) {
		t.Errorf("killed node shown as %+v", st)
	}
	if h.o.Address() == c.Nodes[0].URL {
		t.Error("still using the killed node")
	}
}

// TestOpenBaoHARedirectToDeadLeader: with standby reads off, standbys
// redirect to the dead leader until the election ends; logins wait for it
// within their deadline, and a deadline shorter than the election fails
// with an error that names both the standby and the dead leader.
func TestOpenBaoHARedirectToDeadLeader(t *testing.T) {
	c := testCluster(t)
	c.SetStandbyReads(false)
	h := haIssuer(t, c.Target(), nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	before := c.Signed()

	c.Kill(0, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	_, err := h.o.Issue(ctx, h.request("alice"))
	cancel()
	var ce *ClusterUnavailableError
	if !errors.As(err, &ce) || !ce.NoLeader {
		t.Fatalf("err = %v, want no leader", err)
	}
	for _, want := range []string{"OpenBao at " + c.Nodes[1].URL + " redirected to " + c.Nodes[0].URL, "refused the connection", "the cluster has no leader"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if c.Signed() != before {
		t.Fatal("a certificate was minted for a failed issuance")
	}

	// The election ends 700ms into the logins, which wait for it.
	c = testCluster(t)
	c.SetStandbyReads(false)
	h = haIssuer(t, c.Target(), nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	before = c.Signed()
	c.Kill(0, 700*time.Millisecond)
	start := time.Now()
	allOK(t, c, h.issueParallel(parallelIssues, 5*time.Second), before)
	took := time.Since(start)
	t.Logf("%d logins across a 700ms election with standbys redirecting to the dead leader: %s", parallelIssues, took)
	if took < 600*time.Millisecond || took > 4*time.Second {
		t.Errorf("logins took %s across a 700ms election", took)
	}
	if c.Active() != 1 || h.o.Address() != c.Nodes[1].URL {
		t.Errorf("active %d, issuer uses %s", c.Active(), h.o.Address())
	}
}

func TestOpenBaoHASealedNodeListedFirst(t *testing.T) {
	c := testCluster(t)
	c.Seal(0) // node 1 takes over
	h := haIssuer(t, c.Target(), nil)
	allOK(t, c, h.issueParallel(parallelIssues, 3*time.Second), 0)
	st := nodeState(h, c.Nodes[0].URL)
	if st.State != HealthSealed || st.Up || !strings.Contains(st.LastError, "OpenBao at "+c.Nodes[0].URL+" is sealed") {
		t.Errorf("sealed node shown as %+v", st)
	}
	// Once known sealed, it is skipped.
	n0 := c.NodeRequests(0, "ssh/sign/eng")
	allOK(t, c, h.issueParallel(5, 3*time.Second), parallelIssues)
	if c.NodeRequests(0, "ssh/sign/eng") != n0 {
		t.Error("sign requests still sent to the sealed node")
	}
	// Unsealed, it is sampled back in.
	c.Unseal(0)
	if _, err := h.o.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := nodeState(h, c.Nodes[0].URL); !st.Up {
		t.Errorf("unsealed node shown as %+v", st)
	}
}

// TestOpenBaoHAHungNode: a sign request written to a hung node is never
// sent again (it may have been processed); the error names the node, the
// node is skipped from then on, and used again once it recovers.
func TestOpenBaoHAHungNode(t *testing.T) {
	c := testCluster(t)
	haTimeout = time.Second
	defer func() { haTimeout = 2 * time.Second }()
	h := haIssuer(t, c.Target(), nil)
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	c.Hang(0)
	start := time.Now()
	_, err := h.issue("alice")
	if err == nil || !strings.Contains(err.Error(), "OpenBao at "+c.Nodes[0].URL+" did not answer within 1s") ||
		!strings.Contains(err.Error(), "not sent again") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s", took)
	}
	signed := c.Signed()
	allOK(t, c, h.issueParallel(parallelIssues, 3*time.Second), signed)
	if n := c.NodeRequests(0, "ssh/sign/eng"); n != 2 {
		t.Errorf("%d sign requests reached the hung node, want 2 (the first login, the hung one)", n)
	}
	if st := nodeState(h, c.Nodes[0].URL); st.Up {
		t.Errorf("hung node shown as %+v", st)
	}
	c.Unhang(0)
	if _, err := h.o.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.issue("alice"); err != nil {
		t.Fatal(err)
	}
	if h.o.Address() != c.Nodes[0].URL {
		t.Errorf("not back on the recovered active node: %s", h.o.Address())
	}
	if got := c.Signed(); got != signed+parallelIssues+1 {
		t.Errorf("%d certificates minted, want %d (the hung request must not be processed late)", got, signed+parallelIssues+1)
	}
}

// TestOpenBaoHANoLeader: with standby reads off and no leader, logins wait
// up to their deadline and succeed once a leader is elected; with reads on
// standbys sign throughout.
func TestOpenBaoHANoLeader(t *testing.T) {
	c := testCluster(t)
	h := haIssuer(t, c.Target(), nil)
	c.NoLeader(time.Hour)
	allOK(t, c, h.issueParallel(parallelIssues, 3*time.Second), 0) // standby reads on

	c.SetStandbyReads(false)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := h.o.Issue(ctx, h.request("alice"))
	cancel()
	if err == nil || !strings.Contains(err.Error(), "the cluster has no leader") || !strings.Contains(err.Error(), "active cluster node not found") {
		t.Fatalf("err = %v", err)
	}
	// Status is unhealthy: the standbys said there is no leader, or (once
	// re-sampled as plain standbys) the last issuance failed.
	if st, msg, _ := h.o.HealthSummary(); (st != "failing" && st != string(HealthNoLeader)) || !strings.Contains(msg, "no leader") {
		t.Errorf("status health %q (%s) after a failed issuance", st, msg)
	}

	before := c.Signed()
	c.NoLeader(600 * time.Millisecond)
	start := time.Now()
	allOK(t, c, h.issueParallel(parallelIssues, 5*time.Second), before)
	took := time.Since(start)
	t.Logf("%d logins across a 600ms leaderless window, standby reads off: %s", parallelIssues, took)
	if took < 500*time.Millisecond {
		t.Errorf("logins took %s across a 600ms election", took)
	}
	if st, _, _ := h.o.HealthSummary(); st != string(HealthActive) {
		t.Errorf("status health %q after recovery", st)
	}
}

// TestOpenBaoHAStandbyReadsOff: a standby listed first redirects to the
// active node, which warden follows because it is listed; a redirect to a
// node that is not listed is not followed.
func TestOpenBaoHAStandbyReadsOff(t *testing.T) {
	c := testCluster(t)
	c.SetStandbyReads(false)
	tg := c.Target()
	h := haIssuer(t, tg, []string{c.Nodes[1].URL, c.Nodes[2].URL, c.Nodes[0].URL})
	allOK(t, c, h.issueParallel(parallelIssues, 3*time.Second), 0)
	if n := c.Requests("ssh/sign/eng"); n != parallelIssues {
		t.Errorf("%d sign requests processed, want %d", n, parallelIssues)
	}

	h2 := haIssuer(t, tg, []string{c.Nodes[1].URL, c.Nodes[2].URL})
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := h2.o.Issue(ctx, h2.request("alice"))
	if err == nil || !strings.Contains(err.Error(), "OpenBao at "+c.Nodes[1].URL+" sent a response we cannot use: redirected to "+c.Nodes[0].URL) ||
		!strings.Contains(err.Error(), "not a listed node") {
		t.Fatalf("err = %v", err)
	}
	if c.Signed() != parallelIssues {
		t.Error("the unlisted node was asked")
	}
}

func TestOpenBaoAddressesFromEnvironment(t *testing.T) {
	for _, e := range []env{
		{"BAO_ADDRS": "https://a:8200, https://b:8200", "BAO_ADDR": "https://x:8200"},
		{"BAO_ADDR": "https://a:8200,https://b:8200"},
		{"VAULT_ADDR": "https://a:8200,https://b:8200,https://a:8200"},
	} {
		o, err := NewOpenBao(OpenBaoConfig{}, OpenBaoDeps{Getenv: e.get})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range o.Nodes() {
			got = append(got, n.Address)
		}
		o.Close()
		if strings.Join(got, " ") != "https://a:8200 https://b:8200" {
			t.Errorf("%v: nodes %v", e, got)
		}
	}
}

// TestOpenBaoHARedirectLoop: two nodes that redirect to each other are
// each asked once a pass, and the issuance gives up within its deadline,
// naming the loop.
func TestOpenBaoHARedirectLoop(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	var a, b *httptest.Server
	redirect := func(to **httptest.Server) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits++
			mu.Unlock()
			if r.URL.Path == "/v1/sys/health" {
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			http.Redirect(w, r, (*to).URL+r.URL.Path, http.StatusTemporaryRedirect)
		}
	}
	a = httptest.NewServer(redirect(&b))
	defer a.Close()
	b = httptest.NewServer(redirect(&a))
	defer b.Close()
	o, err := NewOpenBao(OpenBaoConfig{Addresses: []string{a.URL, b.URL}, Token: "t", Timeout: time.Second}, OpenBaoDeps{Getenv: env{}.get, HomeDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err = o.Issue(ctx, Request{PublicKey: ephemeral(t), Principals: []string{"alice"}, Role: "eng"})
	if err == nil || !strings.Contains(err.Error(), "OpenBao at "+b.URL+" redirected to "+a.URL+": it redirects too") ||
		!strings.Contains(err.Error(), "the cluster has no leader") {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits > 40 {
		t.Errorf("%d requests in 700ms: the loop is not bounded per pass", hits)
	}
}
