package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/internal/hintcall"
)

// TestSSHConfigShells: the block `warden-agent ssh-config` prints works
// with every shell ssh may run Match exec with (issue 13 item 5). For each
// of bash, zsh, fish and dash as SHELL, a real ssh logs in with warden's
// certificate, and the audit log's hint record names that ssh's pid; an
// `ssh -G` with the same shell sends a hint with its own pid and mints
// nothing. fish has no $PPID, which the block therefore does not use.
func TestSSHConfigShells(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	cfg := e.sshConfig(s, a.socket)
	if b, _ := os.ReadFile(cfg); bytes.Contains(b, []byte("$")) {
		t.Fatalf("the ssh-config block uses a shell variable, which not every shell has:\n%s", b)
	}

	for _, shell := range []string{"bash", "zsh", "fish", "dash"} {
		t.Run(shell, func(t *testing.T) {
			path, err := exec.LookPath(shell)
			if err != nil {
				t.Skipf("%s is not installed (apt-get install %s; .ci/run installs it): %v", shell, shell, err)
			}
			env := []string{"SHELL=" + path}

			// A login: the hint record carries this ssh's pid, and the
			// certificate it issued is the one used.
			word := fmt.Sprintf("%s-%d", shell, time.Now().UnixNano())
			pid, r := sshWithPid(t, e, env, "-F", cfg, user+"@target", "echo", word)
			if r.code != 0 || strings.TrimSpace(r.stdout) != word {
				t.Fatalf("ssh with SHELL=%s: want %q and exit 0, got %s", path, word, r)
			}
			recs := a.audit(t)
			hints := hintsFor(recs, pid)
			if len(hints) != 1 {
				t.Fatalf("SHELL=%s: want one hint record with ssh_pid %d (the ssh process), got %v; all hints: %v",
					path, pid, hints, events(recs, "hint"))
			}
			if hints[0].str("user") != user || hints[0].str("host") != "127.0.0.1" {
				t.Errorf("SHELL=%s: hint names %s@%s, want %s@127.0.0.1", path, hints[0].str("user"), hints[0].str("host"), user)
			}
			used := events(recs, "cert.used", "user", user)
			if len(used) == 0 || len(events(recs, "cert.issued", "serial", used[len(used)-1].str("serial"))) != 1 {
				t.Errorf("SHELL=%s: the login did not use a certificate warden issued: %v", path, events(recs, "cert.used"))
			}

			// ssh -G runs Match exec too; its hint names the ssh -G
			// process and issues nothing.
			issuedBefore := len(events(recs, "cert.issued"))
			pid, r = sshWithPid(t, e, env, "-F", cfg, "-G", user+"@target")
			if r.code != 0 || !strings.Contains(r.stdout, "identityagent "+a.socket) {
				t.Fatalf("ssh -G with SHELL=%s: the Match block did not apply (want identityagent %s): %s", path, a.socket, r)
			}
			// Nothing durable follows this hint's record (nothing issued).
			recs = a.auditOnce(t, func(recs []auditRecord) bool { return len(hintsFor(recs, pid)) >= 1 })
			if len(hintsFor(recs, pid)) != 1 {
				t.Errorf("ssh -G with SHELL=%s: no hint record with ssh_pid %d: %v", path, pid, events(recs, "hint"))
			}
			if n := len(events(recs, "cert.issued")); n != issuedBefore {
				t.Errorf("ssh -G with SHELL=%s minted a certificate", path)
			}
		})
	}
}

// hintsFor returns the hint records naming pid (a JSON number).
func hintsFor(recs []auditRecord, pid int) []auditRecord {
	var out []auditRecord
	for _, r := range events(recs, "hint") {
		if n, ok := r["ssh_pid"].(float64); ok && int(n) == pid {
			out = append(out, r)
		}
	}
	return out
}

// sshWithPid runs ssh like e.run does and also returns its pid.
func sshWithPid(t *testing.T, e *testEnv, env []string, args ...string) (int, result) {
	t.Helper()
	cmd := exec.Command("ssh", args...)
	cmd.Env = e.environ(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(30*time.Second, func() { killGroup(cmd, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	return cmd.Process.Pid, result{stdout: out.String(), stderr: errb.String(), err: err, code: cmd.ProcessState.ExitCode()}
}

// TestMatchExecSSHPid: the hint finds ssh from a fake /proc laid out as
// each shell leaves it: the hint run in place by the shell (ssh is the
// parent) or as the shell's child (ssh is the grandparent).
func TestMatchExecSSHPid(t *testing.T) {
	root := t.TempDir()
	proc := func(pid, ppid int, comm string, argv ...string) {
		d := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (%s) S %d %d 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n", pid, comm, ppid, pid)
		os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644)
	}
	proc(100, 1, "ssh", "ssh", "-c", "aes128-ctr", "host")
	proc(200, 100, "fish", "/usr/bin/fish", "-c", "/bin/warden-agent hint --user u --host h --port 22")
	proc(300, 1, "my ssh) (x", "/opt/ssh-wrapped", "host")
	proc(400, 300, "dash", "/bin/sh", "-c", "warden-agent hint --user u --host h --port 22")
	proc(500, 1, "sh", "sh", "-c", "warden-agent hint")
	for _, c := range []struct {
		parent, want int
		why          string
	}{
		{100, 100, "bash, dash and zsh exec the hint in place: the parent is ssh"},
		{200, 100, "fish forks the hint: the parent is `fish -c LINE`, ssh is its parent"},
		{300, 300, "an ssh under another name that runs the hint itself"},
		{400, 300, "a shell -c under an ssh of another name"},
		{500, 500, "a shell whose parent is init is not skipped"},
		{999, 999, "a vanished parent is named as is; the agent refuses it"},
	} {
		if got := hintcall.MatchExecSSHPid(root, c.parent); got != c.want {
			t.Errorf("%s: matchExecSSHPid(%d) = %d, want %d", c.why, c.parent, got, c.want)
		}
	}
}
