package agentproxy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer"
)

// Load and fault tests (issue 7, "Load and faults"). Every wait is
// bounded; nothing asserts on how fast something happened except where a
// deadline is the behaviour under test, and then with generous slack.

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
		return nil
	}
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) connCount() int {
	e.srv.connMu.Lock()
	defer e.srv.connMu.Unlock()
	return len(e.srv.conns)
}

// settledGoroutines waits for the goroutine count to stop falling and
// returns it: the baseline for a leak check.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// expectGoroutinesBack polls until the goroutine count is at most
// baseline+slack, and dumps the stacks when it is not.
func expectGoroutinesBack(t *testing.T, baseline, slack int, what string) {
	t.Helper()
	if waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= baseline+slack }) {
		return
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "agentproxy") && !strings.Contains(g, "agentproxy.expectGoroutinesBack") {
			ours = append(ours, g)
		}
	}
	t.Fatalf("%s: %d goroutines, baseline %d (+%d); agentproxy goroutines:\n%s",
		what, runtime.NumGoroutine(), baseline, slack, strings.Join(ours, "\n\n"))
}

// login binds a fresh session to host, lists, and returns the warden
// certificate and the session id.
func login(a agent.ExtendedAgent, host ssh.Signer) (*ssh.Certificate, []byte, error) {
	sid := make([]byte, 32)
	rand.Read(sid)
	if err := bind(a, host, sid, false); err != nil {
		return nil, nil, fmt.Errorf("bind: %w", err)
	}
	keys, err := a.List()
	if err != nil {
		return nil, nil, fmt.Errorf("list: %w", err)
	}
	certs := wardenKeys(keys)
	if len(certs) != 1 {
		return nil, nil, fmt.Errorf("listed %d warden keys, want 1 (%d keys in all)", len(certs), len(keys))
	}
	pk, err := ssh.ParsePublicKey(certs[0].Blob)
	if err != nil {
		return nil, nil, err
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		return nil, nil, errors.New("warden key is not a certificate")
	}
	return cert, sid, nil
}

// loginAndSign is one complete client: dial, bind, list, sign, verify.
func loginAndSign(socket string, host ssh.Signer) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	a := agent.NewClient(c)
	cert, sid, err := login(a, host)
	if err != nil {
		return err
	}
	data := userauthData(sid, "deploy", cert, nil)
	sig, err := a.Sign(cert, data)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return cert.Verify(data, sig)
}

