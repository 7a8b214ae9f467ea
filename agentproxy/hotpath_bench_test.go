package agentproxy

// Benchmarks of the hot paths of issue 17 beside the agent a user would
// otherwise talk to, in the same run: List and proxied signing through
// warden against OpenSSH's ssh-agent directly, and warden's cached-
// certificate signature against x/crypto's bare keyring. Compare the
// ns/op of a pair; absolute figures depend on the machine.
//
//	go test -run '^$' -bench 'List|Sign' -benchmem ./agentproxy/

import (
	"crypto/ed25519"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/netkingdom/ops-warden/catalog"
)

// sshAgentWithKeys starts ssh-agent holding n ed25519 keys; the first is
// returned as a signer.
func sshAgentWithKeys(b *testing.B, n int) (string, ssh.Signer) {
	b.Helper()
	sock, _ := startSSHAgent(b)
	uc, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer uc.Close()
	a := agent.NewClient(uc) // one client: it reads the replies on its own goroutine
	var first ssh.Signer
	for i := range n {
		_, priv, _ := ed25519Key()
		if err := a.Add(agent.AddedKey{PrivateKey: priv, Comment: fmt.Sprintf("key %d", i)}); err != nil {
			b.Fatal(err)
		}
		if first == nil {
			first, _ = ssh.NewSignerFromKey(priv)
		}
	}
	return sock, first
}

// listLoop lists on one connection without session-bind, as ssh-add -l.
func listLoop(b *testing.B, socket string, want int) {
	c := dialRaw(b, socket)
	r := &rawSigner{c: c, buf: make([]byte, 64<<10)}
	rep, err := r.call([]byte{msgRequestIdentities})
	if err != nil || rep[0] != msgIdentitiesAnswer {
		b.Fatalf("list: %v %v", err, rep)
	}
	ids, err := parseIdentitiesAnswer(rep)
	if err != nil || len(ids) != want {
		b.Fatalf("listed %d keys (%v), want %d", len(ids), err, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rep, err := r.call([]byte{msgRequestIdentities}); err != nil || rep[0] != msgIdentitiesAnswer {
			b.Fatalf("list: %v %v", err, rep)
		}
	}
}

// BenchmarkList: ssh-add -l against ssh-agent holding 1, 10 and 100
// keys, directly and through warden.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			sock, _ := sshAgentWithKeys(b, n)
			b.Run("ssh-agent", func(b *testing.B) { listLoop(b, sock, n) })
			b.Run("warden", func(b *testing.B) {
				// A List writes no record: the test's in-memory recorder serves.
				env := startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = sock })
				listLoop(b, env.socket, n)
			})
		})
	}
}

// BenchmarkSignProxied: one client signing hostbound userauth data with a
// key in ssh-agent, directly and through warden (which records
// upstream.used best effort).
func BenchmarkSignProxied(b *testing.B) {
	sock, userKey := sshAgentWithKeys(b, 1)
	host := newHostKey(b)
	run := func(b *testing.B, socket string) {
		sid := randomSID(b)
		c := rawLogin(b, socket, host, sid)
		s := newRawSigner(c, userKey.PublicKey(), userauthData(sid, "deploy", userKey.PublicKey(), host.PublicKey()))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.sign(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("ssh-agent", func(b *testing.B) { run(b, sock) })
	b.Run("warden", func(b *testing.B) {
		rec := openBenchAudit(b)
		env := startServer(b, func(cfg *Config, _ *catalog.Catalog) { cfg.Recorder = rec; cfg.Upstream = sock })
		host = env.host
		run(b, env.socket)
	})
}

// BenchmarkSignKeyringParallel is BenchmarkSignKeyring with the clients
// of BenchmarkSignCachedCertParallel, one connection each.
func BenchmarkSignKeyringParallel(b *testing.B) {
	sock, key := keyringServer(b)
	host := newHostKey(b)
	signParallel(b, func() *rawSigner {
		data := userauthData(randomSID(b), "deploy", key.PublicKey(), host.PublicKey())
		return newRawSigner(dialRaw(b, sock), key.PublicKey(), data)
	})
}

// keyringServer serves x/crypto's keyring holding one ed25519 key on a
// Unix socket, as agent.ServeAgent does for each connection.
func keyringServer(b *testing.B) (string, ssh.Signer) {
	_, priv, _ := ed25519.GenerateKey(nil)
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "keyring.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	key, _ := ssh.NewSignerFromKey(priv)
	return sock, key
}

// BenchmarkSignKeyring is the floor warden's cached-certificate signature
// (BenchmarkSignCachedCert) is compared with: x/crypto's keyring served by
// agent.ServeAgent on a Unix socket, one client, the same ed25519 work.
func BenchmarkSignKeyring(b *testing.B) {
	sock, key := keyringServer(b)
	host := newHostKey(b)
	sid := randomSID(b)
	s := newRawSigner(dialRaw(b, sock), key.PublicKey(), userauthData(sid, "deploy", key.PublicKey(), host.PublicKey()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.sign(); err != nil {
			b.Fatal(err)
		}
	}
}
