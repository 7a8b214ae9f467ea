package main

// OpenSSH's own agent regression scripts, as Debian's openssh-tests package
// installs them (/usr/lib/openssh/regress), run unchanged against the
// installed binaries (issue 13): every script runs once against ssh-agent
// (the baseline) and once with TEST_SSH_SSHAGENT pointing at
// contrib/regress/warden-ssh-agent, which starts warden-agent in front of
// a real ssh-agent and answers to ssh-agent's command line. A script that
// passes on the baseline and fails through warden is a warden bug; the
// failure names each failed step (the script's trace line) and its error.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// regressSuite is where openssh-tests installs the scripts.
const regressSuite = "/usr/lib/openssh/regress"

// regressUser runs the scripts when the tests run as root: OpenSSH's suite
// is meant for an ordinary user (agent-ptrace.sh and agent-getpeereid.sh
// skip themselves as root), and root's own shell start-up files would run
// in every login the scripts make.
const regressUser = "warden-regress"

// regressScript is one script of the suite and why it may not run.
type regressScript struct {
	name string
	// why a skip of the script itself is expected here, shown with the
	// script's own message.
	skipNote string
}

// regressScripts, longest first: go test runs -parallel (GOMAXPROCS) of
// them at a time, so agent-restrict.sh (over a hundred logins) starts at
// once and the short ones fill the other lanes.
var regressScripts = []regressScript{
	{name: "agent-restrict.sh"},
	{name: "agent.sh"},
	{name: "hostkey-agent.sh"},
	{name: "agent-pkcs11.sh"},
	{name: "agent-pkcs11-restrict.sh"},
	{name: "agent-pkcs11-cert.sh"},
	{name: "agent-timeout.sh"},
	{name: "agent-subprocess.sh"},
	{name: "agent-getpeereid.sh", skipNote: "it switches to uid nobody with SUDO=sudo (passwordless sudo), which this " +
		"harness does not configure; warden's refusal of another uid is TestE2EOtherUIDRefused"},
	{name: "agent-ptrace.sh", skipNote: "it needs a non-root user and SUDO to make $SSHAGENT setgid root (and " +
		"chowns that file back to the user afterwards), which this harness does not do; TestAgentPtraceRefused " +
		"makes its check without sudo"},
}

// regressRun is the outcome of one script on one side.
type regressRun struct {
	out     string // the script's stdout and stderr
	failed  string // failed-regress.log: the failed steps
	logs    string // what ssh and sshd said at the failures, without debug lines
	code    int
	err     error
	elapsed time.Duration
}

// regressRunner holds what every run shares: the identity the scripts run
// as, and a directory that identity owns with warden-agent and the wrapper.
type regressRunner struct {
	dir      string
	bin      string
	keys     string              // test-exec.sh's user and host keys, made once for all runs
	cred     *syscall.Credential // nil: run as ourselves
	userName string
}

func TestOpenSSHRegress(t *testing.T) {
	if _, err := os.Stat(filepath.Join(regressSuite, "test-exec.sh")); err != nil {
		t.Skipf("OpenSSH's regress suite is not installed (apt-get install openssh-tests): %v", err)
	}
	needPrograms(t, "ssh", "ssh-agent", "ssh-add", "ssh-keygen")
	sshdPath(t)
	if os.Getuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755) // sshd -t wants it when root starts it
	}
	r := newRegressRunner(t)
	r.makeKeys(t)

	// Scripts run in parallel (go test's -parallel, default GOMAXPROCS),
	// each on both sides at once: most of a script's time is spent in
	// sleeps and in sshd's session start-up, not on the CPU.
	for n, s := range regressScripts {
		t.Run(s.name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(regressSuite, s.name)); err != nil {
				t.Skipf("%s is not in this OpenSSH's regress suite (a later release added it)", s.name)
			}
			t.Parallel()
			sides := []string{"ssh-agent", "warden"}
			ports := []int{freePort(t), freePort(t)}
			results := make([]*regressRun, len(sides))
			var wg sync.WaitGroup
			for i, side := range sides {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = r.run(n, s.name, side, ports[i])
				}()
			}
			wg.Wait()
			for i, side := range sides {
				t.Run(side, func(t *testing.T) {
					res := results[i]
					t.Logf("%s through %s: exit %d in %s", s.name, side, res.code, res.elapsed.Round(time.Second))
					if msg := regressSkipped(res.out); msg != "" {
						if s.skipNote == "" {
							t.Fatalf("%s skipped itself (%q), which this harness does not expect:\n%s", s.name, msg, res.out)
						}
						t.Skipf("%s skipped itself: %q; %s", s.name, msg, s.skipNote)
					}
					if res.err != nil {
						t.Fatalf("%s: %v\n%s", s.name, res.err, res.out)
					}
					if res.code != 0 {
						t.Errorf("%s failed through %s (exit %d); failed steps:\n%s\noutput:\n%s\n%s",
							s.name, side, res.code, regressFailedSteps(res.failed), res.out, res.logs)
					}
				})
			}
		})
	}
}

