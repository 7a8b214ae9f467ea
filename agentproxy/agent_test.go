package agentproxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
)

func TestSocketIs0600InA0700Directory(t *testing.T) {
	env := startServer(t, nil)
	fi, err := os.Stat(env.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(env.socket))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}
}

func TestListenRefusesLiveSocketAndRemovesStaleOne(t *testing.T) {
	env := startServer(t, nil)
	if _, err := Listen(env.socket); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("Listen over a live agent: err = %v, want 'already listening'", err)
	}
	// A stale socket: bound, then its listener gone without unlinking.
	stale := filepath.Join(t.TempDir(), "d", "stale.sock")
	os.MkdirAll(filepath.Dir(stale), 0o700)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestOversizedMessageClosesConnection(t *testing.T) {
	env := startServer(t, nil)
	c := dialRaw(t, env.socket)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 300<<10)
	c.Write(hdr[:])
	c.Write(bytes.Repeat([]byte{11}, 4096))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if err != io.EOF && !isReset(err) {
		t.Fatalf("read after 300 KiB header: n=%d err=%v, want the connection closed", n, err)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

// rawCall sends one framed message and returns the reply body.
func rawCall(t testing.TB, c net.Conn, msg []byte) []byte {
	t.Helper()
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := c.Write(append(frame, msg...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return body
}

func TestMalformedMessagesGetFailureAndConnectionStaysUsable(t *testing.T) {
	env := startServer(t, nil)
	c := dialRaw(t, env.socket)
	for _, msg := range [][]byte{
		{0xff, 1, 2, 3},      // unknown type
		{13, 0, 0, 0, 99, 1}, // sign request with a truncated key blob
		{17, 0, 0},           // add identity, garbage
		{27, 0, 0, 0, 200},   // extension with a bad name length
		{22},                 // lock without passphrase
		append([]byte{27}, ssh.Marshal(struct{ N string }{extSessionBind})...), // empty bind
	} {
		reply := rawCall(t, c, msg)
		if len(reply) == 0 || (reply[0] != msgFailure && reply[0] != msgExtensionFailure) {
			t.Fatalf("message %x: reply %x, want failure", msg, reply)
		}
	}
	// The same connection still answers a well-formed request.
	reply := rawCall(t, c, []byte{11}) // REQUEST_IDENTITIES
	if reply[0] != 12 {
		t.Fatalf("list after garbage: reply type %d, want 12", reply[0])
	}
}

func TestBindWithWrongSignatureIsRefused(t *testing.T) {
	env := startServer(t, nil)
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	other := newHostKey(t)
	sig, _ := other.Sign(rand.Reader, sid)
	_, err := a.Extension(extSessionBind, ssh.Marshal(sessionBindMsg{
		HostKey: env.host.PublicKey().Marshal(), SessionID: sid, Signature: ssh.Marshal(sig),
	}))
	if err == nil {
		t.Fatal("bind signed by another key was accepted")
	}
	if r := env.rec.last(evSessionBind); r == nil || r["verified"] != false {
		t.Fatalf("session.bind record %v, want verified=false", r)
	}
	// Nothing is bound, so nothing is issued for the pinned host.
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(wardenKeys(keys)) != 0 || env.iss.n.Load() != 0 {
		t.Fatalf("listed %d warden keys, %d issuances after a refused bind", len(wardenKeys(keys)), env.iss.n.Load())
	}
}

func TestBindRulesFollowOpenSSH(t *testing.T) {
	env := startServer(t, nil)
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, bytes.Repeat([]byte{1}, 129), false); err == nil {
		t.Error("session id of 129 bytes accepted")
	}
	sid := randomSID(t)
	if err := bind(a, env.host, sid, true); err != nil {
		t.Fatal(err)
	}
	if err := bind(a, env.host, sid, true); err != nil {
		t.Errorf("same id and key again: %v, want accepted", err)
	}
	if err := bind(a, newHostKey(t), sid, true); err == nil {
		t.Error("same session id with another key accepted")
	}
	if err := bind(a, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	if err := bind(a, env.host, randomSID(t), false); err == nil {
		t.Error("rebind of a connection bound for authentication accepted")
	}
	_, b := dial(t, env.socket)
	for i := 0; i < maxBinds; i++ {
		if err := bind(b, env.host, randomSID(t), true); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	if err := bind(b, env.host, randomSID(t), true); err == nil {
		t.Errorf("bind number %d accepted", maxBinds+1)
	}
}

func TestSignChecksTheBoundSession(t *testing.T) {
	env := startServer(t, nil)
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	if err := bind(a, env.host, sid, false); err != nil {
		t.Fatal(err)
	}
	cert := listOneCert(t, a)
	if len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "deploy" {
		t.Fatalf("principals %v, want [deploy]", cert.ValidPrincipals)
	}

	cases := []struct {
		name string
		data []byte
	}{
		{"other session id", userauthData(randomSID(t), "deploy", cert, nil)},
		{"user not a principal", userauthData(sid, "root", cert, nil)},
		{"hostbound with another host key", userauthData(sid, "deploy", cert, newHostKey(t).PublicKey())},
		{"not a userauth request (SSHSIG)", []byte("SSHSIG\x00\x00\x00\x04file")},
		{"userauth for another key", userauthData(sid, "deploy", env.host.PublicKey(), nil)},
	}
	for _, tc := range cases {
		if _, err := a.Sign(cert, tc.data); err == nil {
			t.Errorf("%s: signed, want refused", tc.name)
		}
	}
	if got := env.rec.count(evSignDenied); got != len(cases) {
		t.Errorf("%d sign.denied records, want %d", got, len(cases))
	}
	for _, data := range [][]byte{
		userauthData(sid, "deploy", cert, nil),
		userauthData(sid, "deploy", cert, env.host.PublicKey()),
	} {
		sig, err := a.Sign(cert, data)
		if err != nil {
			t.Fatalf("valid login refused: %v", err)
		}
		if err := cert.Verify(data, sig); err != nil {
			t.Fatalf("signature does not verify: %v", err)
		}
	}
	if env.rec.count(evCertUsed) != 2 {
		t.Errorf("%d cert.used records, want 2", env.rec.count(evCertUsed))
	}
}

func TestConcurrentConnectionsShareOneIssuance(t *testing.T) {
	env := startServer(t, nil)
	env.iss.delay = 50 * time.Millisecond // keep the issuance in flight while others ask
	const clients = 50
	oneSharedCertificate(t, listBurst(t, env.socket, env.host, clients, 30*time.Second))
	if got := env.iss.n.Load(); got != 1 {
		t.Fatalf("%d issuances for %d concurrent clients, want exactly 1", got, clients)
	}
}

func TestHintSelectsUserAndHost(t *testing.T) {
	env := startServer(t, nil)
	sshPid := os.Getpid() // this test process plays ssh: it sends the hint and then connects
	var reply HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: sshPid, User: "mallory", Host: "db1.example.com", Port: 22}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if reply.OK || !strings.Contains(reply.Error, "does not allow user mallory") {
		t.Fatalf("hint for a refused user: %+v", reply)
	}
	_, a := dial(t, env.socket)
	bind(a, env.host, randomSID(t), false)
	keys, _ := a.List()
	if len(wardenKeys(keys)) != 0 {
		t.Fatal("certificate listed for a refused hint")
	}

	// A live hint is never replaced; this test plays a second ssh process
	// with the same pid.
	env.srv.hints.drop(sshPid)
	reply = HintReply{}
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: sshPid, User: "bob", Host: "db1.example.com", Port: 22}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !reply.OK || reply.Route != "hinted" || reply.Principal != "bob" || reply.Serial == "" {
		t.Fatalf("hint reply %+v, want ok on route hinted for bob with a serial", reply)
	}
	_, a = dial(t, env.socket)
	sid := randomSID(t)
	bind(a, env.host, sid, false)
	keys, _ = a.List()
	certs := wardenKeys(keys)
	if len(certs) != 1 {
		t.Fatalf("listed %d certificates, want 1", len(certs))
	}
	cert := parseCert(t, certs[0])
	if strings.Join(cert.ValidPrincipals, ",") != "bob" {
		t.Fatalf("principals %v, want exactly [bob]", cert.ValidPrincipals)
	}
	if env.iss.n.Load() != 1 {
		t.Fatalf("%d issuances, want 1 (the hint issued ahead, the list reused it)", env.iss.n.Load())
	}
	if _, err := a.Sign(cert, userauthData(sid, "bob", cert, nil)); err != nil {
		t.Fatal(err)
	}

	// Negated host pattern: no route, so nothing is listed and the hint is ok.
	env.srv.hints.drop(sshPid)
	reply = HintReply{}
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: sshPid, User: "bob", Host: "bad.example.com", Port: 22}, &reply, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !reply.OK || reply.Route != "" {
		t.Fatalf("hint for an unrouted host: %+v", reply)
	}
}

func TestConnectionWithoutBindSeesIssuedCertsButSignsOnlyWhereRouteAllows(t *testing.T) {
	env := startServer(t, func(cfg *Config, cat *catalog.Catalog) {
		no := false
		cat.Routes = append(cat.Routes, catalog.Route{Name: "tunnel", Hosts: []string{"tunnel.internal"}, Principals: []string{"svc"}, RequireBind: &no})
	})
	var reply HintReply
	for _, h := range []HintRequest{{User: "bob", Host: "db1.example.com"}, {User: "svc", Host: "tunnel.internal"}} {
		h.SSHPid = os.Getpid()
		env.srv.hints.drop(h.SSHPid) // each plays a new ssh process
		if err := CallExtension(env.socket, ExtHint, h, &reply, 5*time.Second); err != nil || !reply.OK {
			t.Fatalf("hint %+v: %v %+v", h, err, reply)
		}
	}
	// The last hint (svc) selects this process's target; without a bind
	// only the already-issued certificate is listed, nothing new.
	_, a := dial(t, env.socket)
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	certs := wardenKeys(keys)
	if len(certs) != 1 || !strings.HasSuffix(certs[0].Comment, ":svc") {
		t.Fatalf("unbound list: %v", certs)
	}
	cert := parseCert(t, certs[0])
	if _, err := a.Sign(cert, userauthData(randomSID(t), "svc", cert, nil)); err != nil {
		t.Fatalf("require_bind: false route refused an unbound client: %v", err)
	}
	// The bob certificate exists but its route requires a bind.
	var bobCert *ssh.Certificate
	for _, e := range env.srv.Cache().Valid() {
		if e.Key.Principal == "bob" {
			bobCert = e.Cert
		}
	}
	if bobCert == nil {
		t.Fatal("no certificate issued for bob")
	}
	if _, err := a.Sign(bobCert, userauthData(randomSID(t), "bob", bobCert, nil)); err == nil {
		t.Fatal("unbound client signed with a certificate whose route requires session-bind")
	}
	if r := env.rec.last(evSignDenied); r == nil || !strings.Contains(r["reason"].(string), "session-bind") {
		t.Fatalf("sign.denied reason %v", r)
	}
	if env.iss.n.Load() != 2 {
		t.Fatalf("%d issuances, want 2", env.iss.n.Load())
	}
}

func TestAuditFailureRefusesWardenSignature(t *testing.T) {
	env := startServer(t, nil)
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	bind(a, env.host, sid, false)
	keys, _ := a.List()
	cert := parseCert(t, wardenKeys(keys)[0])
	env.rec.fail.Store(true)
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, nil)); err == nil {
		t.Fatal("signed although the audit record could not be written")
	}
	env.rec.fail.Store(false)
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, nil)); err != nil {
		t.Fatalf("after the audit log recovered: %v", err)
	}
}

