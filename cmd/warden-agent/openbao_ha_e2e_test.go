package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// TestE2EStatusOpenBaoNodes: an agent given a three-node cluster in
// BAO_ADDRS signs through another node when the first is sealed, and
// status and --prometheus show each node's own state; with every node
// sealed status is degraded, and healthy again once one is unsealed.
func TestE2EStatusOpenBaoNodes(t *testing.T) {
	user := loginUser(t)
	l := newHALab(t, user, "", "lab:127.0.0.1", "lab2:localhost")
	c, e, cfgPath, tok := l.c, l.e, l.cfgPath, l.tok

	c.Seal(0) // node 1 becomes active
	if r := e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("sign with the first node sealed: %s", r)
	}
	if c.Signed() != 1 {
		t.Errorf("%d certificates minted for one sign", c.Signed())
	}
	r := e.warden("status", "--config", cfgPath)
	if r.code != 0 {
		t.Fatalf("status with one node sealed and two usable: %s", r)
	}
	for _, want := range []string{
		"issuer    openbao " + c.Nodes[1].URL + "  active",
		// "last failure" follows only when a request reached the node
		// before a health sample found it sealed: either is the truth.
		"node    " + c.Nodes[0].URL + "  sealed",
		"node    " + c.Nodes[1].URL + "  active  (in use)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	prom := e.warden("status", "--prometheus", "--config", cfgPath)
	for _, want := range []string{
		`warden_openbao_node_up{address="` + c.Nodes[0].URL + `"} 0`,
		`warden_openbao_node_up{address="` + c.Nodes[1].URL + `"} 1`,
		"warden_issuer_healthy{kind=\"openbao\"} 1",
	} {
		if !strings.Contains(prom.stdout, want) {
			t.Errorf("--prometheus lacks %q:\n%s", want, prom.stdout)
		}
	}

	c.Seal(1)
	c.Seal(2)
	// Another route: the first one's certificate is cached.
	r = e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "localhost")
	if r.code == 0 || !strings.Contains(r.stderr, "is sealed") {
		t.Fatalf("sign with every node sealed: %s", r)
	}
	r = e.warden("status", "--config", cfgPath)
	t.Logf("status with every node sealed:\n%s", r.stdout)
	if r.code != 1 || !strings.Contains(r.stdout, "sealed") || !strings.Contains(r.stdout, "DEGRADED") {
		t.Fatalf("status with every node sealed: %s", r)
	}
	if strings.Contains(r.stdout+r.stderr, tok) {
		t.Fatal("the token appears in status or errors")
	}

	// After: one node unsealed is enough, and status says so.
	// The agent backs off after a failed issuance (0.5 s at first).
	c.Unseal(1)
	if !waitFor(10*time.Second, func() bool {
		r = e.warden("sign", "--config", cfgPath, "--principal", user, "--host", "localhost")
		return r.code == 0
	}) {
		t.Fatalf("sign after unsealing one node: %s", r)
	}
	r = e.warden("status", "--config", cfgPath)
	if r.code != 0 || !strings.Contains(r.stdout, "node    "+c.Nodes[1].URL+"  active  (in use)") {
		t.Fatalf("status after unsealing one node: %s", r)
	}
	if c.Signed() != 2 {
		t.Errorf("%d certificates minted for two successful signs", c.Signed())
	}
}

