package agentproxy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
)

// The trust model (trust.go, docs/security.md), one row at a time, over
// the wire.

// badBind is a session-bind whose host signature does not verify.
func badBind(t testing.TB, host ssh.Signer, sid []byte) []byte {
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		t.Fatal(err)
	}
	sig.Blob[0] ^= 1
	return extensionBody(extSessionBind, ssh.Marshal(sessionBindMsg{
		HostKey: host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig),
	}))
}

// listWarden lists on a raw connection and returns the warden entries.
func listWarden(t testing.TB, c net.Conn) []identity {
	t.Helper()
	reply := rawCall(t, c, []byte{msgRequestIdentities})
	ids, err := parseIdentitiesAnswer(reply)
	if err != nil {
		t.Fatalf("list: %v (reply type %d)", err, reply[0])
	}
	var out []identity
	for _, id := range ids {
		if strings.HasPrefix(string(id.Comment), "warden:") {
			out = append(out, id)
		}
	}
	return out
}

func signBody(key ssh.PublicKey, data []byte) []byte {
	return ssh.Marshal(struct {
		T     byte
		K, D  []byte
		Flags uint32
	}{msgSignRequest, key.Marshal(), data, 0})
}

// issueCert gets a certificate of the pinned route into the cache, as a
// login would, and returns it.
func issueCert(t testing.TB, env *testEnv) *ssh.Certificate {
	t.Helper()
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	return listOneCert(t, a)
}

// TestTrustFailedBindTaints: a bind that does not verify taints the
// connection: no warden certificate is listed or signs, none of warden's
// extensions answer, and the bind still reaches the user's agent byte for
// byte so it can taint itself.
func TestTrustFailedBindTaints(t *testing.T) {
	upSock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte {
		if body[0] == msgRequestIdentities {
			return frameOf(msgIdentitiesAnswer, 0, 0, 0, 0)
		}
		return frameOf(msgFailure)
	})
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	cert := issueCert(t, env)

	c := dialRaw(t, env.socket)
	sid := randomSID(t)
	bad := badBind(t, env.host, sid)
	if reply := rawCall(t, c, bad); reply[0] != msgFailure {
		t.Fatalf("failed bind answered %d, want failure (the upstream refused it too)", reply[0])
	}
	if got := listWarden(t, c); len(got) != 0 {
		t.Fatalf("tainted connection listed %d warden certificates", len(got))
	}
	if reply := rawCall(t, c, signBody(cert, userauthData(sid, "deploy", cert, nil))); reply[0] != msgFailure {
		t.Fatalf("tainted connection got a signature (reply %d)", reply[0])
	}
	for _, ext := range []string{ExtStatus, ExtHint, ExtSignCert} {
		if reply := rawCall(t, c, extensionBody(ext, []byte(`{}`))); reply[0] != msgFailure {
			t.Errorf("%s answered %d on a tainted connection", ext, reply[0])
		}
	}
	// A good bind afterwards does not clean the connection.
	sid2 := randomSID(t)
	sig, _ := env.host.Sign(rand.Reader, sid2)
	rawCall(t, c, extensionBody(extSessionBind, ssh.Marshal(sessionBindMsg{
		HostKey: env.host.PublicKey().Marshal(), SessionID: sid2, Signature: ssh.Marshal(sig),
	})))
	if got := listWarden(t, c); len(got) != 0 {
		t.Fatalf("tainted connection listed %d warden certificates after another bind", len(got))
	}
	var sawBad bool
	for _, conn := range upLog.snapshot() {
		for _, m := range conn {
			sawBad = sawBad || bytes.Equal(m, bad)
		}
	}
	if !sawBad {
		t.Error("the failed bind did not reach the upstream agent byte for byte")
	}
	if rec := env.rec.last(evSessionBind); rec == nil || rec["trust"] != "tainted" {
		t.Errorf("last session.bind record %v, want trust tainted", rec)
	}
}

