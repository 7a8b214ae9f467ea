package main

// End-to-end tests of issue 12's "Must show" for a remote host reached
// with `ssh -A`, with real OpenSSH: from the far host, through a real
// sshd's forwarded agent, nothing warden owns can be exported, hinted,
// read, unlocked, removed or signed for another host or session; and a
// server whose ed25519 host signature OpenSSH accepts but Go rejects (a
// non-canonical S) gets a tainted forwarded channel with nothing of
// warden's on it, while its failed bind still reaches the user's agent.

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/agentproxy"
)

// Agent protocol numbers the tests look for (PROTOCOL.agent).
const (
	secMsgFailure      = 5
	secMsgSuccess      = 6
	secMsgIdentities   = 12
	secMsgSignResponse = 14
	secMsgRemoveOne    = 18
	secMsgRemoveAll    = 19
	secMsgUnlock       = 23
)

// secRecordsSince returns the audit records after the first n.
func secRecordsSince(t *testing.T, a *agentProc, n int) []auditRecord {
	t.Helper()
	recs := a.audit(t)
	if n > len(recs) {
		return nil
	}
	return recs[n:]
}

// secRefused returns the request.refused records of recs whose reason
// contains part.
func secRefused(recs []auditRecord, part string) []auditRecord {
	var out []auditRecord
	for _, r := range events(recs, "request.refused") {
		if strings.Contains(r.str("reason"), part) {
			out = append(out, r)
		}
	}
	return out
}

// secNoWardenUse fails when recs hold a cert.exported, or a cert.used on
// one of conns (the far host's channels; the outer login's own signature
// is on another connection).
func secNoWardenUse(t *testing.T, recs []auditRecord, conns []string) {
	t.Helper()
	if got := events(recs, "cert.exported"); len(got) != 0 {
		t.Errorf("cert.exported during a refused attempt: %v", got)
	}
	for _, u := range events(recs, "cert.used") {
		if slices.Contains(conns, u.str("conn")) {
			t.Errorf("cert.used on a far channel during a refused attempt: %v", u)
		}
	}
}

// secFarClient is a small agent client that runs on the far host with
// SSH_AUTH_SOCK the forwarded socket. It reads a program (a list of
// connections, each a list of steps) from the JSON file argv[1] and prints
// "name reply-type" per step. Steps: raw (a hex frame, sent as it is),
// list (keeps the first identity whose comment starts with "warden:"),
// sign (a userauth request for the kept certificate: sid, method, the
// host key for the hostbound method).
const secFarClient = `import json, os, socket, struct, sys
def s(b): return struct.pack('>I', len(b)) + b
def rd(b, o):
    n = struct.unpack('>I', b[o:o+4])[0]
    return b[o+4:o+4+n], o+4+n
def readn(sk, n):
    b = b''
    while len(b) < n:
        c = sk.recv(n - len(b))
        if not c:
            raise SystemExit('agent closed the connection')
        b += c
    return b
def call(sk, msg):
    sk.sendall(struct.pack('>I', len(msg)) + msg)
    n = struct.unpack('>I', readn(sk, 4))[0]
    return readn(sk, n)
prog = json.load(open(sys.argv[1]))
blob = None
for steps in prog:
    sk = socket.socket(socket.AF_UNIX)
    sk.connect(os.environ['SSH_AUTH_SOCK'])
    for st in steps:
        if 'raw' in st:
            r = call(sk, bytes.fromhex(st['raw']))
        elif st.get('list'):
            r = call(sk, b'\x0b')
            if r[0] == 12:
                n = struct.unpack('>I', r[1:5])[0]
                o = 5
                for i in range(n):
                    k, o = rd(r, o)
                    c, o = rd(r, o)
                    if c.startswith(b'warden:') and blob is None:
                        blob = k
        else:
            if blob is None:
                print(st['name'], 'noblob', flush=True)
                continue
            sid = bytes.fromhex(st['sid'])
            alg, _ = rd(blob, 0)
            data = s(sid) + b'\x32' + s(st['user'].encode()) + s(b'ssh-connection') + s(st['method'].encode()) + b'\x01' + s(alg) + s(blob)
            if st.get('hostkey'):
                data += s(bytes.fromhex(st['hostkey']))
            r = call(sk, b'\x0d' + s(blob) + s(data) + struct.pack('>I', 0))
        print(st['name'], r[0], flush=True)
    sk.close()
`

// secBindFrame is a session-bind@openssh.com request signed by host over
// sid, as ssh sends it.
func secBindFrame(t *testing.T, host ssh.Signer, sid []byte, forwarding bool) string {
	t.Helper()
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		t.Fatal(err)
	}
	msg := ssh.Marshal(struct {
		Type       byte
		Name       string
		HostKey    []byte
		SessionID  []byte
		Signature  []byte
		Forwarding bool
	}{27, "session-bind@openssh.com", host.PublicKey().Marshal(), sid, ssh.Marshal(sig), forwarding})
	return hex.EncodeToString(msg)
}

// secHostSigner reads an sshd's host private key.
func secHostSigner(t *testing.T, s *sshdProc) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.dir, "hostkey"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func secRandomSID(t *testing.T) []byte {
	t.Helper()
	sid := make([]byte, 32)
	if _, err := rand.Read(sid); err != nil {
		t.Fatal(err)
	}
	return sid
}