func TestLoadConcurrentClientsSign(t *testing.T) {
	const clients = 64
	perClient := 300 // under -race on 2 cores
	if os.Getenv("WARDEN_LOAD_FULL") == "1" {
		perClient = 2000 // the figure
	}
	env := startServer(t, nil)
	var wg sync.WaitGroup
	var failures atomic.Int64
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := func() error {
				c, err := net.Dial("unix", env.socket)
				if err != nil {
					return err
				}
				defer c.Close()
				a := agent.NewClient(c)
				<-start
				cert, sid, err := login(a, env.host)
				if err != nil {
					return err
				}
				for j := 0; j < perClient; j++ {
					data := userauthData(sid, "deploy", cert, nil)
					sig, err := a.Sign(cert, data)
					if err != nil {
						return fmt.Errorf("signature %d: %w", j, err)
					}
					if err := cert.Verify(data, sig); err != nil {
						return fmt.Errorf("signature %d does not verify: %w", j, err)
					}
				}
				return nil
			}()
			if err != nil {
				failures.Add(1)
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if failures.Load() > 0 {
		t.Fatalf("%d of %d clients failed", failures.Load(), clients)
	}
	total := clients * perClient
	if got := env.rec.count(evCertUsed); got != total {
		t.Errorf("%d cert.used records for %d signatures", got, total)
	}
	if got := env.srv.Stats().Used.Load(); got != uint64(total) {
		t.Errorf("stats.Used = %d, want %d", got, total)
	}
	if got := env.rec.count(evSignDenied); got != 0 {
		t.Errorf("%d sign.denied records, want 0", got)
	}
	if got := env.iss.n.Load(); got != 1 {
		t.Errorf("%d issuances for one target, want 1", got)
	}
}

func TestLoadIdleConnectionsDoNotBlockService(t *testing.T) {
	const idle = 1000
	// One test process holds them all: lift the per-process cap (its own
	// test is TestConnectionsPerPidCapped).
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.MaxConnsPerPid = 2 * idle })
	if err := loginAndSign(env.socket, env.host); err != nil { // warm up: issue the certificate
		t.Fatal(err)
	}
	waitFor(5*time.Second, func() bool { return env.connCount() == 0 })
	baseline := settledGoroutines()

	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < idle; i++ {
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if !waitFor(10*time.Second, func() bool { return env.connCount() == idle }) {
		t.Fatalf("server holds %d connections, want %d", env.connCount(), idle)
	}
	// Others are served while the idle ones are held.
	for i := 0; i < 5; i++ {
		if err := within(t, 10*time.Second, "login beside idle connections", func() error {
			return loginAndSign(env.socket, env.host)
		}); err != nil {
			t.Fatalf("login %d beside %d idle connections: %v", i, idle, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if !waitFor(10*time.Second, func() bool { return env.connCount() == 0 }) {
		t.Fatalf("server still holds %d connections after the clients closed", env.connCount())
	}
	expectGoroutinesBack(t, baseline, 5, "after closing the idle connections")
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatalf("login after the idle connections closed: %v", err)
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

func TestFaultDescriptorExhaustionPausesAcceptAndRecovers(t *testing.T) {
	logs := &syncBuffer{}
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatal(err)
	}

	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var files []*os.File
	release := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
				t.Errorf("restoring RLIMIT_NOFILE: %v", err)
			}
		}
	}
	t.Cleanup(func() { release(); restore() })

	lim := orig
	lim.Cur = uint64(openFDs(t) + 64)
	if lim.Cur > orig.Cur {
		t.Skipf("descriptor limit %d already low", orig.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}

	// Open connections until the process runs out of descriptors (each
	// takes one here and one in the server), then fill what is left.
	for i := 0; ; i++ {
		if i > int(lim.Cur) {
			t.Fatalf("dialled %d connections under a limit of %d", i, lim.Cur)
		}
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Logf("dial %d: %v", i, err)
			}
			break
		}
		conns = append(conns, c)
	}
	waitFor(2*time.Second, func() bool { return logs.count("accept paused") > 0 })
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		files = append(files, f)
		if len(files) > int(lim.Cur) {
			t.Fatal("opened more files than the limit allows")
		}
	}
	// Free exactly one descriptor and dial: the connection waits in the
	// backlog and the server's accept hits EMFILE.
	if len(files) > 0 {
		files[len(files)-1].Close()
		files = files[:len(files)-1]
	} else {
		conns[len(conns)-1].Close()
		conns = conns[:len(conns)-1]
	}
	pending, err := net.Dial("unix", env.socket)
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	conns = append(conns, pending)
	if !waitFor(5*time.Second, func() bool { return logs.count("accept paused") > 0 }) {
		t.Fatalf("server did not log a paused accept (held %d connections, %d files)", len(conns), len(files))
	}
	// No spin: the back-off doubles to a second, so a second of
	// exhaustion logs a handful of pauses, not thousands.
	before := logs.count("accept paused")
	time.Sleep(time.Second)
	if n := logs.count("accept paused") - before; n > 50 {
		t.Fatalf("%d accept pauses logged in a second: the accept loop spins", n)
	}

	// Recovery: close everything but the pending connection; the server
	// accepts it and serves it, then serves new clients.
	pending = conns[len(conns)-1]
	conns = conns[:len(conns)-1]
	release()
	conns = []net.Conn{pending}
	if err := within(t, 10*time.Second, "list on the connection pending during exhaustion", func() error {
		_, err := agent.NewClient(pending).List()
		return err
	}); err != nil {
		t.Fatalf("connection pending during exhaustion: %v", err)
	}
	if err := within(t, 10*time.Second, "login after exhaustion", func() error {
		return loginAndSign(env.socket, env.host)
	}); err != nil {
		t.Fatalf("login after exhaustion: %v", err)
	}
	restore()
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatalf("login after the limit was restored: %v", err)
	}
}

