package agentproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshdLogBuffer collects a child's output from its own goroutine.
type sshdLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *sshdLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *sshdLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testSSHD is a real OpenSSH sshd on 127.0.0.1 that trusts one user CA and
// nothing else (no authorized_keys, no passwords).
type testSSHD struct {
	Port        int
	User        string        // the user it can log in (the test's own)
	HostKey     ssh.PublicKey // its host key
	HostKeyLine string        // the host key in authorized_keys form
	dir         string
	log         *sshdLogBuffer
}

// sshdBinary finds sshd (often outside PATH, in /usr/sbin); sshd insists on
// being started by absolute path.
func sshdBinary() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// startSSHD runs sshd -D -e on a free port with a host key made by
// ssh-keygen, trusting userCA (TrustedUserCAKeys) for user certificates.
// It skips the test when sshd, ssh or ssh-keygen is missing.
func startSSHD(t testing.TB, userCA ssh.PublicKey) *testSSHD {
	t.Helper()
	bin := sshdBinary()
	if bin == "" {
		t.Skip("sshd not installed")
	}
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		// The privilege separation directory sshd checks for at start.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "warden-test-host", "-f", hostKeyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubText, err := os.ReadFile(hostKeyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "user_ca.pub")
	if err := os.WriteFile(caFile, ssh.MarshalAuthorizedKey(userCA), 0o644); err != nil {
		t.Fatal(err)
	}

	// A free port can be taken between our probe and sshd's bind; try a
	// few times.
	for attempt := 0; attempt < 3; attempt++ {
		port := sshdFreePort(t)
		cfg := filepath.Join(dir, fmt.Sprintf("sshd_config.%d", attempt))
		conf := strings.Join([]string{
			"Port " + strconv.Itoa(port),
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKeyFile,
			"PidFile none",
			"TrustedUserCAKeys " + caFile,
			"AuthorizedKeysFile none",
			"AuthorizedPrincipalsFile none",
			"UsePAM no",
			"StrictModes no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"PermitRootLogin prohibit-password",
			"MaxAuthTries 6",
			"LogLevel VERBOSE",
			"",
		}, "\n")
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		log := &sshdLogBuffer{}
		cmd := exec.Command(bin, "-D", "-e", "-f", cfg)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if waitForSSHBanner(port, exited, 10*time.Second) {
			t.Cleanup(stop)
			return &testSSHD{
				Port: port, User: u.Username, HostKey: hostKey,
				HostKeyLine: strings.TrimSpace(string(pubText)), dir: dir, log: log,
			}
		}
		stop()
		if !strings.Contains(log.String(), "Address already in use") {
			t.Fatalf("sshd did not start:\n%s", log.String())
		}
	}
	t.Fatal("sshd: no free port after 3 attempts")
	return nil
}

func sshdFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitForSSHBanner polls until something on port speaks SSH, the process
// exits, or the timeout passes.
func waitForSSHBanner(port int, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return true
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}

// Log is what sshd has written so far.
func (s *testSSHD) Log() string { return s.log.String() }

var sshdAcceptedLine = regexp.MustCompile(`Accepted publickey for (\S+) from .*\(serial (\d+)\)`)

// AcceptedSerial waits up to timeout for sshd's "Accepted publickey" line
// of a certificate login by user and returns the serial sshd logged
// (decimal).
func (s *testSSHD) AcceptedSerial(user string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range sshdAcceptedLine.FindAllStringSubmatch(s.Log(), -1) {
			if m[1] == user {
				return m[2], true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// sshResult is the outcome of one ssh run.
type sshResult struct {
	Stdout, Stderr string
	Err            error
}

// runSSH runs the real ssh client against s as user, with agentSocket as
// its only source of keys (IdentityAgent; the IdentityFile does not
// exist), a known_hosts file holding s's host key, BatchMode and no
// ~/.ssh/config.
func (s *testSSHD) runSSH(t testing.TB, agentSocket, user string, command ...string) sshResult {
	t.Helper()
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKeyLine)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ssh_config")
	conf := strings.Join([]string{
		"Host *",
		"  IdentityAgent " + agentSocket,
		"  IdentityFile " + filepath.Join(dir, "no-such-key"),
		"  UserKnownHostsFile " + kh,
		"  GlobalKnownHostsFile /dev/null",
		"  StrictHostKeyChecking yes",
		"  UpdateHostKeys no",
		"  BatchMode yes",
		"  PasswordAuthentication no",
		"  KbdInteractiveAuthentication no",
		"  PubkeyAuthentication yes",
		"  ControlMaster no",
		"  ControlPath none",
		"  ConnectTimeout 10",
		"  LogLevel ERROR",
		"",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-F", cfg, "-p", strconv.Itoa(s.Port), user + "@127.0.0.1", "--"}, command...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil
	err := cmd.Run()
	return sshResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}