// secFar runs a shell command on the far host (the bastion) through
// `ssh -A`: the command's SSH_AUTH_SOCK is sshd's forwarded socket.
func (l *fwdLab) secFar(command string) result {
	return l.e.run(nil, "ssh", "-A", "-F", l.cfg, l.user+"@bastion", command)
}

// secFarUnlock: the far shell is logged in before the agent is locked (a
// locked agent lists no certificate for the bastion login); it waits for a
// flag, then runs ssh-add -X with the right passphrase, which must not
// unlock. The outer ssh is sshBin; with deleteBin, its file is removed
// once the session is up.
func secFarUnlock(t *testing.T, l *fwdLab, sshBin string, deleteBin bool) {
	e := l.e
	askpass := filepath.Join(e.dir, "far-askpass")
	writeFile(t, askpass, "#!/bin/sh\necho far-pass\n")
	os.Chmod(askpass, 0o700)
	flag := filepath.Join(e.dir, fmt.Sprintf("far-unlock-flag-%d", time.Now().UnixNano()))
	cmd := exec.Command(sshBin, "-A", "-F", l.cfg, l.user+"@bastion", fmt.Sprintf(
		"echo ready; while [ ! -e %s ]; do sleep 0.1; done; SSH_ASKPASS=%s SSH_ASKPASS_REQUIRE=force ssh-add -X </dev/null; echo code=$?",
		flag, askpass))
	cmd.Env = e.environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the far shell did not start: %q\n%s", sc.Text(), stderr.String())
	}
	if deleteBin {
		// As after a package upgrade: the running ssh's executable is
		// gone, and /proc/PID/exe reads "PATH (deleted)".
		if err := os.Remove(sshBin); err != nil {
			t.Fatal(err)
		}
	}
	n := len(l.a.audit(t))
	local, err := net.Dial("unix", l.a.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	ag := agent.NewClient(local)
	if err := ag.Lock([]byte("far-pass")); err != nil {
		t.Fatalf("lock the agent locally: %v", err)
	}
	writeFile(t, flag, "")
	var rest strings.Builder
	for sc.Scan() { // ends when ssh exits, or the timer kills it
		rest.WriteString(sc.Text() + "\n")
	}
	cmd.Wait()
	if !strings.Contains(rest.String(), "code=") || strings.Contains(rest.String(), "code=0") {
		t.Errorf("ssh-add -X on the far host: want a failure, got %q\n%s", rest.String(), stderr.String())
	}
	// Still locked: the local unlock with the same passphrase works.
	if err := ag.Unlock([]byte("far-pass")); err != nil {
		t.Errorf("the agent was no longer locked after the far host's ssh-add -X: %v", err)
	}
	recs := secRecordsSince(t, l.a, n)
	got := events(recs, "request.refused", "type", fmt.Sprint(secMsgUnlock))
	if len(got) != 1 {
		t.Fatalf("want one request.refused for the far unlock, got %v", events(recs, "request.refused"))
	}
	// A locked agent refuses the session-bind (as ssh-agent) but still
	// verifies and keeps it: the channel is forwarded, not unbound.
	if tr := got[0].str("trust"); tr != "forwarded" {
		t.Errorf("request.refused for the unlock %v: want trust forwarded", got[0])
	}
	if got := events(recs, "agent.unlocked"); len(got) != 1 {
		t.Errorf("want one agent.unlocked (the local one), got %v", got)
	}
}