// TestTrustUnknownHostKeyAlgorithmBind: a bind with a host key algorithm
// warden cannot parse (a newer OpenSSH's ML-DSA, say) reaches the upstream
// agent unchanged and is answered as it answers; warden's side is tainted
// with a reason that names the algorithm.
func TestTrustUnknownHostKeyAlgorithmBind(t *testing.T) {
	upSock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte {
		if body[0] == msgRequestIdentities {
			return frameOf(msgIdentitiesAnswer, 0, 0, 0, 0)
		}
		return frameOf(msgSuccess) // this agent knows the algorithm
	})
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	const alg = "ssh-mldsa44-ed25519@openssh.com"
	hostKey := ssh.Marshal(struct{ Alg, Key string }{alg, strings.Repeat("k", 1344)})
	sig := ssh.Marshal(struct{ Alg, Blob string }{alg, strings.Repeat("s", 2452)})
	bindMsg := extensionBody(extSessionBind, ssh.Marshal(sessionBindMsg{HostKey: hostKey, SessionID: randomSID(t), Signature: sig}))
	c := dialRaw(t, env.socket)
	if reply := rawCall(t, c, bindMsg); reply[0] != msgSuccess {
		t.Fatalf("bind answered %d, want the upstream agent's success", reply[0])
	}
	conns := upLog.snapshot()
	if len(conns) != 1 || len(conns[0]) < 1 || !bytes.Equal(conns[0][0], bindMsg) {
		t.Fatal("the bind did not reach the upstream agent unchanged")
	}
	rec := env.rec.last(evSessionBind)
	if rec == nil || rec["trust"] != "tainted" || !strings.Contains(rec["reason"].(string), alg) {
		t.Fatalf("session.bind record %v, want trust tainted and a reason naming %s", rec, alg)
	}
	for _, ext := range []string{ExtStatus, ExtSignCert} {
		if reply := rawCall(t, c, extensionBody(ext, []byte(`{}`))); reply[0] != msgFailure {
			t.Errorf("%s answered %d on a tainted connection", ext, reply[0])
		}
	}
}

// TestTrustForwardedSignsOnlyHostbound: on a forwarded connection a
// warden certificate signs only a publickey-hostbound login whose host key
// is the last bind's; a plain publickey signature (usable on any host
// with that session id) is refused, as is another host key.
func TestTrustForwardedSignsOnlyHostbound(t *testing.T) {
	env := startServer(t, nil)
	bastion := newHostKey(t)
	_, a := dial(t, env.socket)
	if err := bind(a, bastion, randomSID(t), true); err != nil { // ssh -A bastion
		t.Fatal(err)
	}
	sid := randomSID(t)
	if err := bind(a, env.host, sid, false); err != nil { // bastion's ssh to the pinned target
		t.Fatal(err)
	}
	cert := listOneCert(t, a)
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, nil)); err == nil {
		t.Fatal("forwarded connection got a plain publickey signature")
	}
	if rec := env.rec.last(evSignDenied); rec == nil || !strings.Contains(rec["reason"].(string), "publickey-hostbound") {
		t.Errorf("sign.denied %v, want the hostbound reason", rec)
	}
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, bastion.PublicKey())); err == nil {
		t.Fatal("forwarded connection signed for a host key other than the bound one")
	}
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, env.host.PublicKey())); err != nil {
		t.Fatalf("hostbound login for the bound host refused: %v", err)
	}
	// And none of warden's extensions, nor unlock or key removal.
	for _, ext := range []string{ExtStatus, ExtHint, ExtSignCert} {
		if _, err := a.Extension(ext, []byte(`{"principal":"deploy","host":"x","export_key":true}`)); err == nil {
			t.Errorf("%s answered on a forwarded connection", ext)
		}
	}
	if err := a.Remove(cert); err == nil {
		t.Error("forwarded connection removed a key")
	}
	if err := a.RemoveAll(); err == nil {
		t.Error("forwarded connection removed all keys")
	}
	if rec := env.rec.last(evRequestRefused); rec == nil || rec["trust"] != "forwarded" {
		t.Errorf("request.refused %v, want trust forwarded", rec)
	}
}

