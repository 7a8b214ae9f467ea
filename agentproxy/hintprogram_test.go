package agentproxy

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/netkingdom/ops-warden/catalog"
)

// copyTestBinary copies this test binary to dir/name: a program file of
// its own (another inode), which runs the hint child as this one does.
func copyTestBinary(t *testing.T, dir, name string) string {
	t.Helper()
	in, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(dir, name)
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHintProgramSpeaksOnlyTheHint: the warden-hint program named by
// Config.HintProgram (a file of its own, beside warden-agent) may send
// the hint extension; another program may not, even one with the same
// bytes; and warden-hint may send nothing else of warden's.
func TestHintProgramSpeaksOnlyTheHint(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peer executables are compared through /proc")
	}
	dir := t.TempDir()
	hintProg := copyTestBinary(t, dir, "warden-hint")
	other := copyTestBinary(t, dir, "warden-hint-copy")
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.HintProgram = hintProg })

	reply, err := hintFromProgram(t, hintProg, env.socket, "alice", "db1.example.com")
	if err != nil || !reply.OK {
		t.Fatalf("hint from warden-hint: %+v %v", reply, err)
	}
	if _, err := hintFromProgram(t, other, env.socket, "alice", "db2.example.com"); err == nil || !strings.Contains(err.Error(), "does not support") {
		t.Fatalf("hint from another program with the same bytes: %v, want it refused", err)
	}
	status := func(program string) error {
		cmd := exec.Command(program, "-test.run=^$")
		cmd.Env = append(os.Environ(), "WARDEN_TEST_STATUS_SOCKET="+env.socket)
		return cmd.Run()
	}
	if err := status(os.Args[0]); err != nil {
		t.Fatalf("status from the agent's own program: %v", err)
	}
	if err := status(hintProg); err == nil {
		t.Fatal("warden-hint was answered status: it may send the hint only")
	}
	env2 := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.HintProgram = "" })
	if _, err := hintFromProgram(t, hintProg, env2.socket, "alice", "db1.example.com"); err == nil {
		t.Fatal("a hint program was accepted by an agent that names none")
	}
}