// TestE2ESecForwardedChannel (issue 12, "Must show"): from the far host
// of a real `ssh -A` into a real sshd, a forwarded channel cannot export
// a key (`warden-agent sign --out`), send a hint, read status, unlock,
// remove keys, or get a signature for another host (an sshd no route
// pins) or another session (a plain publickey request, a bind of the far
// host's own key over another session, a hostbound request for a host
// key other than the bind's). Each refusal is a request.refused record
// (trust forwarded where the channel could bind) and nothing is exported
// or used.
func TestE2ESecForwardedChannel(t *testing.T) {
	t.Parallel()
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add", "python3")
	e0 := newTestEnv(t)
	up := startSSHAgent(t, e0)
	upKey := filepath.Join(e0.dir, "upstream-key")
	upPub := keygen(t, upKey, "upstream-key")
	if r := e0.sshAdd(up.socket, nil, upKey); r.code != 0 {
		t.Fatalf("ssh-add to the upstream agent: %s", r)
	}
	l := newFwdLabOpts(t, fwdPolicyAllow, fwdOpts{upstream: up.socket})
	e := l.e

	// The allowed hop first: the target's certificate exists and works
	// through the forwarded agent, so every refusal below is the trust
	// model's, not a lab that cannot log in.
	if r := l.hop(); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("ssh -A bastion ssh target echo ok: want ok, got %s", r)
	}

	sock := `"$SSH_AUTH_SOCK"`
	// One far shell runs the export, hint and status commands and the
	// removals (each its own agent connection, so its own forwarded
	// channel), printing each exit code: one login instead of five.
	out := filepath.Join(e.dir, "far-export")
	pubFile := filepath.Join(e.dir, "upstream-key-only.pub")
	writeFile(t, pubFile, upPub+"\n")
	n := len(l.a.audit(t))
	// $$ is the far shell, an ancestor of warden-agent: the hint names the
	// caller's own process chain, which a local hint may do.
	far := l.secFar(strings.Join([]string{
		fmt.Sprintf("%s --socket %s sign --principal %s --host 127.0.0.1 --out %s; echo export=$?", wardenExe, sock, l.user, out),
		fmt.Sprintf("%s --socket %s hint --ssh-pid $$ --user %s --host 127.0.0.1; echo hint=$?", wardenExe, sock, l.user),
		fmt.Sprintf("%s --socket %s status --json; echo status=$?", wardenExe, sock),
		"ssh-add -d " + pubFile + "; echo remove=$?",
		"ssh-add -D; echo remove-all=$?",
	}, "; "))
	codes := map[string]string{}
	for _, line := range nonEmptyLines(far.stdout) {
		if k, v, ok := strings.Cut(line, "="); ok {
			codes[k] = v
		}
	}
	farRecs := secRecordsSince(t, l.a, n)
	for _, step := range []string{"export", "hint", "status", "remove", "remove-all"} {
		if c, ok := codes[step]; !ok || c == "0" {
			t.Errorf("far host %s: want a failure exit code, got %q: %s", step, c, far)
		}
	}
	t.Run("export", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(out, "id_ed25519")); err == nil {
			t.Errorf("the far host wrote a private key to %s", out)
		}
		if got := secRefused(farRecs, agentproxy.ExtSignCert); len(got) != 1 || got[0].str("trust") != "forwarded" {
			t.Errorf("want one request.refused for %s with trust forwarded, got %v", agentproxy.ExtSignCert, events(farRecs, "request.refused"))
		}
		secNoWardenUse(t, farRecs, l.forwardedConns(farRecs))
		if got := events(farRecs, "cert.issued"); len(got) != 0 {
			t.Errorf("cert.issued for the refused export: %v", got)
		}
	})

	t.Run("hint", func(t *testing.T) {
		if got := secRefused(farRecs, agentproxy.ExtHint); len(got) != 1 || got[0].str("trust") != "forwarded" {
			t.Errorf("want one request.refused for %s with trust forwarded, got %v", agentproxy.ExtHint, events(farRecs, "request.refused"))
		}
	})

	t.Run("status", func(t *testing.T) {
		// status --json always prints (running: false when refused); the
		// agent's own state (started_at, counters) must not reach the far host.
		if strings.Contains(far.stdout, `"started_at"`) || strings.Contains(far.stdout, `"counters"`) {
			t.Errorf("warden-agent status on the far host answered: %s", far)
		}
		if got := secRefused(farRecs, agentproxy.ExtStatus); len(got) != 1 || got[0].str("trust") != "forwarded" {
			t.Errorf("want one request.refused for %s with trust forwarded, got %v", agentproxy.ExtStatus, events(farRecs, "request.refused"))
		}
	})

	t.Run("remove", func(t *testing.T) {
		if !containsFP(e.listed(up.socket), fingerprint(t, upPub)) {
			t.Errorf("the upstream agent lost its key through the forwarded channel: %q", e.listed(up.socket))
		}
		for _, typ := range []int{secMsgRemoveOne, secMsgRemoveAll} {
			got := events(farRecs, "request.refused", "type", fmt.Sprint(typ), "trust", "forwarded")
			if len(got) != 1 {
				t.Errorf("want one request.refused of type %d with trust forwarded, got %v", typ, events(farRecs, "request.refused"))
			}
		}
		if got := events(farRecs, "key.removed"); len(got) != 0 {
			t.Errorf("key.removed through the forwarded channel: %v", got)
		}
	})

	t.Run("unlock", func(t *testing.T) { secFarUnlock(t, l, "ssh", false) })

	// An ssh whose executable was replaced during the session (a package
	// upgrade): /proc/PID/exe reads "PATH (deleted)". Its forwarded
	// channel, opened while the agent is locked, is still classified by
	// its bind (it failed on 89e6694, where it counted as unbound).
	t.Run("unlock-upgraded-ssh", func(t *testing.T) {
		ssh, err := exec.LookPath("ssh")
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(e.dir, "upgraded", "ssh")
		if err := os.MkdirAll(filepath.Dir(bin), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(ssh, bin); err != nil {
			t.Fatal(err)
		}
		secFarUnlock(t, l, bin, true)
	})

	t.Run("other-host", func(t *testing.T) {
		// A third sshd trusting warden's CA, whose host key no route pins
		// and whose address no route names.
		other := startSSHDOn(t, "127.0.0.3", l.a.ca)
		fpOther := fingerprint(t, other.hostPub)
		kh := filepath.Join(e.dir, "other_known_hosts")
		writeFile(t, kh, fmt.Sprintf("[%s]:%d %s\n", other.addr, other.port, other.hostPub))
		n := len(l.a.audit(t))
		r := l.secFar(fmt.Sprintf("ssh -F %s -o HostName=%s -o Port=%d -o UserKnownHostsFile=%s target echo ok", l.innerCfg, other.addr, other.port, kh))
		if r.code == 0 || strings.Contains(r.stdout, "ok") {
			t.Errorf("the far host logged in to an sshd no route pins: %s", r)
		}
		recs := secRecordsSince(t, l.a, n)
		if got := events(recs, "session.bind", "host_key", fpOther, "verified", "true"); len(got) == 0 {
			t.Errorf("no verified session.bind for the other sshd's host key %s: %v", fpOther, events(recs, "session.bind"))
		}
		secNoWardenUse(t, recs, l.forwardedConns(recs))
		if got := events(recs, "cert.issued"); len(got) != 0 {
			t.Errorf("cert.issued for a host no route pins: %v", got)
		}
		if c := other.certLogins(l.user); c != 0 || strings.Contains(other.log.String(), "CERT") {
			t.Errorf("a certificate was offered to the other sshd:\n%s", other.log)
		}
	})

	t.Run("other-session", func(t *testing.T) {
		// The target's certificate is learned on one channel by binding
		// the target's host key (a far host that can), then asked for
		// signatures outside that bind; on a second channel the far host
		// binds its own host key over another session id, as in the
		// issue's report, and asks again.
		target, bastion := secHostSigner(t, l.target), secHostSigner(t, l.bastion)
		sidA, sidB, sidOther := secRandomSID(t), secRandomSID(t), secRandomSID(t)
		tk := hex.EncodeToString(target.PublicKey().Marshal())
		bk := hex.EncodeToString(bastion.PublicKey().Marshal())
		const hb = "publickey-hostbound-v00@openssh.com"
		sign := func(name string, sid []byte, method, hostKey string) map[string]any {
			return map[string]any{"name": name, "sid": hex.EncodeToString(sid), "user": l.user, "method": method, "hostkey": hostKey}
		}
		prog := [][]map[string]any{
			{
				{"name": "bind-target", "raw": secBindFrame(t, target, sidA, false)},
				{"name": "list", "list": true},
				{"name": "control-hostbound", "sid": hex.EncodeToString(sidA), "user": l.user, "method": hb, "hostkey": tk},
				sign("plain-publickey", sidA, "publickey", ""),
				sign("hostbound-other-session", sidOther, hb, tk),
			},
			{
				{"name": "bind-own-key", "raw": secBindFrame(t, bastion, sidB, false)},
				sign("own-bind-plain-publickey", sidB, "publickey", ""),
				sign("own-bind-hostbound-own-key", sidB, hb, bk),
				sign("own-bind-hostbound-target-key", sidB, hb, tk),
			},
		}
		progFile := filepath.Join(e.dir, "far-prog.json")
		script := filepath.Join(e.dir, "far-client.py")
		data, _ := json.Marshal(prog)
		writeFile(t, progFile, string(data))
		writeFile(t, script, secFarClient)
		n := len(l.a.audit(t))
		r := l.secFar(fmt.Sprintf("python3 %s %s", script, progFile))
		if r.code != 0 {
			t.Fatalf("the far client failed: %s", r)
		}
		got := map[string]string{}
		for _, line := range nonEmptyLines(r.stdout) {
			if k, v, ok := strings.Cut(line, " "); ok {
				got[k] = v
			}
		}
		want := map[string]int{
			"bind-target": secMsgSuccess, "list": secMsgIdentities, "control-hostbound": secMsgSignResponse,
			"plain-publickey": secMsgFailure, "hostbound-other-session": secMsgFailure,
			"bind-own-key": secMsgSuccess, "own-bind-plain-publickey": secMsgFailure,
			"own-bind-hostbound-own-key": secMsgFailure, "own-bind-hostbound-target-key": secMsgFailure,
		}
		for name, w := range want {
			if got[name] != fmt.Sprint(w) {
				t.Errorf("far client step %s: reply %s, want %d", name, got[name], w)
			}
		}
		recs := secRecordsSince(t, l.a, n)
		// Exactly one signature: the control, in the target's bound session.
		var used []auditRecord
		for _, u := range events(recs, "cert.used") {
			if slices.Contains(l.forwardedConns(recs), u.str("conn")) {
				used = append(used, u)
			}
		}
		if len(used) != 1 || used[0].str("route") != "fwd-target" || used[0].str("host_key") != l.fpTgt {
			t.Errorf("want exactly one cert.used (the control on fwd-target), got %v", used)
		}
		var ownConn string
		for _, b := range events(recs, "session.bind", "session_id_hash", faultSIDHash(sidB)) {
			ownConn = b.str("conn")
		}
		if ownConn == "" {
			t.Fatalf("no session.bind for the far host's own bind: %v", events(recs, "session.bind"))
		}
		for _, u := range used {
			if u.str("conn") == ownConn {
				t.Errorf("cert.used on the channel that bound the far host's own key: %v", u)
			}
		}
	})
}

