package agentproxy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/catalog"
)

// TestHintRepeatAnsweredFromMemory: an identical hint shortly after an
// accepted one (the ssh processes of an Ansible task, sessions riding a
// ControlMaster) is answered without the policy and without issuing, and
// writes its record only if its ssh connects; the policy still decides
// for that connection, so a denial made meanwhile holds; the next full
// hint shows the denial and counts the hints answered from memory.
func TestHintRepeatAnsweredFromMemory(t *testing.T) {
	var asked atomic.Int32
	var deny atomic.Bool
	var mu sync.Mutex
	now := time.Now()
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) {
		cfg.Authorize = func(context.Context, AuthRequest) AuthDecision {
			asked.Add(1)
			if deny.Load() {
				return AuthDecision{Rule: "test-deny", Reason: "denied by the test"}
			}
			return AuthDecision{Allow: true, Rule: "test-allow"}
		}
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	hintRecords := func(want int) {
		t.Helper()
		if !waitFor(5*time.Second, func() bool { return env.rec.count(evHint) == want }) {
			t.Fatalf("%d hint records, want %d", env.rec.count(evHint), want)
		}
	}

	first, err := hintFromChild(t, env.socket, "bob", "db1.example.com")
	if err != nil || !first.OK || first.Serial == "" {
		t.Fatalf("first hint: %+v %v", first, err)
	}
	if asked.Load() != 1 || env.iss.n.Load() != 1 {
		t.Fatalf("first hint: policy asked %d times, %d issuances; want 1 and 1", asked.Load(), env.iss.n.Load())
	}
	hintRecords(1)
	firstID := env.rec.last(evHint)["conn"]

	// Two more ssh processes that never connect (they ride a master).
	for range 2 {
		r, err := hintFromChild(t, env.socket, "bob", "db1.example.com")
		if err != nil || !r.OK || r.Serial != first.Serial || r.Route != "hinted" || r.Principal != "bob" {
			t.Fatalf("repeated hint: %+v %v, want ok with serial %s", r, err, first.Serial)
		}
	}
	if asked.Load() != 1 || env.iss.n.Load() != 1 {
		t.Fatalf("repeated hints asked the policy (%d) or issued (%d)", asked.Load(), env.iss.n.Load())
	}
	time.Sleep(50 * time.Millisecond)
	hintRecords(1)

	// The policy now denies. A repeated hint is still answered from
	// memory, but the login it announces asks the policy and gets nothing.
	deny.Store(true)
	sshPid := os.Getpid()
	var r HintReply
	if err := CallExtension(env.socket, ExtHint, HintRequest{SSHPid: sshPid, User: "bob", Host: "db1.example.com", Port: 22}, &r, 5*time.Second); err != nil || !r.OK {
		t.Fatalf("repeated hint: %+v %v", r, err)
	}
	_, a := dial(t, env.socket)
	if err := bind(a, env.host, randomSID(t), false); err != nil {
		t.Fatal(err)
	}
	keys, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(wardenKeys(keys)); n != 0 {
		t.Fatalf("a login the policy now denies listed %d certificates", n)
	}
	if asked.Load() != 2 {
		t.Fatalf("the login's connection asked the policy %d times in all, want 2", asked.Load())
	}
	if env.rec.count(evIssueFailed) != 1 || !strings.Contains(env.rec.last(evIssueFailed)["error"].(string), "test-deny") {
		t.Fatalf("want the denial recorded as cert.issue_failed, got %v", env.rec.last(evIssueFailed))
	}
	// The connecting ssh's hint record, written when it connected.
	hintRecords(2)
	if rec := env.rec.last(evHint); rec["answered_by"] != firstID || fmt.Sprint(rec["ssh_pid"]) != strconv.Itoa(sshPid) {
		t.Fatalf("hint record of the connecting ssh: %v, want answered_by %v and ssh_pid %d", rec, firstID, sshPid)
	}

	// After the window the hint is evaluated in full: the denial is on
	// the terminal, and its record counts the three answered from memory.
	mu.Lock()
	now = now.Add(hintRepeatWindow + time.Second)
	mu.Unlock()
	r, err = hintFromChild(t, env.socket, "bob", "db1.example.com")
	if err != nil || r.OK || !strings.Contains(r.Error, "test-deny") {
		t.Fatalf("hint after the window with the policy denying: %+v %v, want the denial", r, err)
	}
	hintRecords(3)
	if rec := env.rec.last(evHint); fmt.Sprint(rec["answered_from_memory"]) != "3" {
		t.Fatalf("full hint record %v, want answered_from_memory 3", rec)
	}
	// A denied target is never answered from memory.
	r, err = hintFromChild(t, env.socket, "bob", "db1.example.com")
	if err != nil || r.OK || !strings.Contains(r.Error, "test-deny") {
		t.Fatalf("hint after a denial: %+v %v, want the denial again", r, err)
	}
	hintRecords(4)
}

// TestHintRefusalNeverFromMemory: a target the route refuses is refused
// on every hint, each with its record; a locked agent answers nothing
// from memory.
func TestHintRefusalNeverFromMemory(t *testing.T) {
	env := startServer(t, nil)
	for i := range 2 {
		r, err := hintFromChild(t, env.socket, "mallory", "db1.example.com")
		if err != nil || r.OK || !strings.Contains(r.Error, "does not allow user mallory") {
			t.Fatalf("hint %d for a refused user: %+v %v", i, r, err)
		}
	}
	if !waitFor(5*time.Second, func() bool { return env.rec.count(evHint) == 2 && env.rec.count(evTargetRefused) == 2 }) {
		t.Fatalf("%d hint and %d target.refused records, want 2 and 2", env.rec.count(evHint), env.rec.count(evTargetRefused))
	}

	if r, err := hintFromChild(t, env.socket, "bob", "db1.example.com"); err != nil || !r.OK {
		t.Fatalf("hint: %+v %v", r, err)
	}
	env.srv.lockMu.Lock()
	env.srv.locked = true
	env.srv.lockMu.Unlock()
	// A locked agent takes no extension at all (as ssh-agent).
	if r, err := hintFromChild(t, env.socket, "bob", "db1.example.com"); err == nil || r.OK {
		t.Fatalf("hint to a locked agent: %+v, want refused", r)
	}
}