func TestUpstreamDownStillServesWardenKeys(t *testing.T) {
	upSock, stopUp := startSSHAgent(t)
	up := agentClient(t, upSock)
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	if err := up.Add(agent.AddedKey{PrivateKey: userKey, Comment: "user-key"}); err != nil {
		t.Fatal(err)
	}
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	bind(a, env.host, sid, false)
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !strings.HasPrefix(keys[0].Comment, "warden:") || keys[1].Comment != "user-key" {
		t.Fatalf("list = %v, want [warden cert, user-key]", keys)
	}
	stopUp()
	_, b := dial(t, env.socket)
	sid2 := randomSID(t)
	bind(b, env.host, sid2, false)
	keys, err = b.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0].Comment, "warden:") {
		t.Fatalf("list with upstream down = %v, want only the warden cert", keys)
	}
	cert := parseCert(t, keys[0])
	if _, err := b.Sign(cert, userauthData(sid2, "deploy", cert, nil)); err != nil {
		t.Fatalf("sign with upstream down: %v", err)
	}
}

func agentClient(t testing.TB, socket string) agent.ExtendedAgent {
	_, a := dial(t, socket)
	return a
}

// TestAgentInterface runs one body against OpenSSH's ssh-agent and against
// warden in front of another ssh-agent: warden must behave like the agent
// it replaces for the user's own keys (x/crypto's testAgentInterface).
func TestAgentInterface(t *testing.T) {
	for _, target := range []string{"ssh-agent", "warden"} {
		t.Run(target, func(t *testing.T) {
			upSock, _ := startSSHAgent(t)
			sock := upSock
			if target == "warden" {
				sock = startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock }).socket
			}
			a := agentClient(t, sock)
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			signer, _ := ssh.NewSignerFromKey(priv)
			if err := a.Add(agent.AddedKey{PrivateKey: priv, Comment: "k1", LifetimeSecs: 600}); err != nil {
				t.Fatal(err)
			}
			keys, err := a.List()
			if err != nil || len(keys) != 1 || keys[0].Comment != "k1" {
				t.Fatalf("list = %v, %v", keys, err)
			}
			data := []byte("some data to sign")
			sig, err := a.Sign(signer.PublicKey(), data)
			if err != nil {
				t.Fatal(err)
			}
			if err := signer.PublicKey().Verify(data, sig); err != nil {
				t.Fatal(err)
			}
			if err := a.Lock([]byte("pw")); err != nil {
				t.Fatal(err)
			}
			if keys, _ := a.List(); len(keys) != 0 {
				t.Fatalf("locked agent lists %d keys", len(keys))
			}
			if _, err := a.Sign(signer.PublicKey(), data); err == nil {
				t.Fatal("locked agent signed")
			}
			if err := a.Unlock([]byte("wrong")); err == nil {
				t.Fatal("unlocked with a wrong passphrase")
			}
			if err := a.Unlock([]byte("pw")); err != nil {
				t.Fatal(err)
			}
			if err := a.Remove(signer.PublicKey()); err != nil {
				t.Fatal(err)
			}
			if keys, _ := a.List(); len(keys) != 0 {
				t.Fatalf("after remove: %d keys", len(keys))
			}
			a.Add(agent.AddedKey{PrivateKey: priv, Comment: "k1"})
			if err := a.RemoveAll(); err != nil {
				t.Fatal(err)
			}
			if keys, _ := a.List(); len(keys) != 0 {
				t.Fatalf("after remove all: %d keys", len(keys))
			}
		})
	}
}