// ---- a server whose ed25519 host signature Go rejects ----

// edOrder is L, the order of the ed25519 base point, little-endian.
var edOrder = [32]byte{
	0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
}

// nonCanonicalSign is an ed25519 signature of msg whose S is S + L: the
// same point equation holds, so OpenSSH's ref10 verifier (which checks only
// the top 3 bits of S) accepts it, while Go's ed25519.Verify requires S < L
// and rejects it. The nonce is random; a nonce whose S + L would reach
// 2^253 is drawn again.
func nonCanonicalSign(priv ed25519.PrivateKey, msg []byte) ([]byte, error) {
	h := sha512.Sum512(priv.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	pub := priv.Public().(ed25519.PublicKey)
	for {
		var nonce [64]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			return nil, err
		}
		r, err := edwards25519.NewScalar().SetUniformBytes(nonce[:])
		if err != nil {
			return nil, err
		}
		R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
		kh := sha512.New()
		kh.Write(R)
		kh.Write(pub)
		kh.Write(msg)
		k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
		if err != nil {
			return nil, err
		}
		S := edwards25519.NewScalar().MultiplyAdd(k, a, r).Bytes()
		var sum [32]byte
		carry := 0
		for i := range sum {
			v := int(S[i]) + int(edOrder[i]) + carry
			sum[i], carry = byte(v), v>>8
		}
		if carry != 0 || sum[31]&0xe0 != 0 {
			continue
		}
		return append(R, sum[:]...), nil
	}
}