func TestFaultStalledClientDoesNotDelayOthers(t *testing.T) {
	env := startServer(t, nil)
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatal(err)
	}
	waitFor(5*time.Second, func() bool { return env.connCount() == 0 })
	baseline := settledGoroutines()

	// Half a message: the header promises 100 bytes, 10 arrive.
	stalled, err := net.Dial("unix", env.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	frame := binary.BigEndian.AppendUint32(nil, 100)
	frame = append(frame, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	if _, err := stalled.Write(frame); err != nil {
		t.Fatal(err)
	}
	// Half a header, too.
	stalled2, err := net.Dial("unix", env.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled2.Close()
	stalled2.Write([]byte{0, 0})
	if !waitFor(5*time.Second, func() bool { return env.connCount() == 2 }) {
		t.Fatalf("server holds %d connections, want the 2 stalled ones", env.connCount())
	}
	for i := 0; i < 3; i++ {
		if err := within(t, 10*time.Second, "login beside a stalled client", func() error {
			return loginAndSign(env.socket, env.host)
		}); err != nil {
			t.Fatalf("login beside a stalled client: %v", err)
		}
	}
	stalled.Close()
	stalled2.Close()
	expectGoroutinesBack(t, baseline, 0, "after the stalled clients closed")
}

func TestFaultClientDisconnectsMidRequestLeavesNoGoroutine(t *testing.T) {
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		// Slow issuance keeps a list in flight when its client hangs up.
		cfg.Issuer.(*countingIssuer).delay = 200 * time.Millisecond
	})
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatal(err)
	}
	waitFor(5*time.Second, func() bool { return env.connCount() == 0 })
	baseline := settledGoroutines()

	const rounds = 20
	for i := 0; i < rounds; i++ {
		// Bind and list with one client, then send a sign request on a raw
		// connection carrying the same bind, and hang up before the reply.
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.NewClient(struct{ io.ReadWriter }{c}) // synchronous client: no reader goroutine of its own
		cert, sid, err := login(a, env.host)
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		req := ssh.Marshal(struct {
			Type  byte
			Key   []byte
			Data  []byte
			Flags uint32
		}{13, cert.Marshal(), userauthData(sid, "deploy", cert, nil), 0})
		c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(req))))
		c.Write(req)
		c.Close()
	}
	// A list in flight (issuance slowed) when the client hangs up.
	env.srv.Cache().Drop(func(*signer.Entry) bool { return true })
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.NewClient(struct{ io.ReadWriter }{c})
		sid := randomSID(t)
		if err := bind(a, env.host, sid, false); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0, 0, 0, 1, 11}) // REQUEST_IDENTITIES
		c.Close()
	}
	if !waitFor(10*time.Second, func() bool { return env.connCount() == 0 }) {
		t.Fatalf("server still holds %d connections after the clients hung up", env.connCount())
	}
	expectGoroutinesBack(t, baseline, 0, "after clients hung up mid-request")
	if err := loginAndSign(env.socket, env.host); err != nil {
		t.Fatalf("login afterwards: %v", err)
	}
}

// runSSHAgent starts ssh-agent on socket (removing a stale socket file).
func runSSHAgent(t *testing.T, socket string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("ssh-agent not installed")
	}
	os.Remove(socket)
	cmd := exec.Command(bin, "-D", "-a", socket)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	if !waitFor(5*time.Second, func() bool {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatal("ssh-agent did not start")
	}
	return stop
}

func addUserKey(t *testing.T, socket, comment string) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := agent.NewClient(c).Add(agent.AddedKey{PrivateKey: priv, Comment: comment}); err != nil {
		t.Fatal(err)
	}
}

