package agentproxy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Linux process table against real processes: a child and a
// grandchild started here.
func TestProcfsRealProcesses(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscallKill(grandchild) })
	child, self := cmd.Process.Pid, os.Getpid()
	procs := systemProcs("/proc")
	// The shell forks first and execs sleep a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, err := procs.proc(grandchild); err == nil && p.Name == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the grandchild never became sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if !isDescendant(procs, child, self) || !isDescendant(procs, grandchild, self) || !isDescendant(procs, grandchild, child) {
		t.Error("child and grandchild must be descendants of this process, the grandchild of the child")
	}
	if isDescendant(procs, self, child) || isDescendant(procs, child, grandchild) || descendantOf("/proc", self, grandchild) {
		t.Error("ancestors are no descendants")
	}
	chain := processChain("/proc", grandchild)
	if len(chain) < 3 || chain[0].Name != "sleep" || chain[1].Pid != child || chain[2].Pid != self {
		t.Errorf("chain of the grandchild: %+v", chain)
	}
	if chain[0].Exe == "" || filepath.Base(chain[0].Exe) != "sleep" {
		t.Errorf("exe of sleep: %q", chain[0].Exe)
	}
	if argv := cmdline("/proc", grandchild); len(argv) != 2 || argv[1] != "30" {
		t.Errorf("cmdline of sleep 30: %q", argv)
	}
	s1, err := startTime("/proc", child)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := startTime("/proc", child)
	self1, _ := startTime("/proc", self)
	if s1 != s2 || s1 < self1 {
		t.Errorf("start times: child %d then %d, this process %d", s1, s2, self1)
	}
	if _, err := startTime("/proc", 0); err == nil {
		t.Error("startTime of pid 0 must fail")
	}
	if runsThisExecutable("/proc", child) || !runsThisExecutable("/proc", self) {
		t.Error("runsThisExecutable: this process yes, sh no")
	}
}

func syscallKill(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

// sameExecutable compares files, not names: a hard link to this program
// counts, a byte-for-byte copy and another program do not.
func TestSameExecutable(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "warden-agent")
	if err := os.Link(self, link); err != nil {
		t.Skipf("no hard link possible here: %v", err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "sym")
	if err := os.Symlink(self, sym); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		self: true, link: true, sym: true,
		cp: false, "/bin/sh": false, "": false, filepath.Join(dir, "missing"): false,
		self + " (deleted)": false,
	} {
		if got := sameExecutable(path); got != want {
			t.Errorf("sameExecutable(%q) = %v, want %v", path, got, want)
		}
	}
}