// nonCanonicalSigner is an ssh.Signer for an ed25519 host key that signs
// with a non-canonical S.
type nonCanonicalSigner struct {
	priv ed25519.PrivateKey
	pub  ssh.PublicKey
}

func newNonCanonicalSigner(t *testing.T) *nonCanonicalSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &nonCanonicalSigner{priv: priv, pub: pub}
}

func (s *nonCanonicalSigner) PublicKey() ssh.PublicKey { return s.pub }

func (s *nonCanonicalSigner) Sign(_ io.Reader, data []byte) (*ssh.Signature, error) {
	blob, err := nonCanonicalSign(s.priv, data)
	if err != nil {
		return nil, err
	}
	return &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: blob}, nil
}

func (s *nonCanonicalSigner) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	if algo != "" && algo != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("ed25519 key cannot sign with %s", algo)
	}
	return s.Sign(r, data)
}

// goSSHD is an x/crypto ssh server on loopback with a non-canonical host
// key signer. It accepts any login ("none" authentication) and runs
// onExec for each exec request, with the connection and whether the client
// asked for agent forwarding; what onExec returns is the command's output.
type goSSHD struct {
	signer *nonCanonicalSigner
	port   int
}

func startGoSSHD(t *testing.T, onExec func(sc *ssh.ServerConn, agentFwd bool) string) *goSSHD {
	t.Helper()
	g := &goSSHD{signer: newNonCanonicalSigner(t)}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(g.signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g.port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go g.serve(nc, cfg, onExec)
		}
	}()
	return g
}

func (g *goSSHD) serve(nc net.Conn, cfg *ssh.ServerConfig, onExec func(*ssh.ServerConn, bool) string) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		agentFwd := false
		for req := range creqs {
			switch req.Type {
			case "auth-agent-req@openssh.com":
				agentFwd = true
				req.Reply(true, nil)
			case "exec":
				req.Reply(true, nil)
				io.WriteString(ch, onExec(sc, agentFwd))
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Code uint32 }{0}))
				ch.Close()
			default:
				req.Reply(false, nil)
			}
		}
	}
}

// sshConfig writes an ssh_config with host "noncanon" for g, its key in
// known_hosts, agent forwarding on, and returns the file.
func (g *goSSHD) sshConfig(t *testing.T, e *testEnv, user string) string {
	t.Helper()
	kh := filepath.Join(e.dir, "noncanon_known_hosts")
	writeFile(t, kh, fmt.Sprintf("[127.0.0.1]:%d %s", g.port, ssh.MarshalAuthorizedKey(g.signer.pub)))
	cfg := filepath.Join(e.dir, "noncanon_ssh_config")
	writeFile(t, cfg, fmt.Sprintf(`Host noncanon
    HostName 127.0.0.1
    Port %d
    User %s
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    HostKeyAlgorithms ssh-ed25519
    BatchMode yes
    ForwardAgent yes
    PubkeyAuthentication no
    ConnectTimeout 10
    ControlMaster no
    ControlPath none
`, g.port, user, kh))
	return cfg
}

