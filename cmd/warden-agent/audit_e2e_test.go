package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
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
}

// jsonNumber renders a number decoded from JSON as the log wrote it.
func jsonNumber(v any) string {
	f, _ := v.(float64)
	return strconv.FormatFloat(f, 'f', -1, 64)
}
