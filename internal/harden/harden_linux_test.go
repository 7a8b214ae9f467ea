package harden

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain runs Process in a child process (the test binary again), so
// the test process itself stays debuggable.
func TestMain(m *testing.M) {
	if os.Getenv("HARDEN_CHILD") == "1" {
		if err := Process(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_CORE, &lim)
		// Raising the limit again must fail: the hard limit is 0 too.
		raise := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20})
		fmt.Printf("dumpable=%d err=%v core=%d/%d raise=%v\n", dumpable, err, lim.Cur, lim.Max, raise != nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestProcess(t *testing.T) {
	if os.Getuid() == 0 {
		// Root keeps CAP_SYS_RESOURCE and may raise a hard limit; the
		// check of the hard limit below is then skipped.
		t.Log("running as root: raising the limit again is allowed to root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HARDEN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	want := "dumpable=0 err=<nil> core=0/0 raise=true"
	if os.Getuid() == 0 {
		want = strings.TrimSuffix(want, "raise=true")
		got = got[:strings.LastIndex(got, "raise=")]
	}
	if got != want {
		t.Errorf("after Process: %q, want %q", got, want)
	}
}
