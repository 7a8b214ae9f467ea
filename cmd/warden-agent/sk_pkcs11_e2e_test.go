package main

// Keys warden does not own, added through warden (issue 13): FIDO keys
// with the software authenticator of OpenSSH's regress suite, and a
// PKCS#11 token in softhsm2. Warden must pass their frames to the ssh-agent
// behind it unchanged; then ssh-add -l lists them and a real ssh logs into
// a real sshd with them through warden. When an add through warden fails,
// the test says so and adds the key to the upstream agent directly, so the
// later steps (list, login through warden) still show their own result.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// skDummy is the software FIDO authenticator openssh-tests ships.
const skDummy = regressSuite + "/misc/sk-dummy/sk-dummy.so"

// keyAgentSetup is warden (no route of its own for the target) in front of
// a real ssh-agent, and a real sshd that accepts the given keys.
type keyAgentSetup struct {
	e    *testEnv
	up   *upstreamAgent
	a    *agentProc
	s    *sshdProc
	cfg  string
	user string
}

func newKeyAgentSetup(t *testing.T, upEnv []string, authorizedKeys ...string) *keyAgentSetup {
	t.Helper()
	k := &keyAgentSetup{user: loginUser(t)}
	k.e = newTestEnv(t)
	k.up = startSSHAgentAt(t, k.e, "up.sock", upEnv...)
	k.e.writeConfig(regressNoRoutes)
	k.a = startAgent(t, k.e, nil, "--upstream", k.up.socket)
	k.s = startSSHD(t, k.a.ca, authorizedKeys...)
	k.cfg, _ = regressSSHConfig(t, k.e, nil, regressHost{alias: "target", s: k.s})
	return k
}

// login logs in with the agent key whose public half is pubFile, through
// socket, and reports whether sshd accepted exactly that key.
func (k *keyAgentSetup) login(t *testing.T, socket, pubFile, keyType string) {
	t.Helper()
	word := fmt.Sprintf("login-%d", time.Now().UnixNano())
	r := k.e.run([]string{"SSH_AUTH_SOCK=" + socket}, "ssh", "-F", k.cfg, "-i", pubFile,
		"-o", "IdentitiesOnly=yes", k.user+"@target", "echo", word)
	if r.code != 0 || strings.TrimSpace(r.stdout) != word {
		t.Errorf("login with the %s key through warden: want %q and exit 0, got %s", keyType, word, r)
		return
	}
	fp := fingerprint(t, regressReadPub(t, pubFile))
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(k.s.log.String(), "Accepted publickey for "+k.user) && strings.Contains(k.s.log.String(), fp)
	}) {
		t.Errorf("sshd did not log an accepted login with %s %s:\n%s", keyType, fp, k.s.log)
	}
}

// TestE2ESecurityKeys: ed25519-sk and ecdsa-sk keys made with ssh-keygen
// and OpenSSH's sk-dummy authenticator are added through warden, listed,
// and log in.
func TestE2ESecurityKeys(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add")
	sshdPath(t)
	if _, err := os.Stat(skDummy); err != nil {
		t.Skipf("the software FIDO authenticator is missing (apt-get install openssh-tests): %v", err)
	}
	dir := shortTempDir(t)
	type skKey struct{ alg, listed, path string }
	keys := []*skKey{{alg: "ed25519-sk", listed: "(ED25519-SK)"}, {alg: "ecdsa-sk", listed: "(ECDSA-SK)"}}
	var pubs []string
	for _, key := range keys {
		key.path = filepath.Join(dir, "id_"+strings.ReplaceAll(key.alg, "-", "_"))
		pubs = append(pubs, regressKeygen(t, key.path, "warden-"+key.alg, "-t", key.alg, "-w", skDummy))
	}
	// ssh-agent signs with an sk key through ssh-sk-helper and the
	// provider the key was added with; its default -P allow-list
	// (/usr/lib*/*) admits the regress suite's sk-dummy.so.
	k := newKeyAgentSetup(t, nil, pubs...)
	env := []string{"SSH_SK_PROVIDER=" + skDummy}

	for _, key := range keys {
		t.Run(key.alg, func(t *testing.T) {
			fp := fingerprint(t, regressReadPub(t, key.path+".pub"))
			if r := k.e.sshAdd(k.a.socket, env, key.path); r.code != 0 {
				t.Errorf("ssh-add of the %s key through warden: %s", key.alg, r)
				if r := k.e.sshAdd(k.up.socket, env, key.path); r.code != 0 {
					t.Fatalf("ssh-add of the %s key straight to ssh-agent fails too (the environment, not warden): %s", key.alg, r)
				}
				t.Logf("added the %s key straight to the upstream ssh-agent to go on", key.alg)
			}
			r := k.e.sshAdd(k.a.socket, nil, "-l")
			if r.code != 0 || !strings.Contains(r.stdout, fp+" warden-"+key.alg+" "+key.listed) {
				t.Errorf("ssh-add -l through warden: want %s warden-%s %s, got %s", fp, key.alg, key.listed, r)
			}
			k.login(t, k.a.socket, key.path+".pub", key.alg)
		})
	}
}