// listAndSign logs in on a new connection and returns the comments of
// the keys listed, after checking the warden certificate signs.
func listAndSign(t *testing.T, env *testEnv, deadline time.Duration) []string {
	t.Helper()
	var comments []string
	err := within(t, deadline, "list and sign", func() error {
		c, err := net.Dial("unix", env.socket)
		if err != nil {
			return err
		}
		defer c.Close()
		a := agent.NewClient(c)
		sid := randomSID(t)
		if err := bind(a, env.host, sid, false); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		keys, err := a.List()
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		for _, k := range keys {
			comments = append(comments, k.Comment)
		}
		certs := wardenKeys(keys)
		if len(certs) != 1 || !strings.HasPrefix(keys[0].Comment, "warden:") {
			return fmt.Errorf("listed %v, want warden's certificate first", comments)
		}
		pk, err := ssh.ParsePublicKey(certs[0].Blob)
		if err != nil {
			return err
		}
		cert := pk.(*ssh.Certificate)
		data := userauthData(sid, "deploy", cert, nil)
		sig, err := a.Sign(cert, data)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if err := cert.Verify(data, sig); err != nil {
			return err
		}
		// A key warden does not hold goes upstream; whatever the upstream
		// does, the answer comes back.
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		otherSigner, _ := ssh.NewSignerFromKey(other)
		_, _ = a.Sign(otherSigner.PublicKey(), []byte("data"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return comments
}

func TestFaultUpstreamKilledAndRestarted(t *testing.T) {
	upSock := filepath.Join(t.TempDir(), "up.sock")
	stop := runSSHAgent(t, upSock)
	addUserKey(t, upSock, "user-key")
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Upstream = upSock
		cfg.ListDeadline = time.Second
		cfg.UpstreamTimeout = 500 * time.Millisecond
	})
	const slack = 10 * time.Second
	if got := listAndSign(t, env, time.Second+slack); len(got) != 2 || got[1] != "user-key" {
		t.Fatalf("listed %v, want [warden cert, user-key]", got)
	}
	stop()
	if got := listAndSign(t, env, time.Second+slack); len(got) != 1 {
		t.Fatalf("upstream killed: listed %v, want only warden's certificate", got)
	}
	runSSHAgent(t, upSock)
	addUserKey(t, upSock, "user-key-2")
	if got := listAndSign(t, env, time.Second+slack); len(got) != 2 || got[1] != "user-key-2" {
		t.Fatalf("upstream restarted: listed %v, want [warden cert, user-key-2]", got)
	}
}

// TestFaultUpstreamRestartedSeenByOpenConnection: a connection opened
// before the upstream agent died sees the restarted agent's keys (its
// upstream connection is redialled, not kept broken for its lifetime).
func TestFaultUpstreamRestartedSeenByOpenConnection(t *testing.T) {
	upSock := filepath.Join(t.TempDir(), "up.sock")
	stop := runSSHAgent(t, upSock)
	addUserKey(t, upSock, "user-key")
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Upstream = upSock
		cfg.ListDeadline = time.Second
		cfg.UpstreamTimeout = 500 * time.Millisecond
	})
	_, a := dial(t, env.socket)
	list := func() []string {
		var out []string
		if err := within(t, 10*time.Second, "list", func() error {
			keys, err := a.List()
			for _, k := range keys {
				out = append(out, k.Comment)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list(); len(got) != 1 || got[0] != "user-key" {
		t.Fatalf("listed %v, want [user-key]", got)
	}
	stop()
	// warden has nothing of its own for this unbound connection: with the
	// upstream agent gone the answer is failure, so ssh-add reports an
	// error rather than "The agent has no identities" (issue 13).
	if _, err := a.List(); err == nil {
		t.Fatal("upstream killed: the list succeeded, want a failure")
	}
	runSSHAgent(t, upSock)
	addUserKey(t, upSock, "user-key-2")
	if got := list(); len(got) != 1 || got[0] != "user-key-2" {
		t.Fatalf("upstream restarted: the connection opened before lists %v, want [user-key-2]", got)
	}
}

// fakeUpstream is a unix listener that answers every request per mode.
func fakeUpstream(t *testing.T, mode string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))); err != nil {
						return
					}
					switch mode {
					case "garbage":
						c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
						return
					case "garbage-framed":
						c.Write([]byte{0, 0, 0, 7, 0x63, 0xde, 0xad, 0xbe, 0xef, 0, 1})
					case "bad-list":
						// IDENTITIES_ANSWER claiming a million keys.
						c.Write([]byte{0, 0, 0, 5, 12, 0, 0x0f, 0x42, 0x40})
					case "oversized":
						c.Write([]byte{0xff, 0xff, 0xff, 0xf0})
						c.Write(make([]byte, 64<<10))
					case "too-much":
						// Under x/crypto's 16 MiB reply limit, far over OpenSSH's 256 KiB.
						c.Write(binary.BigEndian.AppendUint32(nil, 8<<20))
						c.Write(append([]byte{12, 0, 0, 0, 1}, make([]byte, 8<<20-5)...))
					case "silent":
						<-done
						return
					case "hangup":
						return
					}
				}
			}()
		}
	}()
	return sock
}

func TestFaultUpstreamMisbehaves(t *testing.T) {
	for _, mode := range []string{"garbage", "garbage-framed", "bad-list", "oversized", "too-much", "silent", "hangup"} {
		t.Run(mode, func(t *testing.T) {
			up := fakeUpstream(t, mode)
			env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
				cfg.Upstream = up
				// Room for the issuance under -race on a loaded machine; the
				// upstream's faults are bounded by its own 300 ms.
				cfg.ListDeadline = 3 * time.Second
				cfg.UpstreamTimeout = 300 * time.Millisecond
				cfg.UpstreamSignTimeout = 300 * time.Millisecond
			})
			for i := 0; i < 2; i++ {
				if got := listAndSign(t, env, 3*time.Second+10*time.Second); len(got) != 1 {
					t.Fatalf("listed %v, want only warden's certificate", got)
				}
			}
			// The same connection keeps answering across repeated upstream
			// faults: with nothing of warden's for it (no bind), a failure
			// each time, never a hang or a closed connection (issue 13).
			_, a := dial(t, env.socket)
			for i := 0; i < 3; i++ {
				if err := within(t, 10*time.Second, "list on a connection with a bad upstream", func() error {
					_, err := a.List()
					return err
				}); err == nil {
					t.Fatal("list with a bad upstream and nothing of warden's succeeded, want a failure")
				}
			}
		})
	}
}
