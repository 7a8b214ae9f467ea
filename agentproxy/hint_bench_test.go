package agentproxy

// Benchmarks of the hint round trip (issue 17): what `warden-agent hint`
// costs the agent for each ssh, scp, sftp or Ansible connection. Each
// iteration is one hint process's whole exchange: dial the real server's
// socket, send the hint, read the reply, close. The audit log is a real
// one on disk (WARDEN_BENCH_AUDIT_DIR moves it, e.g. to /dev/shm to leave
// fsync out).
//
//	go test -run '^$' -bench 'Hint' -benchmem ./agentproxy/

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/audit"
	"github.com/netkingdom/ops-warden/catalog"
)

// benchHintEnv is a server with a real audit log on disk and no global
// hint rate limit (b.N hints would exceed it; the limit is tested in
// trust_test.go).
func benchHintEnv(b *testing.B) *testEnv {
	b.Helper()
	// Registered before startServer's cleanup, so it runs after it: the
	// server has written everything before the log is closed and verified.
	rec := openBenchAuditIn(b, "")
	env := startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Recorder = rec })
	env.srv.hintRate = audit.NewLimiter(1e9, 1e9)
	return env
}

// hintFrame is the framed extension request `warden-agent hint` sends.
func hintFrame(b *testing.B, req HintRequest) []byte {
	body, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	msg := ssh.Marshal(struct {
		Type     byte
		Name     string
		Contents []byte `ssh:"rest"`
	}{msgExtension, ExtHint, body})
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
}

// hintOnce is one hint process's exchange on a fresh connection.
func hintOnce(socket string, frame, buf []byte) (HintReply, error) {
	var reply HintReply
	c, err := net.Dial("unix", socket)
	if err != nil {
		return reply, err
	}
	defer c.Close()
	if _, err := c.Write(frame); err != nil {
		return reply, err
	}
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return reply, err
	}
	n := binary.BigEndian.Uint32(buf[:4])
	if n == 0 || int(n) > len(buf) {
		return reply, fmt.Errorf("reply of %d bytes", n)
	}
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return reply, err
	}
	if buf[0] != msgSuccess {
		return reply, fmt.Errorf("reply type %d", buf[0])
	}
	err = json.Unmarshal(buf[1:n], &reply)
	return reply, err
}

// BenchmarkHint: the same target hinted again and again, as the ssh
// processes of an Ansible task or of sessions riding a ControlMaster do
// (this test process plays every ssh).
func BenchmarkHint(b *testing.B) {
	env := benchHintEnv(b)
	frame := hintFrame(b, HintRequest{SSHPid: os.Getpid(), User: "bob", Host: "db1.example.com", Port: 22})
	buf := make([]byte, 4096)
	if r, err := hintOnce(env.socket, frame, buf); err != nil || !r.OK || r.Serial == "" {
		b.Fatalf("first hint: %+v %v", r, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, err := hintOnce(env.socket, frame, buf); err != nil || !r.OK {
			b.Fatalf("hint: %+v %v", r, err)
		}
	}
}

// BenchmarkHintNewTarget: every hint names another host of the same route
// (the certificate is cached, but no earlier hint matches).
func BenchmarkHintNewTarget(b *testing.B) {
	env := benchHintEnv(b)
	buf := make([]byte, 4096)
	frames := make([][]byte, 4096)
	for i := range frames {
		frames[i] = hintFrame(b, HintRequest{SSHPid: os.Getpid(), User: "bob", Host: fmt.Sprintf("h%d.example.com", i), Port: 22})
	}
	if r, err := hintOnce(env.socket, frames[0], buf); err != nil || !r.OK || r.Serial == "" {
		b.Fatalf("first hint: %+v %v", r, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The store allows one live hint per ssh pid; this process plays
		// a new ssh each time.
		env.srv.hints.drop(os.Getpid())
		if r, err := hintOnce(env.socket, frames[(i+1)%len(frames)], buf); err != nil || !r.OK {
			b.Fatalf("hint: %+v %v", r, err)
		}
	}
}