func TestLockHidesAndRefusesWardenKeys(t *testing.T) {
	env := startServer(t, nil) // no upstream: the lock is warden's own
	_, a := dial(t, env.socket)
	sid := randomSID(t)
	bind(a, env.host, sid, false)
	keys, _ := a.List()
	cert := parseCert(t, wardenKeys(keys)[0])
	// ssh-add -x: its own connection, without a bind (a bound one may not
	// lock: TestTrustLockOnlyUnbound).
	_, local := dial(t, env.socket)
	if err := local.Lock([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	if keys, _ := a.List(); len(keys) != 0 {
		t.Fatalf("locked: listed %d keys", len(keys))
	}
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, nil)); err == nil {
		t.Fatal("locked agent signed with a warden key")
	}
	if err := a.Unlock([]byte("secret")); err == nil {
		t.Fatal("a bound connection unlocked the agent")
	}
	if err := local.Unlock([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sign(cert, userauthData(sid, "deploy", cert, nil)); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

func TestForwardedConnectionMayNotAddKeys(t *testing.T) {
	upSock, _ := startSSHAgent(t)
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, randomSID(t), true); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := a.Add(agent.AddedKey{PrivateKey: priv}); err == nil {
		t.Fatal("forwarded connection added a key")
	}
}

func TestUpstreamThatIsOurOwnSocketIsRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	_, err := New(Config{Issuer: &countingIssuer{}, Catalog: func() *catalog.Catalog { return nil }, Upstream: sock, SocketPath: sock})
	if err == nil || !strings.Contains(err.Error(), "own socket") {
		t.Fatalf("err = %v, want refusal of our own socket as upstream", err)
	}
}

func TestOtherUIDIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as nobody")
	}
	sshAdd, err := exec.LookPath("ssh-add")
	if err != nil {
		t.Skip("ssh-add not installed")
	}
	env := startServer(t, nil)
	// A second listener the nobody user can reach, to test the peer check
	// itself rather than the directory permissions.
	dir, err := os.MkdirTemp("", "warden-uid")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "open.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o777)
	go env.srv.Serve(ln)
	defer ln.Close()

	cmd := exec.Command(sshAdd, "-l")
	cmd.Env = []string{"SSH_AUTH_SOCK=" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("ssh-add as nobody succeeded: %s", out)
	}
	if env.srv.Stats().Refused.Load() != 1 {
		t.Fatalf("refused = %d, want 1 (output %q)", env.srv.Stats().Refused.Load(), out)
	}
	// Root itself is allowed on the same listener.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := agent.NewClient(c).List(); err != nil {
		t.Fatalf("root refused: %v", err)
	}
}

func TestShutdownFinishesRequestInFlight(t *testing.T) {
	env := startServer(t, nil)
	env.iss.delay = 300 * time.Millisecond
	_, a := dial(t, env.socket)
	bind(a, env.host, randomSID(t), false)
	got := make(chan int, 1)
	go func() {
		keys, _ := a.List()
		got <- len(wardenKeys(keys))
	}()
	time.Sleep(50 * time.Millisecond) // let the list reach the issuer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	env.srv.Shutdown(ctx)
	if n := <-got; n != 1 {
		t.Fatalf("request in flight got %d certificates, want 1", n)
	}
}
