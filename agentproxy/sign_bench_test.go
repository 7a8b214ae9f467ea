package agentproxy

// Benchmarks of the per-signature path (issue 7), driving the real server
// over its Unix socket with a real audit log, so that
// `go test -bench Sign -cpuprofile` shows where a signature's CPU goes.
//
//	go test -run '^$' -bench 'Sign' -benchmem -cpuprofile cpu.out ./agentproxy/
//	go tool pprof -top agentproxy.test cpu.out
//
// WARDEN_BENCH_AUDIT_DIR puts the audit log elsewhere (default: a fresh
// directory under /dev/shm when it exists, so fsync is nearly free and the
// profile shows CPU; set it to a directory on disk to include fsync).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/catalog"
)

// benchRecorder is the audit log behind the Recorder interface, as
// cmd/warden-agent wires it.
type benchRecorder struct{ log *audit.Log }

func (r benchRecorder) Record(ctx context.Context, event string, fields map[string]any) error {
	_, err := r.log.Append(ctx, event, fields)
	return err
}

func (r benchRecorder) RecordFields(ctx context.Context, event string, f *audit.Fields) error {
	_, err := r.log.AppendFields(ctx, event, f)
	return err
}

func (r benchRecorder) RecordFieldsLater(event string, f *audit.Fields, done func(error)) bool {
	return r.log.AppendLater(event, f, done)
}

func (r benchRecorder) Head() string { _, h := r.log.Head(); return h }

// openBenchAudit opens a real audit log for a benchmark and checks, when
// the benchmark is done, that the whole chain verifies.
func openBenchAudit(b *testing.B) benchRecorder {
	b.Helper()
	dir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir = "/dev/shm"
	}
	return openBenchAuditIn(b, dir)
}

// openBenchAuditIn is openBenchAudit with the log under dir (a test
// directory on disk when dir is "") unless WARDEN_BENCH_AUDIT_DIR says.
func openBenchAuditIn(b *testing.B, dir string) benchRecorder {
	b.Helper()
	if env := os.Getenv("WARDEN_BENCH_AUDIT_DIR"); env != "" {
		dir = env
	}
	if dir == "" {
		dir = b.TempDir()
	}
	d, err := os.MkdirTemp(dir, "warden-bench-audit-")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(d, "audit.log")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		l.Close()
		res, err := audit.Verify(path)
		if err != nil {
			b.Errorf("audit log does not verify: %v", err)
		} else if res.Records == 0 {
			b.Errorf("audit log is empty")
		}
		os.RemoveAll(d)
	})
	return benchRecorder{l}
}

// rawSigner sends prebuilt SIGN_REQUEST frames and reads the replies, so
// the client's own CPU stays out of the server's profile as far as it can.
type rawSigner struct {
	c   net.Conn
	req []byte
	buf []byte
}

func newRawSigner(c net.Conn, key ssh.PublicKey, data []byte) *rawSigner {
	body := ssh.Marshal(struct {
		Type  byte
		Key   []byte
		Data  []byte
		Flags uint32
	}{13 /* SSH_AGENTC_SIGN_REQUEST */, key.Marshal(), data, 0})
	req := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return &rawSigner{c: c, req: append(req, body...), buf: make([]byte, 4096)}
}