// TestE2ESecNonCanonicalHostKey: the premise of the tainted-path test.
// A host key signature with S + L verifies for OpenSSH 9.2's ssh (it logs
// in to the x/crypto server) and not for Go (ed25519.Verify and x/crypto's
// client both refuse it).
func TestE2ESecNonCanonicalHostKey(t *testing.T) {
	t.Parallel()
	needPrograms(t, "ssh")
	g := startGoSSHD(t, func(*ssh.ServerConn, bool) string { return "ok\n" })

	msg := []byte("a session id")
	sig, err := nonCanonicalSign(g.signer.priv, msg)
	if err != nil {
		t.Fatal(err)
	}
	if ed25519.Verify(g.signer.priv.Public().(ed25519.PublicKey), msg, sig) {
		t.Fatalf("Go's ed25519.Verify accepted a signature with a non-canonical S")
	}
	// The same signature with S reduced below L is valid: only the
	// encoding of S differs.
	canon, err := edwards25519.NewScalar().SetUniformBytes(append(append([]byte{}, sig[32:]...), make([]byte, 32)...))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(g.signer.priv.Public().(ed25519.PublicKey), msg, append(append([]byte{}, sig[:32]...), canon.Bytes()...)) {
		t.Fatalf("the signature reduced mod L does not verify: the signer is wrong")
	}

	e := newTestEnv(t)
	cfg := g.sshConfig(t, e, "anyone")
	if r := e.run(nil, "ssh", "-F", cfg, "noncanon", "echo"); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("OpenSSH's ssh did not accept the non-canonical host key signature: %s", r)
	}
	_, err = ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), &ssh.ClientConfig{
		User: "anyone", HostKeyCallback: ssh.FixedHostKey(g.signer.pub), Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatalf("x/crypto's ssh client accepted the non-canonical host key signature")
	}
	t.Logf("x/crypto's client: %v", err)
}

// secAgentProbe is what the x/crypto server saw through one forwarded
// agent channel.
type secAgentProbe struct {
	Comments                          []string
	RestrictedListed, PlainListed     bool
	RestrictedSigned, PlainSigned     bool
	CertSigned                        bool
	Status, SignCert, Hint, RemoveAll error
	Err                               string
}

// probeAgent opens auth-agent@openssh.com back through the client and asks
// everything; restricted and plain are upstream keys, cert a warden
// certificate learned locally (nil: none).
func probeAgent(sc *ssh.ServerConn, user string, restricted, plain, cert ssh.PublicKey, hostKey ssh.PublicKey) secAgentProbe {
	var p secAgentProbe
	ch, reqs, err := sc.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		p.Err = "open auth-agent@openssh.com: " + err.Error()
		return p
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	ag := agent.NewClient(ch)
	keys, err := ag.List()
	if err != nil {
		p.Err = "list: " + err.Error()
	}
	for _, k := range keys {
		p.Comments = append(p.Comments, k.Comment)
		switch string(k.Marshal()) {
		case string(restricted.Marshal()):
			p.RestrictedListed = true
		case string(plain.Marshal()):
			p.PlainListed = true
		}
	}
	sid := sc.SessionID()
	_, err = ag.Sign(restricted, faultUserauthData(sid, user, restricted, hostKey))
	p.RestrictedSigned = err == nil
	_, err = ag.Sign(plain, faultUserauthData(sid, user, plain, hostKey))
	p.PlainSigned = err == nil
	if cert != nil {
		// As a hostbound login to this server, and as a plain publickey
		// one (what a client without hostbound sends).
		_, err = ag.Sign(cert, faultUserauthData(sid, user, cert, hostKey))
		p.CertSigned = err == nil
		_, err = ag.Sign(cert, ssh.Marshal(struct {
			SessionID []byte
			Type      byte
			User      string
			Service   string
			Method    string
			Sign      bool
			Algo      string
			Key       []byte
		}{sid, 50, user, "ssh-connection", "publickey", true, cert.Type(), cert.Marshal()}))
		p.CertSigned = p.CertSigned || err == nil
	}
	_, p.Status = ag.Extension(agentproxy.ExtStatus, []byte("{}"))
	_, p.SignCert = ag.Extension(agentproxy.ExtSignCert, []byte(fmt.Sprintf(`{"principal":%q,"host":"127.0.0.1","export_key":true}`, user)))
	_, p.Hint = ag.Extension(agentproxy.ExtHint, []byte(fmt.Sprintf(`{"ssh_pid":%d,"user":%q,"host":"127.0.0.1","port":22}`, os.Getpid(), user)))
	p.RemoveAll = ag.RemoveAll()
	return p
}