// TestTrustForwardedCrossHostBind: a far host that binds its own key
// over another session cannot turn that into a signature for the pinned
// host: the hostbound data must name the bound key, and the route of the
// bound key is what is listed.
func TestTrustForwardedCrossHostBind(t *testing.T) {
	env := startServer(t, nil)
	issueCert(t, env)
	evil := newHostKey(t)
	_, a := dial(t, env.socket)
	if err := bind(a, newHostKey(t), randomSID(t), true); err != nil {
		t.Fatal(err)
	}
	sid := randomSID(t)
	if err := bind(a, evil, sid, false); err != nil {
		t.Fatal(err)
	}
	keys, _ := a.List()
	if len(wardenKeys(keys)) != 0 {
		t.Fatal("a host key no route pins got a certificate")
	}
	cert := env.srv.Cache().Valid()[0].Cert
	for _, hk := range []ssh.PublicKey{nil, env.host.PublicKey(), evil.PublicKey()} {
		if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, hk)); err == nil {
			t.Fatalf("signed with host key %v on a connection bound to another host", hk)
		}
	}
}

// TestTrustUnboundSeesOnlyBindFreeCertificates: a connection that never
// binds (ssh-add -l, a client before OpenSSH 8.9 forwarding an agent) is
// listed only the certificates it could use.
func TestTrustUnboundSeesOnlyBindFreeCertificates(t *testing.T) {
	env := startServer(t, nil)
	issueCert(t, env)
	_, a := dial(t, env.socket)
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(wardenKeys(keys)) != 0 {
		t.Fatalf("unbound connection listed %d require_bind certificates", len(wardenKeys(keys)))
	}
}

// TestTrustLockOnlyUnbound: lock and unlock only from a connection without
// binds; unlock attempts are taken one at a time with a growing delay, so
// parallel guesses are no faster than guesses in a row; the right
// passphrase clears warden's lock even when the upstream agent was
// unlocked behind its back; remove is refused while locked.
func TestTrustLockOnlyUnbound(t *testing.T) {
	upSock, _ := startSSHAgent(t)
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	cert := issueCert(t, env)
	_, bound := dial(t, env.socket)
	if err := bind(bound, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	if err := bound.Lock([]byte("pw")); err == nil {
		t.Fatal("a bound connection locked the agent")
	}
	_, local := dial(t, env.socket)
	if err := local.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if err := local.Remove(cert); err == nil {
		t.Error("remove answered while locked")
	}
	if err := local.RemoveAll(); err == nil {
		t.Error("remove-all answered while locked")
	}

	const guesses = 5
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < guesses; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, g := dial(t, env.socket)
			if err := g.Unlock([]byte("wrong")); err == nil {
				t.Error("wrong passphrase unlocked")
			}
		}()
	}
	wg.Wait()
	// 0.1 + 0.2 + … + 0.5 s, one after the other.
	if took, floor := time.Since(start), 1400*time.Millisecond; took < floor {
		t.Errorf("%d parallel wrong guesses took %v, want at least %v (serialised delays)", guesses, took, floor)
	}

	// The upstream agent is unlocked behind warden's back.
	upConn, err := net.Dial("unix", upSock)
	if err != nil {
		t.Fatal(err)
	}
	defer upConn.Close()
	if err := agent.NewClient(upConn).Unlock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if err := local.Unlock([]byte("pw")); err != nil {
		t.Fatalf("the right passphrase did not unlock warden: %v", err)
	}
	if env.srv.isLocked() {
		t.Fatal("warden still locked")
	}
}