// TestE2EOpenBaoHALogins: real ssh logins through the agent, each needing
// a new certificate, against a three-node cluster listed in BAO_ADDRS
// (issue 15): with the first listed node sealed; across an election where
// the leader was killed and the standbys, with standby reads off, redirect
// to the dead leader; and with the node in use hung, where the first
// login may fail (its request may have been processed, so it is not sent
// again) and the next ones, after the back-off, go to a usable node; and
// across a second with no leader (the login waits, bounded by its list
// deadline). Each issuance mints exactly one certificate in the cluster.
func TestE2EOpenBaoHALogins(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen", "ssh-add")
	sshdPath(t)
	user := loginUser(t)
	l := newHALab(t, user, "  openbao:\n    timeout: 2s\n", "lab:127.0.0.1")
	c, e, a, tok := l.c, l.e, l.a, l.tok
	s := startSSHD(t, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c.CAPublicKey()))))
	sshCfg := e.sshConfig(s, a.socket)
	// ssh-add -D drops warden's cached certificates: the next login needs
	// a new issuance.
	fresh := func() {
		if r := e.sshAdd(a.socket, nil, "-D"); r.code != 0 {
			t.Fatalf("ssh-add -D: %s", r)
		}
	}
	issued := func() int { return len(events(a.audit(t), "cert.issued")) }

	t.Run("first listed node sealed", func(t *testing.T) {
		c.Seal(0)
		e.mustLogin(sshCfg, nil, user, "target")
		if n := c.Signed(); n != 1 || issued() != 1 {
			t.Errorf("minted %d, cert.issued %d; want 1 and 1", n, issued())
		}
	})

	t.Run("leader killed, standbys redirect to it", func(t *testing.T) {
		c.SetStandbyReads(false)
		before := c.Signed()
		fresh()
		c.Kill(c.Active(), 1500*time.Millisecond)
		start := time.Now()
		e.mustLogin(sshCfg, nil, user, "target")
		t.Logf("login across the election: %v", time.Since(start).Round(time.Millisecond))
		if n := c.Signed() - before; n != 1 {
			t.Errorf("minted %d certificates for one issuance across the election, want 1", n)
		}
	})

	t.Run("node in use hung", func(t *testing.T) {
		// Back to three nodes, standby reads on (the default): a hung
		// leader still leaves two nodes that can sign.
		c.Unseal(0)
		c.Revive(t, 1)
		c.SetStandbyReads(true)
		fresh()
		hung := c.Active()
		c.Hang(hung)
		defer c.Unhang(hung)
		before := c.Signed()
		// The first issuance sent to the hung node may have been
		// processed: it is not sent again, and that login may fail with
		// an error naming the node.
		r := e.sshLogin(sshCfg, nil, user, "target", "maybe")
		if r.code != 0 {
			if !strings.Contains(r.stderr, c.Nodes[hung].URL) {
				t.Errorf("the failed login's error does not name the hung node %s: %s", c.Nodes[hung].URL, r)
			}
			// The next logins go to the usable nodes once the agent's
			// back-off after the failure (0.5 s, doubling) has passed.
			deadline := time.Now().Add(30 * time.Second)
			for {
				time.Sleep(time.Second)
				fresh()
				if r = e.sshLogin(sshCfg, nil, user, "target", "after"); r.code == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no login succeeded in 30 s with two usable nodes left: %s", r)
				}
			}
		}
		if n := c.Signed() - before; n != 1 {
			t.Errorf("minted %d certificates, want 1 (the hung node mints nothing)", n)
		}
		st := e.warden("status", "--config", l.cfgPath)
		if !strings.Contains(st.stdout, c.Nodes[hung].URL) {
			t.Errorf("status does not show the hung node %s:\n%s", c.Nodes[hung].URL, st.stdout)
		}
	})
	t.Run("no leader for a second", func(t *testing.T) {
		before := c.Signed()
		fresh()
		c.NoLeader(time.Second)
		start := time.Now()
		e.mustLogin(sshCfg, nil, user, "target")
		t.Logf("login across a leaderless second: %v", time.Since(start).Round(time.Millisecond))
		if n := c.Signed() - before; n != 1 {
			t.Errorf("minted %d certificates for one issuance, want 1", n)
		}
	})
	if strings.Contains(a.stderr.String(), tok) {
		t.Error("the token appears in the agent's log")
	}
}

// haLab is an agent on a three-node test cluster listed in BAO_ADDRS, with
// one route per "name:host" for user on role eng.
type haLab struct {
	c       *openbaotest.Cluster
	e       *testEnv
	a       *agentProc
	cfgPath string
	tok     string
}

func newHALab(t *testing.T, user, signerExtra string, routes ...string) *haLab {
	t.Helper()
	role := openbaotest.EngRole()
	role.AllowedUsers = []string{user}
	l := &haLab{c: openbaotest.NewCluster(t, 3, openbaotest.Options{Roles: map[string]openbaotest.Role{"eng": role}}), e: newTestEnv(t)}
	l.tok = l.c.CreateToken([]string{"default", "warden-eng"}, 0, false)
	cfg := "signer:\n  kind: openbao\n" + signerExtra + "routes:\n"
	for _, r := range routes {
		name, host, _ := strings.Cut(r, ":")
		cfg += "  - name: " + name + "\n    hosts: [" + host + "]\n    mount: ssh\n    role: eng\n    principals: [" + user + "]\n"
	}
	l.cfgPath = filepath.Join(l.e.dir, "agent.yaml")
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.a = startAgent(t, l.e, []string{"BAO_TOKEN=" + l.tok, "BAO_ADDRS=" + strings.Join(l.c.URLs(), ",")}, "--config", l.cfgPath, "--upstream", "none")
	return l
}