// newRegressRunner picks the identity the scripts run as and prepares a
// directory it owns, holding warden-agent and the wrapper.
func newRegressRunner(t *testing.T) *regressRunner {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "wr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("WARDEN_REGRESS_KEEP") != "" {
			t.Logf("WARDEN_REGRESS_KEEP: the scripts' directories are kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	r := &regressRunner{dir: dir, bin: filepath.Join(dir, "bin")}
	if u, err := user.Current(); err == nil {
		r.userName = u.Username
	}
	if os.Getuid() == 0 {
		cred, err := regressCredential()
		if err != nil {
			t.Logf("running the scripts as root (%v); scripts that need another user skip themselves", err)
		} else {
			r.cred, r.userName = cred, regressUser
		}
	}
	if err := os.MkdirAll(r.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(wardenExe, filepath.Join(r.bin, "warden-agent")); err != nil {
		t.Fatal(err)
	}
	wrapper, err := filepath.Abs("../../contrib/regress/warden-ssh-agent")
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(wrapper, filepath.Join(r.bin, "warden-ssh-agent")); err != nil {
		t.Fatal(err)
	}
	if r.cred != nil {
		if err := os.Chown(dir, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// makeKeys makes, once, the key of every type `ssh -Q key-plain` lists
// (sk types with the suite's sk-dummy, as test-exec.sh does), so that
// test-exec.sh in each run uses them ("using cached key type") instead of
// making its own RSA and DSA keys twenty times over.
func (r *regressRunner) makeKeys(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ssh", "-Q", "key-plain").Output()
	if err != nil {
		t.Fatalf("ssh -Q key-plain: %v", err)
	}
	r.keys = filepath.Join(r.dir, "keys")
	if err := os.MkdirAll(r.keys, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, typ := range strings.Fields(string(out)) {
		cmd := exec.Command("ssh-keygen", "-q", "-N", "", "-t", typ, "-f", filepath.Join(r.keys, typ))
		cmd.Env = append(os.Environ(), "SSH_SK_PROVIDER="+skDummy)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Logf("ssh-keygen -t %s: %v: %s (test-exec.sh makes it itself)", typ, err, b)
			os.Remove(filepath.Join(r.keys, typ))
		}
	}
}

// copyKeys copies the keys makeKeys made into an object directory; the
// copies are newer than ssh-keygen, which test-exec.sh requires of a
// cached key.
func (r *regressRunner) copyKeys(obj string) error {
	if r.keys == "" {
		return nil
	}
	ents, err := os.ReadDir(r.keys)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		dst := filepath.Join(obj, ent.Name())
		if err := copyFile(filepath.Join(r.keys, ent.Name()), dst); err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(ent.Name(), ".pub") {
			mode = 0o644
		}
		if err := os.Chmod(dst, mode); err != nil {
			return err
		}
		if r.cred != nil {
			if err := os.Chown(dst, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// regressCredential returns the uid and gid of regressUser, creating the
// user (no home, /bin/sh) when it does not exist.
func regressCredential() (*syscall.Credential, error) {
	u, err := user.Lookup(regressUser)
	if err != nil {
		out, cerr := exec.Command("useradd", "--system", "--user-group", "--home-dir", "/nonexistent",
			"--no-create-home", "--shell", "/bin/sh", regressUser).CombinedOutput()
		if cerr != nil {
			return nil, fmt.Errorf("useradd %s: %v: %s", regressUser, cerr, out)
		}
		if u, err = user.Lookup(regressUser); err != nil {
			return nil, err
		}
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// run runs one script the way the suite's Makefile does (test-exec.sh
// with the object directory and the script), in a fresh object directory
// that holds the suite's helper programs.
func (r *regressRunner) run(n int, script, side string, port int) *regressRun {
	// Not named after the script: hostkey-agent.sh drops every sshd_config
	// line that mentions "hostkey", the object directory's path included.
	obj := filepath.Join(r.dir, fmt.Sprintf("obj%d-%s", n, side))
	res := &regressRun{code: -1}
	if err := os.MkdirAll(obj, 0o755); err != nil {
		res.err = err
		return res
	}
	for _, helper := range []string{"netcat", "mkdtemp", "setuid-allowed"} {
		if err := os.Symlink(filepath.Join(regressSuite, helper), filepath.Join(obj, helper)); err != nil {
			res.err = err
			return res
		}
	}
	if err := r.copyKeys(obj); err != nil {
		res.err = err
		return res
	}
	if r.cred != nil {
		if err := os.Chown(obj, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
			res.err = err
			return res
		}
	}
	env := []string{
		"PATH=" + r.bin + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"USER=" + r.userName, "LOGNAME=" + r.userName, "HOME=" + obj, "SHELL=/bin/sh",
		"LANG=C", "TMPDIR=" + obj,
		"BUILDDIR=" + regressSuite, // config.h: which features this OpenSSH was built with
		"TEST_SHELL=sh", "TEST_SSH_TRACE=yes", "TEST_SSH_UNSAFE_PERMISSIONS=1",
		"TEST_SSH_PORT=" + strconv.Itoa(port),
		"TEST_SSH_SFTPSERVER=/usr/lib/openssh/sftp-server",
		"TEST_SSH_PLINK=plink", "TEST_SSH_PUTTYGEN=puttygen",
		"GORACE=atexit_sleep_ms=0",
	}
	if side == "warden" {
		env = append(env, "TEST_SSH_SSHAGENT="+filepath.Join(r.bin, "warden-ssh-agent"),
			"WARDEN_AGENT="+filepath.Join(r.bin, "warden-agent"),
			"WARDEN_SSH_AGENT_LOG="+filepath.Join(obj, "warden-agent.log"), "WARDEN_SSH_AGENT_LOG_LEVEL=debug")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(regressSuite, "test-exec.sh"), obj, filepath.Join(regressSuite, script))
	cmd.Dir, cmd.Env = obj, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	res.elapsed = time.Since(start)
	// Whatever the script left running (an agent it did not kill, an
	// sshd) is in its process group.
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res.out = out.String()
	if cmd.ProcessState != nil {
		res.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", res.elapsed.Round(time.Second), ctx.Err())
		res.code = -1
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		res.err = err
	}
	if b, err := os.ReadFile(filepath.Join(obj, "failed-regress.log")); err == nil {
		res.failed = string(b)
	}
	for _, f := range []string{"failed-ssh.log", "failed-sshd.log"} {
		if b, err := os.ReadFile(filepath.Join(obj, f)); err == nil {
			res.logs += f + " (debug lines left out, last 40 lines):\n" + regressTail(string(b), 40)
		}
	}
	if b, err := os.ReadFile(filepath.Join(obj, "warden-agent.log")); err == nil && res.code != 0 {
		res.logs += "warden-agent's warnings, errors and failed operations (last 40):\n" + wardenLogProblems(string(b), 40)
	}
	return res
}

// regressSkipped returns the message of a script that skipped itself
// (test-exec.sh's skip prints "SKIPPED: …"; some scripts print their own
// "skipped (…)" or "Skipped: …" and exit 0), or "".
func regressSkipped(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(strings.ToLower(l), "skipped") {
			return l
		}
	}
	return ""
}

// regressFailedSteps turns failed-regress.log (for each failure: the last
// "trace: step" line, then "FAIL: message") into one line per failed step.
func regressFailedSteps(log string) string {
	var b strings.Builder
	seen := map[string]bool{}
	step := ""
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "trace: "):
			step = strings.TrimPrefix(l, "trace: ")
		case strings.HasPrefix(l, "FAIL: ") || strings.HasPrefix(l, "FATAL: "):
			line := fmt.Sprintf("  step %q: %s", step, l)
			if !seen[line] {
				seen[line] = true
				b.WriteString(line + "\n")
			}
		}
	}
	if b.Len() == 0 {
		return "  (no failed-regress.log entries)\n"
	}
	return b.String()
}

// regressTail is the last n lines of log that are not debug output.
func regressTail(log string, n int) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if l == "" || strings.HasPrefix(l, "debug") {
			continue
		}
		keep = append(keep, "  "+l)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n") + "\n"
}

// TestAgentPtraceRefused makes agent-ptrace.sh's check without the sudo
// that script needs: a process of the agent's own (unprivileged) user must
// not be able to attach a debugger to the agent, which holds keys in
// memory (DESIGN: "the agent process is not dumpable"). ssh-agent
// ensures it with prctl(PR_SET_DUMPABLE, 0) (platform_disable_tracing).
// SSH_AGENT_PID through the wrapper is warden-agent's own pid.
func TestAgentPtraceRefused(t *testing.T) {
	needPrograms(t, "ssh-agent")
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skipf("gdb is not installed (apt-get install gdb): %v", err)
	}
	r := newRegressRunner(t)
	if os.Getuid() == 0 && r.cred == nil {
		t.Skip("root may trace any process, and there is no unprivileged user to try as")
	}
	for _, side := range []string{"ssh-agent", "warden"} {
		t.Run(side, func(t *testing.T) {
			dir := filepath.Join(r.dir, "ptrace-"+side)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if r.cred != nil {
				os.Chown(dir, int(r.cred.Uid), int(r.cred.Gid))
			}
			agent := "ssh-agent"
			if side == "warden" {
				agent = filepath.Join(r.bin, "warden-ssh-agent")
			}
			out, code := r.runAs(t, dir, nil, agent, "-s")
			pid := ""
			for _, f := range strings.Split(out, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(f), "SSH_AGENT_PID="); ok {
					pid = v
				}
			}
			if code != 0 || pid == "" {
				t.Fatalf("%s -s: exit %d, no SSH_AGENT_PID:\n%s", agent, code, out)
			}
			t.Cleanup(func() {
				r.runAs(t, dir, []string{"SSH_AGENT_PID=" + pid}, agent, "-k")
			})
			gdb, _ := r.runAs(t, dir, nil, "gdb", "-nx", "-batch", "-p", pid, "-ex", "quit")
			refused := false
			for _, m := range []string{"ptrace: Operation not permitted", "Unable to access task", "Permission denied"} {
				refused = refused || strings.Contains(gdb, m)
			}
			if !refused {
				t.Errorf("gdb as the agent's own user attached to %s (pid %s): the agent must not be dumpable "+
					"(prctl PR_SET_DUMPABLE 0, as ssh-agent does); gdb said:\n%s", side, pid, gdb)
			}
		})
	}
}

// runAs runs a program as the scripts' user in dir, with the runner's
// PATH, and returns its output and exit code; whatever it leaves running
// in its process group is killed when the test ends.
func (r *regressRunner) runAs(t *testing.T, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=" + r.bin + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"USER=" + r.userName, "LOGNAME=" + r.userName, "HOME=" + dir, "TMPDIR=" + dir, "LANG=C",
		"WARDEN_AGENT=" + filepath.Join(r.bin, "warden-agent"), "GORACE=atexit_sleep_ms=0",
	}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.cred}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	cmd.Wait()
	return out.String(), cmd.ProcessState.ExitCode()
}

var regressConnNumber = regexp.MustCompile(`agent \d+:`)

// wardenLogProblems is the last n distinct lines of warden's log that say
// something went wrong: warnings, errors, and debug lines that report a
// failure (x/crypto's agent server logs "not implemented" at debug).
func wardenLogProblems(log string, n int) string {
	var keep []string
	seen := map[string]bool{}
	for _, l := range strings.Split(log, "\n") {
		lower := strings.ToLower(l)
		failure := strings.Contains(lower, " err=") || strings.Contains(lower, "not implemented") ||
			strings.Contains(lower, "refus") || strings.Contains(lower, "fail")
		if !strings.Contains(l, "level=WARN") && !strings.Contains(l, "level=ERROR") &&
			!(strings.Contains(l, "level=DEBUG") && failure) {
			continue
		}
		// The same problem at another time, on another connection, is
		// the same line.
		key := l
		if _, rest, ok := strings.Cut(l, " level="); ok {
			key = regressConnNumber.ReplaceAllString(rest, "agent N:")
		}
		if !seen[key] {
			seen[key] = true
			keep = append(keep, "  "+l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	if len(keep) == 0 {
		return "  (none)\n"
	}
	return strings.Join(keep, "\n") + "\n"
}