// TestE2ESecTaintedForwarding (issue 12, "Must show"): real `ssh -A`
// into the x/crypto server whose host signature Go rejects. The forwarded
// channel's bind fails to verify for warden: session.bind verified false,
// trust tainted; through that channel the server gets no warden
// certificate (listed or signed, though it names one the agent holds), no
// status, sign-cert or hint, and cannot remove keys. The bind still
// reaches the user's ssh-agent: a key restricted with `ssh-add -h` to
// another host is neither listed nor signed there, exactly as with ssh -A
// straight to that ssh-agent, while an unrestricted key works in both.
func TestE2ESecTaintedForwarding(t *testing.T) {
	t.Parallel()
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	up := startSSHAgent(t, e)

	restrictedFile, plainFile := filepath.Join(e.dir, "restricted"), filepath.Join(e.dir, "plain")
	restrictedPub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(keygen(t, restrictedFile, "restricted")))
	plainPub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(keygen(t, plainFile, "plain")))
	otherHostKey := keygen(t, filepath.Join(e.dir, "elsewhere-host"), "elsewhere")
	otherKH := filepath.Join(e.dir, "elsewhere_known_hosts")
	writeFile(t, otherKH, "elsewhere "+otherHostKey+"\n")
	if r := e.sshAdd(up.socket, nil, "-H", otherKH, "-h", "elsewhere", restrictedFile); r.code != 0 {
		t.Fatalf("ssh-add -h elsewhere: %s", r)
	}
	if r := e.sshAdd(up.socket, nil, plainFile); r.code != 0 {
		t.Fatalf("ssh-add: %s", r)
	}

	var probes = make(chan secAgentProbe, 4)
	// The certificate and host key the server uses, set before ssh runs.
	var learned atomic.Pointer[[2]ssh.PublicKey]
	g := startGoSSHD(t, func(sc *ssh.ServerConn, agentFwd bool) string {
		if !agentFwd {
			probes <- secAgentProbe{Err: "the client did not ask for agent forwarding"}
			return "no agent\n"
		}
		k := learned.Load()
		probes <- probeAgent(sc, user, restrictedPub, plainPub, k[0], k[1])
		return "probed\n"
	})
	hostKeyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(g.signer.pub)))
	fpGo := ssh.FingerprintSHA256(g.signer.pub)

	// Routes that would give the x/crypto server a certificate if its
	// bind counted: one pins its host key, one names its address.
	e.writeConfig(fmt.Sprintf(`routes:
  - name: noncanon-pinned
    host_keys: [%[2]q]
    principals: [%[1]q]
    ttl: 5m
  - name: noncanon-addr
    hosts: ["127.0.0.1"]
    principals: [%[1]q]
    ttl: 5m
`, user, fwdKeyField(hostKeyLine)))
	a := startAgent(t, e, []string{"SSH_AUTH_SOCK=" + up.socket})
	// A certificate the agent holds, learned locally as warden-agent
	// sign prints it; the server asks for a signature with it.
	certLine := strings.TrimSpace(e.mustWarden("--socket", a.socket, "sign", "--principal", user, "--host", "127.0.0.1"))
	ck, _, _, _, err := ssh.ParseAuthorizedKey([]byte(certLine))
	if err != nil {
		t.Fatalf("warden-agent sign printed %q: %v", certLine, err)
	}
	learned.Store(&[2]ssh.PublicKey{ck, g.signer.pub})
	cfg := g.sshConfig(t, e, user)

	run := func(t *testing.T, sock string) secAgentProbe {
		t.Helper()
		r := e.run([]string{"SSH_AUTH_SOCK=" + sock}, "ssh", "-F", cfg, "noncanon", "probe")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "probed" {
			t.Fatalf("ssh -A noncanon: %s", r)
		}
		select {
		case p := <-probes:
			if p.Err != "" {
				t.Fatalf("the server's agent probe: %s", p.Err)
			}
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("the server reported no probe")
		}
		return secAgentProbe{}
	}

	// ssh-agent alone, the reference.
	ref := run(t, up.socket)
	if ref.RestrictedListed || ref.RestrictedSigned || !ref.PlainListed || !ref.PlainSigned {
		t.Fatalf("straight to ssh-agent: restricted listed %v signed %v, plain listed %v signed %v; want only the plain key",
			ref.RestrictedListed, ref.RestrictedSigned, ref.PlainListed, ref.PlainSigned)
	}
	if ref.RemoveAll == nil {
		// ssh-agent removed both keys for the far host: put them back.
		t.Logf("ssh-agent let the forwarded channel remove all keys; re-adding")
		e.sshAdd(up.socket, nil, "-H", otherKH, "-h", "elsewhere", restrictedFile)
		e.sshAdd(up.socket, nil, plainFile)
	}

	n := len(a.audit(t))
	p := run(t, a.socket)
	recs := a.audit(t)[n:]

	if p.RestrictedListed != ref.RestrictedListed || p.RestrictedSigned != ref.RestrictedSigned ||
		p.PlainListed != ref.PlainListed || p.PlainSigned != ref.PlainSigned {
		t.Errorf("through warden the upstream keys differ from ssh-agent alone: restricted listed %v signed %v, plain listed %v signed %v",
			p.RestrictedListed, p.RestrictedSigned, p.PlainListed, p.PlainSigned)
	}
	for _, c := range p.Comments {
		if strings.HasPrefix(c, "warden:") {
			t.Errorf("a warden certificate was listed on the tainted channel: %q", c)
		}
	}
	if p.CertSigned {
		t.Errorf("the warden certificate signed on the tainted channel")
	}
	for name, err := range map[string]error{"status": p.Status, "sign-cert": p.SignCert, "hint": p.Hint} {
		if err == nil {
			t.Errorf("warden's %s extension answered on the tainted channel", name)
		}
	}
	if p.RemoveAll == nil {
		t.Errorf("remove all keys succeeded on the tainted channel")
	}
	if !containsFP(e.listed(up.socket), ssh.FingerprintSHA256(plainPub)) {
		t.Errorf("the upstream agent lost its plain key through the tainted channel")
	}

	// Every bind of this run is the server's (no other host is involved)
	// and none verified: a failed bind is recorded without the host key
	// it claimed, since nothing of it is verified.
	binds := events(recs, "session.bind")
	if len(binds) == 0 {
		t.Fatalf("no session.bind for the server's forwarded channel")
	}
	var tainted []string
	for _, b := range binds {
		if fmt.Sprint(b["verified"]) != "false" || b.str("trust") != "tainted" || !strings.Contains(b.str("reason"), "does not verify") {
			t.Errorf("session.bind %v: want verified false, trust tainted, a reason saying the signature does not verify", b)
		}
		if hk := b.str("host_key"); hk != "" && hk != fpGo {
			t.Errorf("session.bind %v names a host key other than the server's %s", b, fpGo)
		}
		tainted = append(tainted, b.str("conn"))
	}
	var refused []auditRecord
	for _, r := range events(recs, "request.refused", "trust", "tainted") {
		if slices.Contains(tainted, r.str("conn")) {
			refused = append(refused, r)
		}
	}
	for _, name := range []string{agentproxy.ExtStatus, agentproxy.ExtSignCert, agentproxy.ExtHint} {
		if got := secRefused(refused, name); len(got) != 1 {
			t.Errorf("want one request.refused for %s with trust tainted on the tainted channel, got %v", name, events(recs, "request.refused"))
		}
	}
	if got := events(refused, "request.refused", "type", fmt.Sprint(secMsgRemoveAll)); len(got) != 1 {
		t.Errorf("want one request.refused for remove-all with trust tainted, got %v", events(recs, "request.refused"))
	}
	secNoWardenUse(t, recs, tainted)
	if got := events(recs, "cert.used"); len(got) != 0 {
		t.Errorf("cert.used during the tainted session: %v", got)
	}
	if got := events(recs, "cert.issued"); len(got) != 0 {
		t.Errorf("cert.issued for the tainted channel: %v", got)
	}
	// The failed bind reached ssh-agent: without it, ssh-agent would see
	// local use and list the restricted key (it does, locally).
	if !containsFP(e.listed(up.socket), ssh.FingerprintSHA256(restrictedPub)) {
		t.Errorf("the restricted key is not listed locally: the comparison above proves nothing")
	}
}

