package policy

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHeld starts name with args, held open on its stdin until the test
// ends, and returns its pid.
func startHeld(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func waitComm(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c := ProcessChain(pid, 1); len(c) == 1 && c[0].Name == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never took the name %q", pid, want)
}

// TestCallersMatchTheKernelExecutable: with real processes, a program
// that renames itself "ssh" (PR_SET_NAME, here through /proc/self/comm)
// does not match callers: [ssh], and a binary copied to another directory
// as ssh does not match callers: [/usr/bin/ssh]. It does match the bare
// name [ssh], which is why lint warns about bare names.
func TestCallersMatchTheKernelExecutable(t *testing.T) {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("no /proc")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	byPath := mustParse(t, "rules:\n  - callers: [/usr/bin/ssh]\n    effect: allow\n")
	byName := mustParse(t, "rules:\n  - callers: [ssh]\n    effect: allow\n")

	// A shell that calls itself ssh and waits.
	pid := startHeld(t, bash, "-c", `printf ssh > /proc/$$/comm; read x`)
	waitComm(t, pid, "ssh")
	renamed := Input{Principal: "u", Callers: ProcessChain(pid, 1), Bound: true}
	if d := byName.Evaluate(renamed); d.Effect != EffectDeny {
		t.Errorf("a process named ssh by prctl matched callers: [ssh]: %s", byName.Explain(renamed))
	}

	// A copy of another program placed as <dir>/ssh.
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	fake := filepath.Join(t.TempDir(), "ssh")
	src, err := os.Open(cat)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(fake, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()
	pid = startHeld(t, fake)
	waitComm(t, pid, "ssh")
	copied := Input{Principal: "u", Callers: ProcessChain(pid, 1), Bound: true}
	if !strings.HasSuffix(copied.Callers[0].Exe, "/ssh") {
		t.Fatalf("exe of the copy is %q", copied.Callers[0].Exe)
	}
	if d := byPath.Evaluate(copied); d.Effect != EffectDeny {
		t.Errorf("%s matched callers: [/usr/bin/ssh]: %s", fake, byPath.Explain(copied))
	}
	if d := byName.Evaluate(copied); d.Effect != EffectAllow {
		t.Errorf("bare name: %s should match (the documented weakness lint warns about): %s", fake, byName.Explain(copied))
	}
}