// softhsmModule finds softhsm2's PKCS#11 module.
func softhsmModule() string {
	for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestE2EPKCS11: a softhsm2 token holding an ECDSA key is added through
// warden with ssh-add -s, its key logs in, and ssh-add -e removes it.
func TestE2EPKCS11(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-agent", "ssh-add", "softhsm2-util")
	sshdPath(t)
	module := softhsmModule()
	if module == "" {
		t.Skip("softhsm2's PKCS#11 module is missing (apt-get install softhsm2)")
	}
	const pin = "4711"
	dir := shortTempDir(t)
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hsm := []string{"SOFTHSM2_CONF=" + conf}
	e := newTestEnv(t)
	if r := e.run(hsm, "softhsm2-util", "--init-token", "--free", "--label", "warden", "--pin", pin, "--so-pin", "12345678"); r.code != 0 {
		t.Fatalf("softhsm2-util --init-token: %s", r)
	}
	// The token key: an ECDSA key from ssh-keygen in PKCS#8, imported.
	keyPath := filepath.Join(dir, "token_key")
	pub := regressKeygen(t, keyPath, "token-key", "-t", "ecdsa", "-b", "256", "-m", "PKCS8")
	if r := e.run(hsm, "softhsm2-util", "--import", keyPath, "--token", "warden", "--label", "k1", "--id", "01", "--pin", pin); r.code != 0 {
		t.Fatalf("softhsm2-util --import: %s", r)
	}
	os.Remove(keyPath) // only the token holds the private key now
	fp := fingerprint(t, pub)

	// ssh-agent loads the module through ssh-pkcs11-helper, which gets the
	// agent's environment (SOFTHSM2_CONF); its default -P allow-list
	// (/usr/lib*/*) admits the module's real path.
	k := newKeyAgentSetup(t, hsm, pub)
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho "+pin+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	pinEnv := append([]string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force"}, hsm...)

	if r := k.e.sshAdd(k.a.socket, pinEnv, "-s", module); r.code != 0 {
		t.Errorf("ssh-add -s %s through warden: %s", module, r)
		if r := k.e.sshAdd(k.up.socket, pinEnv, "-s", module); r.code != 0 {
			t.Fatalf("ssh-add -s straight to ssh-agent fails too (the environment, not warden): %s", r)
		}
		t.Log("added the token straight to the upstream ssh-agent to go on")
	}
	if r := k.e.sshAdd(k.a.socket, nil, "-l"); r.code != 0 || !strings.Contains(r.stdout, fp) {
		t.Errorf("ssh-add -l through warden: want the token key %s, got %s", fp, r)
	}
	pubFile := filepath.Join(dir, "token_key.pub")
	k.login(t, k.a.socket, pubFile, "PKCS#11 token")

	if r := k.e.sshAdd(k.a.socket, pinEnv, "-e", module); r.code != 0 {
		t.Errorf("ssh-add -e %s through warden: %s", module, r)
		if r := k.e.sshAdd(k.up.socket, pinEnv, "-e", module); r.code != 0 {
			t.Errorf("ssh-add -e straight to ssh-agent fails too: %s", r)
		}
	}
	if r := k.e.sshAdd(k.a.socket, nil, "-l"); strings.Contains(r.stdout, fp) {
		t.Errorf("after ssh-add -e the token key is still listed through warden: %s", r)
	}
}