// TestTrustRemoveAllDropsWardenCertificates: ssh-add -D also drops the
// certificates warden holds.
func TestTrustRemoveAllDropsWardenCertificates(t *testing.T) {
	env := startServer(t, nil)
	issueCert(t, env)
	_, a := dial(t, env.socket)
	if err := a.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if n := len(env.srv.Cache().Valid()); n != 0 {
		t.Fatalf("%d certificates still held after remove-all", n)
	}
}

// TestTrustExtensionsOnlyForWardenProgram: another program of the same
// user (here python3) gets no answer from warden's extensions.
func TestTrustExtensionsOnlyForWardenProgram(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	env := startServer(t, nil)
	script := `
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
name = b"status@ops-warden.netkingdom"
body = bytes([27]) + struct.pack(">I", len(name)) + name
s.sendall(struct.pack(">I", len(body)) + body)
n = struct.unpack(">I", s.recv(4))[0]
print(s.recv(n)[0])
`
	out, err := exec.Command(py, "-c", script, env.socket).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "5" {
		t.Fatalf("status extension from python3 answered type %s, want 5 (failure)", out)
	}
	rec := env.rec.last(evRequestRefused)
	if rec == nil || !strings.Contains(rec["reason"].(string), "warden-agent program") {
		t.Fatalf("request.refused %v, want the program reason", rec)
	}
	// The test binary is the agent's own executable: it is answered.
	var st Status
	if err := CallExtension(env.socket, ExtStatus, struct{}{}, &st, 5*time.Second); err != nil {
		t.Fatalf("status from the agent's own program: %v", err)
	}
}

// TestTrustHintOnlyForOwnSSH: a hint names the caller's own ssh (itself
// or an ancestor), never another process, and a live hint is never
// replaced.
func TestTrustHintOnlyForOwnSSH(t *testing.T) {
	env := startServer(t, nil)
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	var reply HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: other.Process.Pid, User: "bob", Host: "db1.example.com", Port: 22}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.OK || !strings.Contains(reply.Error, "not this process or one of its parents") {
		t.Fatalf("hint for another process: %+v", reply)
	}
	// A dead pid gets the same answer as a live one that is not ours.
	var dead HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: 1 << 22, User: "bob", Host: "db1.example.com", Port: 22}, &dead, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if dead.Error != strings.ReplaceAll(reply.Error, itoaPid(other.Process.Pid), itoaPid(1<<22)) {
		t.Fatalf("a dead pid is told apart from a live one: %q vs %q", dead.Error, reply.Error)
	}
	if env.iss.n.Load() != 0 {
		t.Fatal("a refused hint issued a certificate")
	}
	me := os.Getpid()
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: me, User: "bob", Host: "db1.example.com", Port: 22}, &reply, 5*time.Second); err != nil || !reply.OK {
		t.Fatalf("hint for the caller itself: %v %+v", err, reply)
	}
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: me, User: "alice", Host: "db1.example.com", Port: 22}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.OK || !strings.Contains(reply.Error, "never replaced") {
		t.Fatalf("a second, different hint replaced the live one: %+v", reply)
	}
}

func itoaPid(pid int) string {
	b, _ := json.Marshal(pid)
	return string(b)
}

// TestTrustHintsLimitedPerConnection: one connection may send only a few
// hints.
func TestTrustHintsLimitedPerConnection(t *testing.T) {
	env := startServer(t, nil)
	c := dialRaw(t, env.socket)
	body := extensionBody(ExtHint, []byte(`{"ssh_pid":`+itoaPid(os.Getpid())+`,"user":"bob","host":"nohost","port":22}`))
	for i := 0; i < hintsPerConn; i++ {
		if reply := rawCall(t, c, body); reply[0] != msgSuccess {
			t.Fatalf("hint %d answered %d", i, reply[0])
		}
	}
	if reply := rawCall(t, c, body); reply[0] != msgFailure {
		t.Fatalf("hint %d on one connection answered %d, want failure", hintsPerConn+1, reply[0])
	}
}

