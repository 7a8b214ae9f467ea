package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/agent"
)

// TestE2EAuditRecordsOneLogin: a real login leaves hint, cert.issued,
// session.bind and cert.used records, in that order (the hint issues
// ahead), sharing one connection id and the serial; `activity show`
// prints them; `activity verify` passes on the untouched log and names
// the broken seq once a record is edited.
func TestE2EAuditRecordsOneLogin(t *testing.T) {
	needPrograms(t, "ssh", "ssh-keygen")
	sshdPath(t)
	user := loginUser(t)
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	s := startSSHD(t, a.ca)
	e.mustLogin(e.sshConfig(s, a.socket), nil, user, "target")

	recs := a.audit(t)
	issued := events(recs, "cert.issued")
	if len(issued) != 1 {
		t.Fatalf("%d cert.issued records, want 1", len(issued))
	}
	conn, serial := issued[0].str("conn"), issued[0].str("serial")
	var order []string
	for _, r := range recs {
		if r.str("conn") == conn {
			order = append(order, r.str("event"))
		}
	}
	if got := strings.Join(order, ","); got != "hint,cert.issued,session.bind,cert.used" {
		t.Fatalf("records of connection %s: %s, want hint,cert.issued,session.bind,cert.used", conn, got)
	}
	if used := events(recs, "cert.used", "serial", serial, "conn", conn); len(used) != 1 {
		t.Fatalf("cert.used with serial %s on %s: %d", serial, conn, len(used))
	}

	show := e.mustWarden("activity", "show", serial)
	for _, ev := range []string{"hint", "cert.issued", "session.bind", "cert.used"} {
		if !strings.Contains(show, ev) {
			t.Errorf("activity show %s lacks %s:\n%s", serial, ev, show)
		}
	}
	if out := e.mustWarden("activity", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify of an untouched log: %q", out)
	}
	var vj struct {
		OK      bool   `json:"ok"`
		Records int    `json:"records"`
		Head    string `json:"head"`
		Reason  string `json:"reason"`
		Broken  uint64 `json:"broken_seq"`
	}
	if err := json.Unmarshal([]byte(e.mustWarden("activity", "verify", "--json")), &vj); err != nil || !vj.OK || vj.Records == 0 || vj.Head == "" {
		t.Fatalf("verify --json of an untouched log: %+v %v", vj, err)
	}

	// Edit one byte of the cert.issued record: verify names its seq, exit 1.
	data, err := os.ReadFile(e.auditPath())
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), serial)
	data[i] ^= 1
	if err := os.WriteFile(e.auditPath(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.warden("activity", "verify")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "seq "+jsonNumber(issued[0]["seq"])) {
		t.Fatalf("verify after an edit: %s", r)
	}
	r = e.warden("activity", "verify", "--json")
	vj = struct {
		OK      bool   `json:"ok"`
		Records int    `json:"records"`
		Head    string `json:"head"`
		Reason  string `json:"reason"`
		Broken  uint64 `json:"broken_seq"`
	}{}
	if err := json.Unmarshal([]byte(r.stdout), &vj); r.code != 1 || err != nil || vj.OK || jsonNumber(float64(vj.Broken)) != jsonNumber(issued[0]["seq"]) || vj.Reason == "" {
		t.Fatalf("verify --json after an edit: %+v (%v): %s", vj, err, r)
	}
}

// jsonNumber renders a number decoded from JSON as the log wrote it.
func jsonNumber(v any) string {
	f, _ := v.(float64)
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// lockCycles locks and unlocks the agent n times over its socket, as
// `ssh-add -x` and `ssh-add -X` do: two audit records per cycle.
func lockCycles(t *testing.T, socket string, n int) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ag := agent.NewClient(c)
	for i := 0; i < n; i++ {
		if err := ag.Lock([]byte("pass")); err != nil {
			t.Fatalf("lock %d: %v", i, err)
		}
		if err := ag.Unlock([]byte("pass")); err != nil {
			t.Fatalf("unlock %d: %v", i, err)
		}
	}
}

