package main

// Issue 4, "Must show": the audit log under faults. A kill -9 during 64
// concurrent signers loses no record of a signature a client received,
// and an audit log that cannot be written refuses warden's signatures and
// issuances while the user's own keys keep working.

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// faultSessionBind sends session-bind@openssh.com signed by host, as ssh
// does after key exchange (PROTOCOL.agent).
func faultSessionBind(a agent.ExtendedAgent, host ssh.Signer, sid []byte) error {
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		return err
	}
	_, err = a.Extension("session-bind@openssh.com", ssh.Marshal(struct {
		HostKey    []byte
		SessionID  []byte
		Signature  []byte
		Forwarding bool
	}{host.PublicKey().Marshal(), sid, ssh.Marshal(sig), false}))
	return err
}

// faultUserauthData is the data ssh asks an agent to sign for a
// publickey-hostbound-v00@openssh.com login.
func faultUserauthData(sid []byte, user string, key, hostKey ssh.PublicKey) []byte {
	out := ssh.Marshal(struct {
		SessionID []byte
		Type      byte
		User      string
		Service   string
		Method    string
		Sign      bool
		Algo      string
		Key       []byte
	}{sid, 50, user, "ssh-connection", "publickey-hostbound-v00@openssh.com", true, key.Type(), key.Marshal()})
	return append(out, ssh.Marshal(struct{ K []byte }{hostKey.Marshal()})...)
}

// faultSIDHash is how the agent names a session id in the audit log.
func faultSIDHash(sid []byte) string {
	h := sha256.Sum256(sid)
	return "SHA256:" + hex.EncodeToString(h[:16])
}

// faultReadAudit reads an audit log at path.
func faultReadAudit(t *testing.T, path string) []auditRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var recs []auditRecord
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit log %s line %d is not JSON: %v: %q", path, i+1, err, line)
		}
		recs = append(recs, r)
	}
	return recs
}

func faultReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestE2EAuditCrashDuring64Signers: 64 clients, each bound to its own
// session, sign with the warden certificate as fast as the agent answers;
// the agent is killed with SIGKILL mid-load. The restarted agent starts on
// the same socket and log, the chain verifies, and every signature a
// client received has its cert.used record.
func TestE2EAuditCrashDuring64Signers(t *testing.T) {
	const clients = 64
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	hostLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(host.PublicKey())))

	e := newTestEnv(t)
	e.writeConfig(fmt.Sprintf("routes:\n  - name: pinned\n    host_keys: [%q]\n    principals: [deploy]\n    ttl: 5m\n", hostLine))
	a := startAgent(t, e, nil, "--upstream", "none")

	type client struct {
		sid    []byte
		hash   string
		signed int // signatures received and verified
		setup  error
		failed error // a sign error before the kill
	}
	cls := make([]*client, clients)
	conns := make([]net.Conn, clients)
	var (
		killed   atomic.Bool
		stop     atomic.Bool
		ready    sync.WaitGroup
		finished sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range cls {
		sid := make([]byte, 32)
		rand.Read(sid)
		cl := &client{sid: sid, hash: faultSIDHash(sid)}
		cls[i] = cl
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		ready.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			readyDone := false
			setupFailed := func(err error) {
				cl.setup = err
				if !readyDone {
					ready.Done()
				}
			}
			ag := agent.NewClient(c)
			if err := faultSessionBind(ag, host, cl.sid); err != nil {
				setupFailed(fmt.Errorf("session-bind: %w", err))
				return
			}
			keys, err := ag.List()
			if err != nil {
				setupFailed(fmt.Errorf("list: %w", err))
				return
			}
			if len(keys) == 0 || !strings.HasPrefix(keys[0].Comment, "warden:pinned:") {
				setupFailed(fmt.Errorf("list: want the warden certificate first, got %v", keys))
				return
			}
			pk, err := ssh.ParsePublicKey(keys[0].Blob)
			if err != nil {
				setupFailed(fmt.Errorf("listed key: %w", err))
				return
			}
			cert, ok := pk.(*ssh.Certificate)
			if !ok {
				setupFailed(fmt.Errorf("first listed key %s is not a certificate", keys[0].Comment))
				return
			}
			data := faultUserauthData(cl.sid, "deploy", cert, host.PublicKey())
			readyDone = true
			ready.Done()
			<-start
			for !stop.Load() {
				sig, err := ag.Sign(cert, data)
				if err != nil {
					if !killed.Load() {
						cl.failed = err
					}
					return
				}
				if err := cert.Verify(data, sig); err != nil {
					cl.failed = fmt.Errorf("signature does not verify: %w", err)
					return
				}
				cl.signed++
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	ready.Wait()
	for i, cl := range cls {
		if cl.setup != nil {
			stop.Store(true)
			close(start)
			t.Fatalf("client %d: %v", i, cl.setup)
		}
	}
	close(start)
	time.Sleep(time.Second)

	killed.Store(true)
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", a.cmd.Process.Pid, err)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the agent did not die within 10 s of SIGKILL")
	}
	if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent ended with %v, want killed by SIGKILL", a.cmd.ProcessState)
	}
	// The kernel closed the agent's ends: every client's next read fails.
	done := make(chan struct{})
	go func() { finished.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		stop.Store(true)
		for _, c := range conns {
			c.Close()
		}
		<-done
		t.Errorf("clients still running 10 s after the agent died")
	}
	received := map[string]int{}
	total := 0
	for i, cl := range cls {
		if cl.failed != nil {
			t.Errorf("client %d: a signature failed before the kill: %v", i, cl.failed)
		}
		received[cl.hash] = cl.signed
		total += cl.signed
	}
	if total == 0 {
		t.Fatalf("no client received a signature in 1 s of load")
	}
	_, err = os.Lstat(a.socket)
	staleSocket := err == nil // the kernel does not remove a killed listener's socket file
	// A kill in the middle of a write(2) leaves a torn last line, but
	// seldom: one batch is one write. Tear the tail on purpose as well, the
	// way such a kill would: half of a record, no newline.
	logData := faultReadFile(t, e.auditPath())
	lines := strings.Split(strings.TrimSuffix(logData, "\n"), "\n")
	fragment := lines[len(lines)-1][:len(lines[len(lines)-1])/2]
	naturallyTorn := !strings.HasSuffix(logData, "\n")
	lf, err := os.OpenFile(e.auditPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteString(fragment); err != nil {
		t.Fatal(err)
	}
	lf.Close()

	// Restart on the same directories: the stale socket is replaced and a
	// torn last line, if the kill left one, is set aside.
	b := startAgent(t, e, nil, "--upstream", "none")
	if b.socket != a.socket {
		t.Errorf("restarted agent listens on %s, want %s", b.socket, a.socket)
	}
	r := e.warden("activity", "verify")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("activity verify after kill -9 and restart: %s", r)
	}
	recs := b.audit(t)
	recorded := map[string]int{}
	for _, rec := range events(recs, "cert.used") {
		recorded[rec.str("session_id_hash")]++
	}
	recovered := events(recs, "audit.recovered")
	torn, _ := filepath.Glob(e.auditPath() + ".torn-*")
	if len(recovered) != 1 || len(torn) != 1 {
		t.Errorf("torn last line: %d audit.recovered records and torn files %v, want one of each", len(recovered), torn)
	} else {
		if kept := faultReadFile(t, torn[0]); !strings.HasSuffix(kept, fragment) {
			t.Errorf("%s holds %q, want the torn tail ending in %q", torn[0], kept, fragment)
		}
		if recovered[0].str("kept_in") != torn[0] {
			t.Errorf("audit.recovered kept_in = %q, want %s", recovered[0].str("kept_in"), torn[0])
		}
	}
	if n := len(events(recs, "agent.start")); n != 2 {
		t.Errorf("want two agent.start records (before and after the kill), got %d", n)
	}
	short, extra := 0, 0
	for i, cl := range cls {
		got, want := recorded[cl.hash], received[cl.hash]
		if got < want {
			short++
			t.Errorf("client %d (session %s): received %d signatures, %d cert.used records", i, cl.hash, want, got)
		}
		extra += got - want
	}
	t.Logf("%d clients received %d signatures in ~1 s before kill -9; %d cert.used records (%d recorded but unanswered); %d sessions short; stale socket left: %v; kill tore the last line: %v; %d audit.recovered (torn files %v); verify: %s",
		clients, total, len(events(recs, "cert.used")), extra, short, staleSocket, naturallyTorn, len(recovered), torn, strings.TrimSpace(r.stdout))
	for i := 0; i < clients; i += 16 {
		cl := cls[i]
		t.Logf("  client %d %s: received %d, recorded %d", i, cl.hash, received[cl.hash], recorded[cl.hash])
	}
}

