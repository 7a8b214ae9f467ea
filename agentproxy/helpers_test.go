package agentproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
)

// countingIssuer counts issuances of a real local CA.
type countingIssuer struct {
	*signer.LocalCA
	n     atomic.Int64
	delay time.Duration
}

func (c *countingIssuer) Issue(ctx context.Context, req signer.Request) (*signer.Issued, error) {
	c.n.Add(1)
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	return c.LocalCA.Issue(ctx, req)
}

// memRecorder is an in-memory audit recorder that can be made to fail.
type memRecorder struct {
	mu     sync.Mutex
	events []map[string]any
	fail   atomic.Bool
}

func (m *memRecorder) Record(_ context.Context, event string, fields map[string]any) error {
	if m.fail.Load() {
		return os.ErrPermission
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := map[string]any{"event": event}
	for k, v := range fields {
		f[k] = v
	}
	m.events = append(m.events, f)
	return nil
}

func (m *memRecorder) Head() string { return "head" }

func (m *memRecorder) count(event string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.events {
		if e["event"] == event {
			n++
		}
	}
	return n
}

func (m *memRecorder) last(event string) map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.events) - 1; i >= 0; i-- {
		if m.events[i]["event"] == event {
			return m.events[i]
		}
	}
	return nil
}

type testEnv struct {
	srv    *Server
	socket string
	iss    *countingIssuer
	rec    *memRecorder
	host   ssh.Signer // the pinned host key
	cat    *catalog.Catalog
}

func newHostKey(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs a warden server on a fresh socket with one route that
// pins a generated host key (principal "deploy") and one for hints.
func startServer(t testing.TB, mod func(*Config, *catalog.Catalog)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := signer.OpenLocalCA(filepath.Join(dir, "state", "ca"), nil)
	if err != nil {
		t.Fatal(err)
	}
	host := newHostKey(t)
	cat := &catalog.Catalog{Routes: []catalog.Route{
		{Name: "pinned", HostKeys: []string{string(ssh.MarshalAuthorizedKey(host.PublicKey()))}, Principals: []string{"deploy"}},
		{Name: "hinted", Hosts: []string{"*.example.com", "!bad.example.com"}, Principals: []string{"alice", "bob"}},
	}}
	env := &testEnv{iss: &countingIssuer{LocalCA: ca}, rec: &memRecorder{}, host: host, cat: cat}
	cfg := Config{
		Issuer:       env.iss,
		Catalog:      func() *catalog.Catalog { return cat },
		Recorder:     env.rec,
		ListDeadline: 5 * time.Second,
		LocalUser:    "tester",
	}
	if mod != nil {
		mod(&cfg, cat)
	}
	if err := cat.Prepare(); err != nil {
		t.Fatal(err)
	}
	env.socket = filepath.Join(dir, "run", "agent.sock")
	cfg.SocketPath = env.socket
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(env.socket)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		srv.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	env.srv = srv
	return env
}

// dialRaw connects without an agent client: x/crypto's client starts a
// reader goroutine on a net.Conn, which would take replies meant for a
// test reading the connection itself.
func dialRaw(t testing.TB, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t testing.TB, socket string) (net.Conn, agent.ExtendedAgent) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, agent.NewClient(c)
}

// bind sends session-bind@openssh.com signed by host, as ssh does after
// key exchange.
func bind(a agent.ExtendedAgent, host ssh.Signer, sid []byte, forwarding bool) error {
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		return err
	}
	_, err = a.Extension(extSessionBind, ssh.Marshal(sessionBindMsg{
		HostKey: host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig), Forwarding: forwarding,
	}))
	return err
}

// userauthData builds the data ssh asks an agent to sign for a login.
func userauthData(sid []byte, user string, key ssh.PublicKey, hostKey ssh.PublicKey) []byte {
	method := methodPublicKey
	if hostKey != nil {
		method = methodHostbound
	}
	msg := struct {
		SessionID []byte
		Type      byte
		User      string
		Service   string
		Method    string
		Sign      bool
		Algo      string
		Key       []byte
	}{sid, msgUserauthReq, user, "ssh-connection", method, true, key.Type(), key.Marshal()}
	out := ssh.Marshal(msg)
	if hostKey != nil {
		out = append(out, ssh.Marshal(struct{ K []byte }{hostKey.Marshal()})...)
	}
	return out
}

func randomSID(t testing.TB) []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// startSSHAgent runs OpenSSH's ssh-agent on a fresh socket.
func startSSHAgent(t testing.TB) (socket string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("ssh-agent not installed")
	}
	socket = filepath.Join(t.TempDir(), "up.sock")
	cmd := exec.Command(bin, "-D", "-a", socket)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return socket, stop
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wardenKeys(keys []*agent.Key) (certs []*agent.Key) {
	for _, k := range keys {
		if len(k.Comment) > 7 && k.Comment[:7] == "warden:" {
			certs = append(certs, k)
		}
	}
	return certs
}

func parseCert(t testing.TB, k *agent.Key) *ssh.Certificate {
	t.Helper()
	pk, err := ssh.ParsePublicKey(k.Blob)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := pk.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s is not a certificate", k.Comment)
	}
	return c
}

// listResult is what one client of a burst listed, or why it did not.
type listResult struct {
	keys []*agent.Key
	err  error
}

// listBurst connects clients clients, binds each to host, releases them
// at the same moment, and returns what each one's List answered. A List
// that has not answered within wait is an error, so a hung agent fails
// the test instead of hanging it.
func listBurst(t testing.TB, socket string, host ssh.Signer, clients int, wait time.Duration) []listResult {
	t.Helper()
	out := make([]listResult, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", socket)
			if err != nil {
				out[i].err = err
				return
			}
			defer c.Close()
			a := agent.NewClient(c)
			if err := bind(a, host, randomSID(t), false); err != nil {
				out[i].err = err
				return
			}
			<-start
			res := make(chan listResult, 1)
			go func() {
				keys, err := a.List()
				res <- listResult{keys, err}
			}()
			select {
			case out[i] = <-res:
			case <-time.After(wait):
				out[i].err = fmt.Errorf("list did not answer within %s", wait)
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// oneSharedCertificate checks that every client of a burst listed exactly
// one warden certificate, the same one, and returns its serial.
func oneSharedCertificate(t testing.TB, results []listResult) uint64 {
	t.Helper()
	var serial uint64
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		certs := wardenKeys(r.keys)
		if len(certs) != 1 {
			t.Fatalf("client %d listed %d warden keys, want 1", i, len(certs))
		}
		s := parseCert(t, certs[0]).Serial
		if i > 0 && s != serial {
			t.Fatalf("serials differ: %x and %x", serial, s)
		}
		serial = s
	}
	return serial
}

// listOneCert lists and returns the one warden certificate listed.
func listOneCert(t testing.TB, a agent.ExtendedAgent) *ssh.Certificate {
	t.Helper()
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	certs := wardenKeys(keys)
	if len(certs) != 1 {
		t.Fatalf("listed %d warden keys (%d keys in all), want 1", len(certs), len(keys))
	}
	return parseCert(t, certs[0])
}

// drop forgets the hint of pid: a test that plays several ssh processes
// with its own pid starts each afresh (a live hint is never replaced).
func (h *hintStore) drop(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byPid, pid)
}