// secExampleRule returns the rule named name from examples/policy.yaml,
// as its lines stand there (up to the next blank line).
func secExampleRule(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "  - name: "+name+"\n")
	if i < 0 {
		t.Fatalf("examples/policy.yaml has no rule %s", name)
	}
	block, _, _ := strings.Cut(text[i:], "\n\n")
	return block + "\n"
}

// TestE2ESecForwardedProdDenied (issue 12, "Must show"): the shipped
// policy rule against forwarded prod (examples/policy.yaml's
// no-forwarded-prod, hosts "*.prod.example.com") stops `ssh -A bastion
// ssh prod`, where the inner ssh connects to prod by address and warden
// knows prod only by its host key: pinned in the route (whose hosts name
// db1.prod.example.com), or listed under that name in warden's
// known_hosts. Nothing is issued or used for prod; the refusal names the
// rule.
func TestE2ESecForwardedProdDenied(t *testing.T) {
	t.Parallel()
	policy := "rules:\n" + secExampleRule(t, "no-forwarded-prod") + `
  - name: allow-rest
    effect: allow
`
	for _, v := range []struct {
		name string
		opts fwdOpts
	}{
		{"pinned", fwdOpts{targetRoute: func(user string, target *sshdProc) string {
			return fmt.Sprintf("  - name: prod\n    hosts: [\"db1.prod.example.com\"]\n    host_keys: [%q]\n    principals: [%q]\n    ttl: 5m\n",
				fwdKeyField(target.hostPub), user)
		}}},
		{"known-hosts", fwdOpts{
			targetRoute: func(user string, _ *sshdProc) string {
				return fmt.Sprintf("  - name: prod\n    hosts: [\"db1.prod.example.com\"]\n    principals: [%q]\n    ttl: 5m\n", user)
			},
			knownHosts: func(target *sshdProc) string { return "db1.prod.example.com " + target.hostPub + "\n" },
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			l := newFwdLabOpts(t, policy, v.opts)
			r := l.hop()
			if r.code == 0 || strings.Contains(r.stdout, "ok") {
				t.Errorf("ssh -A bastion ssh prod succeeded although the policy denies forwarded prod: %s", r)
			}
			recs := l.a.audit(t)
			if l.bastion.certLogins(l.user) != 1 {
				t.Errorf("want the bastion's own certificate login, got %d", l.bastion.certLogins(l.user))
			}
			for _, ev := range []string{"cert.issued", "cert.used"} {
				if got := events(recs, ev, "route", "prod"); len(got) != 0 {
					t.Errorf("%s on route prod through the forwarded agent: %v", ev, got)
				}
			}
			if n := l.target.certLogins(l.user); n != 0 {
				t.Errorf("prod accepted %d certificate logins", n)
			}
			var denied []auditRecord
			for _, f := range events(recs, "cert.issue_failed", "route", "prod", "forwarded", "true") {
				if f.str("rule") == "no-forwarded-prod" {
					denied = append(denied, f)
				}
			}
			for _, f := range events(recs, "sign.denied") {
				if strings.Contains(f.str("reason"), "not issued through a forwarded agent") {
					denied = append(denied, f)
				}
			}
			if len(denied) == 0 {
				t.Errorf("no refusal by rule no-forwarded-prod: cert.issue_failed %v, sign.denied %v, cert.issued %v",
					events(recs, "cert.issue_failed"), events(recs, "sign.denied"), events(recs, "cert.issued"))
			}
		})
	}
}