func (r *rawSigner) sign() error {
	if _, err := r.c.Write(r.req); err != nil {
		return err
	}
	if _, err := io.ReadFull(r.c, r.buf[:4]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(r.buf[:4])
	if n == 0 || int(n) > len(r.buf) {
		return fmt.Errorf("reply of %d bytes", n)
	}
	if _, err := io.ReadFull(r.c, r.buf[:n]); err != nil {
		return err
	}
	if r.buf[0] != 14 { // SSH_AGENT_SIGN_RESPONSE
		return fmt.Errorf("reply type %d, want a signature", r.buf[0])
	}
	return nil
}

// rawCall sends one request body and returns the reply body.
func (r *rawSigner) call(body []byte) ([]byte, error) {
	req := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := r.c.Write(append(req, body...)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r.c, r.buf[:4]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(r.buf[:4])
	if n == 0 || int(n) > len(r.buf) {
		return nil, fmt.Errorf("reply of %d bytes", n)
	}
	if _, err := io.ReadFull(r.c, r.buf[:n]); err != nil {
		return nil, err
	}
	return r.buf[:n], nil
}

// rawLogin binds a raw connection to host's session sid and lists, as ssh
// does, without x/crypto's client (whose reader goroutine would take the
// replies meant for rawSigner).
func rawLogin(b *testing.B, socket string, host ssh.Signer, sid []byte) net.Conn {
	b.Helper()
	c := dialRaw(b, socket)
	r := &rawSigner{c: c, buf: make([]byte, 64<<10)}
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		b.Fatal(err)
	}
	bindMsg := ssh.Marshal(sessionBindMsg{HostKey: host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig)})
	ext := append(ssh.Marshal(struct {
		Type byte
		Name string
	}{27 /* SSH_AGENTC_EXTENSION */, extSessionBind}), bindMsg...)
	if rep, err := r.call(ext); err != nil || rep[0] != 6 /* SSH_AGENT_SUCCESS */ {
		b.Fatalf("session-bind: %v %v", err, rep)
	}
	if rep, err := r.call([]byte{11 /* SSH_AGENTC_REQUEST_IDENTITIES */}); err != nil || rep[0] != 12 {
		b.Fatalf("list: %v %v", err, rep)
	}
	return c
}

// certSigner logs in on a new connection as ssh does (bind, list) and
// returns a signer of hostbound userauth requests with the certificate.
func certSigner(b *testing.B, env *testEnv) *rawSigner {
	b.Helper()
	// The certificate, issued on a first connection (the cache is shared).
	_, a := dial(b, env.socket)
	cert, _, err := login(a, env.host)
	if err != nil {
		b.Fatal(err)
	}
	sid := randomSID(b)
	c := rawLogin(b, env.socket, env.host, sid)
	data := userauthData(sid, "deploy", cert, env.host.PublicKey())
	s := newRawSigner(c, cert, data)
	if err := s.sign(); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchCertEnv(b *testing.B) *testEnv {
	rec := openBenchAudit(b)
	return startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Recorder = rec })
}

// BenchmarkSignCachedCert: one client signing with warden's cached
// certificate, a durable cert.used record per signature.
func BenchmarkSignCachedCert(b *testing.B) {
	env := benchCertEnv(b)
	s := certSigner(b, env)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.sign(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignCachedCertParallel: GOMAXPROCS×parallelism clients, one
// connection each.
func BenchmarkSignCachedCertParallel(b *testing.B) {
	env := benchCertEnv(b)
	signParallel(b, func() *rawSigner { return certSigner(b, env) })
}

// signParallel signs from 4×GOMAXPROCS clients at once, each on its own
// connection made by newSigner before the timer starts.
func signParallel(b *testing.B, newSigner func() *rawSigner) {
	b.SetParallelism(4)
	var signers []*rawSigner
	for i := 0; i < 4*runtimeProcs(); i++ {
		signers = append(signers, newSigner())
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := signers[next.Add(1)-1]
		for pb.Next() {
			if err := s.sign(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSignUpstream: one client signing with a key held by OpenSSH's
// ssh-agent behind warden (best-effort upstream.used record).
func BenchmarkSignUpstream(b *testing.B) {
	upSock, _ := startSSHAgent(b)
	_, priv, _ := ed25519Key()
	uc, err := net.Dial("unix", upSock)
	if err != nil {
		b.Fatal(err)
	}
	if err := agent.NewClient(uc).Add(agent.AddedKey{PrivateKey: priv, Comment: "user key"}); err != nil {
		b.Fatal(err)
	}
	uc.Close()
	userKey, _ := ssh.NewSignerFromKey(priv)
	rec := openBenchAudit(b)
	env := startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Recorder = rec; cfg.Upstream = upSock })
	sid := randomSID(b)
	c := rawLogin(b, env.socket, env.host, sid)
	data := userauthData(sid, "deploy", userKey.PublicKey(), env.host.PublicKey())
	s := newRawSigner(c, userKey.PublicKey(), data)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.sign(); err != nil {
			b.Fatal(err)
		}
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func ed25519Key() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