// TestTrustRecordsRateLimited: a flood of failing binds from one
// connection writes at most a burst of records and one audit.limited.
func TestTrustRecordsRateLimited(t *testing.T) {
	env := startServer(t, nil)
	c := dialRaw(t, env.socket)
	const flood = connRecordBurst + 300
	for i := 0; i < flood; i++ {
		if reply := rawCall(t, c, badBind(t, env.host, randomSID(t))); reply[0] != msgFailure {
			t.Fatalf("bad bind %d answered %d", i, reply[0])
		}
	}
	binds := env.rec.count(evSessionBind)
	if binds >= flood || binds > connRecordBurst+connRecordRate*10 {
		t.Fatalf("%d session.bind records for %d binds, want the flood limited", binds, flood)
	}
	if n := env.rec.count(evAuditLimited); n != 1 {
		t.Fatalf("%d audit.limited records, want exactly 1", n)
	}
}

// TestTrustUserauthServiceAndAlgorithm: the signed data must be a login
// for ssh-connection with the certificate's own algorithm.
func TestTrustUserauthServiceAndAlgorithm(t *testing.T) {
	env := startServer(t, nil)
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	if err := bind(a, env.host, sid, false); err != nil {
		t.Fatal(err)
	}
	cert := listOneCert(t, a)
	good := userauthData(sid, "deploy", cert, nil)
	wrongService := bytes.Replace(good, []byte("ssh-connection"), []byte("ssh-userauthX"), 1)
	if _, err := a.Sign(cert, wrongService); err == nil {
		t.Error("signed a login for another service")
	}
	wrongAlg := bytes.Replace(good, []byte("ssh-ed25519-cert-v01@openssh.com"), []byte("ssh-rsa-cert-v01@openssh.com\x00\x00\x00\x00"), 1)
	if _, err := a.Sign(cert, wrongAlg); err == nil {
		t.Error("signed a login naming another algorithm")
	}
	if _, err := a.Sign(cert, good); err != nil {
		t.Fatalf("a good login was refused: %v", err)
	}
}

// TestRouterMalformedAndLegacyFrames: a zero-length frame, protocol 1
// messages and replies sent as requests get a failure reply and the
// connection keeps serving; an oversized length closes it; a partial
// frame times out.
func TestRouterMalformedAndLegacyFrames(t *testing.T) {
	upSock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte { return frameOf(msgSuccess) })
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Upstream = upSock
		cfg.FrameTimeout = 300 * time.Millisecond
	})
	c := dialRaw(t, env.socket)
	c.Write([]byte{0, 0, 0, 0})
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[4] != msgFailure {
		t.Fatalf("zero-length frame: %v %v", hdr, err)
	}
	for _, typ := range []byte{1, 2, 3, 4, 7, 8, 9, 24, msgSuccess, msgIdentitiesAnswer} {
		if reply := rawCall(t, c, []byte{typ}); !bytes.Equal(reply, replyFailure) {
			t.Errorf("message %d answered %v, want failure", typ, reply)
		}
	}
	for _, conn := range upLog.snapshot() {
		if len(conn) > 0 {
			t.Fatalf("legacy or reply messages reached the upstream agent: %v", conn)
		}
	}
	// Still serving.
	if reply := rawCall(t, c, []byte{msgRequestIdentities}); reply[0] != msgIdentitiesAnswer && reply[0] != msgFailure {
		t.Fatalf("after malformed frames: %v", reply)
	}
	// A partial frame is dropped after the frame timeout.
	p := dialRaw(t, env.socket)
	p.Write([]byte{0, 0, 0, 10, msgRequestIdentities})
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("partial frame: read %v, want the connection closed", err)
	}
}