// TestE2ESecondAgentRefused (issue 12 item 8): a second `warden-agent run`
// on the state directory of a running one exits non-zero with a message
// naming the first agent's pid and how to give it its own directory; the
// first keeps writing, `activity` reads and verifies while it runs, and
// the chain verifies after both.
func TestE2ESecondAgentRefused(t *testing.T) {
	e := newTestEnv(t)
	a := startAgent(t, e, nil, "--upstream", "none")
	lockCycles(t, a.socket, 1)

	other := filepath.Join(e.dir, "b.sock")
	b, err := launchAgent(t, e, nil, "--upstream", "none", "--socket", other)
	if err == nil {
		b.stop(t)
		t.Fatal("a second agent started on the same state directory")
	}
	if b != nil || dialable("unix", other) {
		t.Fatalf("the second agent listens on %s", other)
	}
	pid := a.cmd.Process.Pid
	for _, want := range []string{
		"exited before listening: exit status 1",
		fmt.Sprintf("another warden-agent (pid %d) is already running on the state directory %s", pid, filepath.Join(e.state, "warden")),
		filepath.Join(e.state, "warden", "agent.lock"),
		"XDG_STATE_HOME=DIR",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second agent: want %q in\n%v", want, err)
		}
	}

	// The first keeps writing, and readers work beside it.
	lockCycles(t, a.socket, 2)
	if out := e.mustWarden("activity", "verify"); !strings.HasPrefix(out, "ok: 7 records") {
		t.Errorf("verify while the agent runs: %q", out)
	}
	a.stop(t)
	recs := a.audit(t)
	if n := len(events(recs, "agent.start")); n != 1 {
		t.Errorf("%d agent.start records, want only the first agent's", n)
	}
	if n := len(events(recs, "agent.unlocked")); n != 3 {
		t.Errorf("%d agent.unlocked records, want 3", n)
	}
	if out := e.mustWarden("activity", "verify"); !strings.HasPrefix(out, "ok: 8 records") {
		t.Errorf("verify after both: %q", out)
	}
	// Once the first has stopped, an agent starts there again.
	startAgent(t, e, nil, "--upstream", "none").stop(t)
}

// TestE2EAuditRotationKeepsYoungFiles (issue 12: with a small max_size a
// burst of records rotated agent.start away while verify said ok): with
// audit.keep 1 and a 4 KiB max_size, 80 records from one connection
// rotate once and then rotation is refused, since it would delete a file
// younger than audit.min_age (default 7 days). Status is degraded and
// says why; the chain still starts at agent.start, seq 1.
func TestE2EAuditRotationKeepsYoungFiles(t *testing.T) {
	e := newTestEnv(t)
	e.writeConfig("audit:\n  max_size: 4096\n  keep: 1\n")
	a := startAgent(t, e, nil, "--upstream", "none")
	lockCycles(t, a.socket, 40)

	r := e.warden("status")
	if r.code != 1 || !strings.Contains(r.stdout, "problem   audit log rotation refused: rotating would delete audit.log.1") ||
		!strings.Contains(r.stdout, "younger than the minimum age 168h0m0s") {
		t.Errorf("status with rotation refused: want exit 1 and the reason, got %s", r)
	}
	r = e.warden("status", "--json")
	if !strings.Contains(r.stdout, `"rotation_refused": "rotating would delete audit.log.1`) {
		t.Errorf("status --json lacks rotation_refused: %s", r)
	}
	files, _ := filepath.Glob(e.auditPath() + "*")
	if fi, err := os.Stat(e.auditPath() + ".1"); err != nil || fi.Size() == 0 {
		t.Errorf("audit.log.1: %v (files %v)", err, files)
	}
	if fi, _ := os.Stat(e.auditPath()); fi == nil || fi.Size() <= 4096 {
		t.Errorf("audit.log should have grown past max_size instead of deleting audit.log.1 (files %v)", files)
	}
	out := e.mustWarden("activity", "verify")
	if !strings.HasPrefix(out, "ok: 81 records") || strings.Contains(out, "rotated away") {
		t.Errorf("verify: %q, want all 81 records from seq 1", out)
	}
	first := e.mustWarden("activity", "--json", "--event", "agent.start")
	if !strings.Contains(first, `"seq":1,`) {
		t.Errorf("agent.start is not seq 1 any more: %s", first)
	}
}