// TestE2EAuditUnavailableFailsClosed: with the audit log on a full file
// system, warden's certificate is neither used nor issued, the user's own
// key keeps working through warden, the refusal shows on the agent's
// stderr; once space is back the next certificate login works and the
// chain verifies.
func TestE2EAuditUnavailableFailsClosed(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the audit log")
	}
	user := loginUser(t)
	e := newTestEnv(t)
	mnt := filepath.Join(e.dir, "auditfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	// Registered after the agent's stop (below), so it runs after it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	auditLog := filepath.Join(mnt, "audit.log")

	up := startSSHAgent(t, e)
	key1 := keygen(t, filepath.Join(e.dir, "key1"), "upstream-key1")
	fp1 := fingerprint(t, key1)
	if r := e.sshAdd(up.socket, nil, filepath.Join(e.dir, "key1")); r.code != 0 {
		t.Fatalf("ssh-add key1 to the upstream agent: %s", r)
	}
	// Certificates for 127.0.0.1 ("target"); "plain" (localhost) has no
	// route, so only the upstream key is offered there.
	e.writeConfig(fmt.Sprintf("routes:\n  - name: lab\n    hosts: [\"127.0.0.1\"]\n    principals: [%q]\n    ttl: 5m\naudit:\n  path: %s\n", user, auditLog))
	a := startAgent(t, e, nil, "--upstream", up.socket)
	s := startSSHD(t, a.ca, key1)
	cfg := e.sshConfig(s, a.socket)

	// accepted returns sshd's "Accepted publickey" lines after offset.
	accepted := func(offset int) []string {
		var out []string
		for _, l := range strings.Split(s.log.String()[offset:], "\n") {
			if strings.Contains(l, "Accepted publickey for ") {
				out = append(out, l)
			}
		}
		return out
	}
	count := func(event string) int { return len(events(faultReadAudit(t, auditLog), event)) }

	e.mustLogin(cfg, nil, user, "target")
	if acc := accepted(0); len(acc) != 1 || !strings.Contains(acc[0], "ED25519-CERT") {
		t.Fatalf("first login: want one certificate login in sshd's log, got %q", acc)
	}
	if count("cert.used") != 1 || count("cert.issued") != 1 {
		t.Fatalf("first login: want one cert.issued and one cert.used")
	}

	// Fill the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for i := 0; ; i++ {
		_, err = f.Write(chunk)
		if err != nil || i > 1024 {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: want ENOSPC, got %v", err)
	}
	// tmpfs allocates whole pages: the audit log's last page may still hold
	// a record or two. Use that slack up with small best-effort records (a
	// hint for a host without a route, on behalf of the upstream agent's
	// process) until one no longer fits, so that the larger cert.used and
	// cert.issued records below cannot.
	burnt := 0
	for i := 0; i < 64; i++ {
		before, err := os.Stat(auditLog)
		if err != nil {
			t.Fatal(err)
		}
		// warden-agent hint for its own pid ($$ of the shell it replaces):
		// a hint is answered only for the caller's own ssh.
		if r := e.run(nil, "sh", "-c", `exec "$0" hint --ssh-pid $$ --user u --host x --port 22 --socket "$1"`, wardenExe, a.socket); r.code != 0 {
			t.Fatalf("hint for a host without a route: %s", r)
		}
		// The hint's record is best effort: written within 10 ms of the
		// answer, or refused for want of space.
		grew := waitFor(2*time.Second, func() bool {
			after, err := os.Stat(auditLog)
			return err == nil && after.Size() != before.Size() || strings.Contains(a.stderr.String(), "audit log unavailable")
		})
		if after, err := os.Stat(auditLog); !grew || err != nil || after.Size() == before.Size() {
			break
		}
		burnt++
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(a.stderr.String(), "audit log unavailable") }) {
		t.Fatalf("the agent's stderr does not show the audit failure after the fill:\n%s", a.stderr)
	}
	// status shows it too: degraded, exit 1.
	if r := e.warden("status", "--socket", a.socket); r.code != 1 || !strings.Contains(r.stdout, "audit log failing") {
		t.Errorf("status while the audit log fails: %s", r)
	}
	// The slack left is shorter than a hint record; the records that must
	// fail below are longer.
	hintLen, usedLen := 0, 0
	for _, l := range strings.Split(faultReadFile(t, auditLog), "\n") {
		switch {
		case strings.Contains(l, `"event":"hint"`):
			hintLen = len(l) + 1
		case strings.Contains(l, `"event":"cert.used"`) && usedLen == 0:
			usedLen = len(l) + 1
		}
	}
	if hintLen == 0 || usedLen <= hintLen {
		t.Fatalf("test assumption: a cert.used record (%d bytes) is longer than a hint record (%d bytes)", usedLen, hintLen)
	}
	usedBefore, issuedBefore := count("cert.used"), count("cert.issued")
	t.Logf("tmpfs full; %d hint records used up the audit log's last page", burnt)

	t.Run("certificate signature refused", func(t *testing.T) {
		mark := len(s.log.String())
		r := e.sshLogin(cfg, nil, user, "target", "after-fill")
		acc := accepted(mark)
		for _, l := range acc {
			if strings.Contains(l, "ED25519-CERT") {
				t.Errorf("certificate login accepted with the audit log full: %s", l)
			}
		}
		if r.code == 0 && (len(acc) != 1 || !strings.Contains(acc[0], fp1)) {
			t.Errorf("login succeeded, but not with the upstream key %s: %q", fp1, acc)
		}
		t.Logf("login to target with the audit log full: exit %d, accepted %q", r.code, acc)
		if n := count("cert.used"); n != usedBefore {
			t.Errorf("%d cert.used records written to a full file system (were %d)", n, usedBefore)
		}
	})

	t.Run("upstream key still served", func(t *testing.T) {
		if l := e.listed(a.socket); !containsFP(l, fp1) {
			t.Errorf("ssh-add -l through warden with the audit log full: %q, want the upstream key %s", l, fp1)
		}
		mark := len(s.log.String())
		e.mustLogin(cfg, nil, user, "plain")
		if acc := accepted(mark); len(acc) != 1 || !strings.Contains(acc[0], fp1) || strings.Contains(acc[0], "CERT") {
			t.Errorf("login to plain: want one acceptance of the upstream key %s, got %q", fp1, acc)
		}
	})

	var issueFailedAt time.Time
	t.Run("new certificate refused", func(t *testing.T) {
		// Drop the cached certificate, so the next login needs an issuance.
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// ssh-add -d of the certificate `warden-agent sign` prints (a
		// connection without session-bind is not listed it).
		line := strings.TrimSpace(e.mustWarden("sign", "--socket", a.socket, "--principal", user, "--host", "127.0.0.1"))
		cert, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("warden-agent sign printed %q: %v", line, err)
		}
		if err := agent.NewClient(c).Remove(cert); err != nil {
			t.Fatalf("remove the warden certificate: %v", err)
		}
		mark := len(s.log.String())
		r := e.sshLogin(cfg, nil, user, "target", "new-cert")
		issueFailedAt = time.Now()
		acc := accepted(mark)
		for _, l := range acc {
			if strings.Contains(l, "ED25519-CERT") {
				t.Errorf("certificate login accepted with the audit log full: %s", l)
			}
		}
		if r.code == 0 && (len(acc) != 1 || !strings.Contains(acc[0], fp1)) {
			t.Errorf("login succeeded, but not with the upstream key %s: %q", fp1, acc)
		}
		t.Logf("login to target needing a new certificate: exit %d, accepted %q, ssh stderr %q", r.code, acc, strings.TrimSpace(r.stderr))
		if !strings.Contains(r.stderr, "audit log unavailable") {
			t.Errorf("ssh's stderr does not say why no certificate was issued (want %q): %s", "audit log unavailable", r)
		}
		if n := count("cert.issued"); n != issuedBefore {
			t.Errorf("%d cert.issued records written to a full file system (were %d)", n, issuedBefore)
		}
		if n := count("cert.used"); n != usedBefore {
			t.Errorf("%d cert.used records written to a full file system (were %d)", n, usedBefore)
		}
	})

	// The cause goes away: the next certificate login works. The failed
	// issuance put the route in the certificate cache's back-off (500 ms,
	// with jitter, after one failure: signer/cache.go), so the login waits
	// that out, as a user retrying would.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(issueFailedAt.Add(time.Second)); d > 0 {
		time.Sleep(d)
	}
	mark := len(s.log.String())
	e.mustLogin(cfg, nil, user, "target")
	if acc := accepted(mark); len(acc) != 1 || !strings.Contains(acc[0], "ED25519-CERT") {
		t.Errorf("after freeing space: want a certificate login, sshd accepted %q", acc)
	}
	if n := count("cert.used"); n != usedBefore+1 {
		t.Errorf("after freeing space: %d cert.used records, want %d", n, usedBefore+1)
	}
	if n := count("cert.issued"); n != issuedBefore+1 {
		t.Errorf("after freeing space: %d cert.issued records, want %d", n, issuedBefore+1)
	}
	if r := e.warden("activity", "verify"); r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Errorf("activity verify after the outage: %s", r)
	} else {
		t.Logf("verify: %s", strings.TrimSpace(r.stdout))
	}
	st := a.stderr.String()
	for _, l := range strings.Split(st, "\n") {
		if strings.Contains(l, "audit log unavailable") {
			t.Logf("agent stderr: %s", l)
			break
		}
	}
}