// TestRouterUnknownFramesPassByteForByte: PKCS#11, an unknown message
// number and an add of a key type warden cannot parse go to the upstream
// agent unchanged and its reply comes back unchanged.
func TestRouterUnknownFramesPassByteForByte(t *testing.T) {
	odd := []byte{msgExtensionResponse, 0, 0, 0, 3, 'o', 'd', 'd', 42}
	upSock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte { return frameOf(odd...) })
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	c := dialRaw(t, env.socket)
	skAdd := append([]byte{msgAddIDConstrained}, ssh.Marshal(struct{ T, P, A string }{"sk-ssh-ed25519-future@openssh.com", "pub", "ssh:"})...)
	skAdd = append(skAdd, constrainExtension)
	skAdd = append(skAdd, ssh.Marshal(struct {
		N string
		B bool
		C string
	}{"associated-certs-v00@openssh.com", true, "certs"})...)
	frames := [][]byte{
		append([]byte{msgAddSmartcardKey}, ssh.Marshal(struct{ P, Pin string }{"/usr/lib/softhsm/libsofthsm2.so", "1234"})...),
		append([]byte{msgRemoveSmartcardKey}, ssh.Marshal(struct{ P, Pin string }{"/usr/lib/softhsm/libsofthsm2.so", ""})...),
		{200, 1, 2, 3},
		skAdd,
		extensionBody("custom@example.com", []byte{9, 9}),
	}
	for _, f := range frames {
		if reply := rawCall(t, c, f); !bytes.Equal(reply, odd) {
			t.Errorf("message %d: reply %v, want the upstream's %v", f[0], reply, odd)
		}
	}
	got := upLog.snapshot()
	if len(got) != 1 || len(got[0]) != len(frames) {
		t.Fatalf("upstream received %v", got)
	}
	for i, f := range frames {
		if !bytes.Equal(got[0][i], f) {
			t.Errorf("frame %d changed on the way: %x, sent %x", i, got[0][i], f)
		}
	}
}

// TestQueryAnswersExtensionResponse: "query" is answered as OpenSSH 10.3
// does (type 29, "query", names), with the upstream agent's extensions
// merged in.
func TestQueryAnswersExtensionResponse(t *testing.T) {
	upReply := appendString(appendString(appendString([]byte{msgExtensionResponse}, []byte("query")), []byte("query")), []byte("upstream-only@example.com"))
	upSock, _ := recordingUpstream(t, func(_ int, body []byte) []byte { return frameOf(upReply...) })
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	c := dialRaw(t, env.socket)
	reply := rawCall(t, c, extensionBody(extQuery, nil))
	if reply[0] != msgExtensionResponse {
		t.Fatalf("query answered type %d, want %d", reply[0], msgExtensionResponse)
	}
	first, _, ok := parseString(reply[1:])
	if !ok || string(first) != extQuery {
		t.Fatalf("query reply does not start with the string \"query\": %q", first)
	}
	names := parseQueryReply(reply)
	for _, want := range []string{extQuery, extSessionBind, ExtHint, "upstream-only@example.com"} {
		if !slices.Contains(names, want) {
			t.Errorf("query names %v lack %s", names, want)
		}
	}
	if !IsWarden(env.socket, 5*time.Second) {
		t.Error("IsWarden does not recognise the new form")
	}
}

