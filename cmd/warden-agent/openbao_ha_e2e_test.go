package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// TestE2EStatusOpenBaoNodes: an agent given a three-node cluster in
// BAO_ADDRS signs through another node when the first is sealed, and
// status and --prometheus show each node's own state; with every node
// sealed status is degraded, and healthy again once one is unsealed.
func TestE2EStatusOpenBaoNodes(t *testing.T) {
	user := loginUser(t)
	role := openbaotest.EngRole()
	role.AllowedUsers = []string{user}
	c := openbaotest.NewCluster(t, 3, openbaotest.Options{Roles: map[string]openbaotest.Role{"eng": role}})
	tok := c.CreateToken([]string{"default", "warden-eng"}, 0, false)
	e := newTestEnv(t)
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	cfg := "signer:\n  kind: openbao\n" +
		"routes:\n  - name: lab\n    hosts: [127.0.0.1]\n    mount: ssh\n    role: eng\n    principals: [" + user + "]\n" +
		"  - name: lab2\n    hosts: [localhost]\n    mount: ssh\n    role: eng\n    principals: [" + user + "]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, e, []string{"BAO_TOKEN=" + tok, "BAO_ADDRS=" + strings.Join(c.URLs(), ",")}, "--config", cfgPath, "--upstream", "none")

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
		"node    " + c.Nodes[0].URL + "  sealed  last failure",
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