// TestExportedKeyIsNeverTheAgents: sign --out gets a key and certificate
// minted for it alone; the agent never signs with that key, and the
// certificate the logins use is another.
func TestExportedKeyIsNeverTheAgents(t *testing.T) {
	env := startServer(t, nil)
	cached := issueCert(t, env)
	var reply SignCertReply
	if err := CallExtension(env.socket, ExtSignCert, SignCertRequest{Principal: "alice", Host: "db1.example.com", ExportKey: true}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.PrivateKey == "" {
		t.Fatalf("no key exported: %+v", reply)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(reply.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	exported := pub.(*ssh.Certificate)
	if env.srv.Cache().Lookup(exported.Marshal()) != nil {
		t.Fatal("the exported certificate is one the agent holds")
	}
	for _, e := range env.srv.Cache().Valid() {
		if bytes.Equal(e.Cert.Key.Marshal(), exported.Key.Marshal()) {
			t.Fatal("the agent holds the exported key")
		}
	}
	if bytes.Equal(cached.Key.Marshal(), exported.Key.Marshal()) {
		t.Fatal("exported the login certificate's key")
	}
	k, err := ssh.ParseRawPrivateKey([]byte(reply.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.(*ed25519.PrivateKey).Public().(ed25519.PublicKey), exported.Key.(ssh.CryptoPublicKey).CryptoPublicKey().(ed25519.PublicKey)) {
		t.Fatal("exported key does not match its certificate")
	}
	if rec := env.rec.last(evCertExported); rec == nil || rec["exported_only"] != true {
		t.Fatalf("cert.exported %v", rec)
	}
}

// TestConnectionsPerPidCapped: one process cannot hold more than the cap.
func TestConnectionsPerPidCapped(t *testing.T) {
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.MaxConnsPerPid = 4 })
	for i := 0; i < 4; i++ {
		c := dialRaw(t, env.socket)
		if reply := rawCall(t, c, []byte{msgRequestIdentities}); reply[0] != msgIdentitiesAnswer {
			t.Fatalf("connection %d: %v", i, reply)
		}
	}
	c := dialRaw(t, env.socket)
	c.Write(frameOf(msgRequestIdentities))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a fifth connection from one process was served")
	}
}

// TestTargetRefusedRecorded: a hinted host whose route pins another host
// key gets no certificate, and the refusal is in the audit log with the
// reason (issue 16: a pinned host-key mismatch left no trace).
func TestTargetRefusedRecorded(t *testing.T) {
	pinned := newHostKey(t)
	env := startServer(t, func(_ *Config, cat *catalog.Catalog) {
		cat.Routes = append([]catalog.Route{{Name: "db", Hosts: []string{"db.pinned.test"}, Principals: []string{"bob"},
			HostKeys: []string{string(ssh.MarshalAuthorizedKey(pinned.PublicKey()))}}}, cat.Routes...)
	})
	var reply HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: os.Getpid(), User: "bob", Host: "db.pinned.test", Port: 22}, &reply, 5*time.Second); err != nil || !reply.OK {
		t.Fatalf("hint: %v %+v", err, reply)
	}
	_, a := dial(t, env.socket)
	if err := bind(a, newHostKey(t), randomSID(t), false); err != nil { // a man in the middle's key
		t.Fatal(err)
	}
	keys, _ := a.List()
	if len(wardenKeys(keys)) != 0 {
		t.Fatal("a certificate was listed for a host key the route does not pin")
	}
	rec := env.rec.last(evTargetRefused)
	if rec == nil || rec["route"] != "db" || rec["host"] != "db.pinned.test" || !strings.Contains(rec["reason"].(string), "pins") {
		t.Fatalf("target.refused %v, want route db, host db.pinned.test and the pin reason", rec)
	}
}

// TestTrustBindWhileLockedStillClassifies: a forwarded channel opened
// while the agent is locked has its bind refused (as ssh-agent does) but
// still verified and kept, so it cannot unlock the agent as if it were a
// local ssh-add.
func TestTrustBindWhileLockedStillClassifies(t *testing.T) {
	env := startServer(t, nil)
	_, local := dial(t, env.socket)
	if err := local.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	_, fwd := dial(t, env.socket)
	if err := bind(fwd, newHostKey(t), randomSID(t), true); err == nil {
		t.Fatal("a bind was accepted while locked")
	}
	if err := fwd.Unlock([]byte("pw")); err == nil {
		t.Fatal("a connection bound for forwarding while locked unlocked the agent")
	}
	if !env.srv.isLocked() {
		t.Fatal("agent unlocked")
	}
	if rec := env.rec.last(evRequestRefused); rec == nil || rec["trust"] != "forwarded" {
		t.Fatalf("request.refused %v, want trust forwarded", rec)
	}
}
