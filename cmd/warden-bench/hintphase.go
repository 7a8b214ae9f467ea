package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/netkingdom/ops-warden/audit"
)

// hintHost is the host the hint phase's route matches by name; nothing
// connects to it.
const hintHost = "hint-target.bench.invalid"

// hintPhase times `warden-agent hint` as ssh's Match exec runs it
// (`/bin/sh -c LINE`, no --ssh-pid: the hint finds the ssh from its
// parent, here the bench, an ancestor, so the agent accepts it), against
// `/bin/sh -c /bin/true`, interleaved, one at a time. The first hint
// issues the route's certificate; the measured ones find it cached.
func (b *bench) hintPhase() error {
	w, err := b.warden("hint", "none", true, nil, []route{{Name: "hint", Hosts: []string{hintHost}, Principals: []string{principal}}})
	if err != nil {
		return err
	}
	defer b.stopProc(w)
	audit := b.auditPath("hint", true)
	// The command the Match block of `warden-agent ssh-config` runs:
	// warden-hint when it is installed beside warden-agent, else
	// `warden-agent hint`.
	out, err := exec.Command(b.o.warden, "--config", b.wardenConfig("hint"), "ssh-config", "--socket", w.socket).Output()
	if err != nil {
		return fmt.Errorf("warden-agent ssh-config: %w", err)
	}
	m := regexp.MustCompile(`Match final exec "([^"]+)"`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("warden-agent ssh-config printed no Match exec line:\n%s", out)
	}
	line := strings.NewReplacer("%r", principal, "%h", hintHost, "%p", "22").Replace(string(m[1]))
	pace := &pacer{}
	pace.wait(1)
	if r := runShell(line); r.err != nil {
		return fmt.Errorf("first hint: %w", r.err)
	}
	ev, err := auditEvents(audit)
	if err != nil {
		return err
	}
	if ev["cert.issued"] == 0 {
		return fmt.Errorf("the first hint exited 0 but issued no certificate (audit events: %v); the measured hints would not be a login's", ev)
	}
	if r := runShell("/bin/true"); r.err != nil {
		return fmt.Errorf("/bin/sh -c /bin/true: %w", r.err)
	}
	hint, tru := &loginStats{}, &loginStats{}
	c0, err := cpuTime(w.pid())
	if err != nil {
		return err
	}
	for i := range b.o.hints {
		for j := range 2 {
			if (i+j)%2 == 0 {
				pace.wait(1)
				hint.add(runShell(line))
			} else {
				tru.add(runShell("/bin/true"))
			}
		}
	}
	c1, err := cpuTime(w.pid())
	if err != nil {
		return err
	}
	hint.agentCPU = c1 - c0
	r := hint.record(b.rep, "hint", "warden-agent hint")
	r.Clients, r.Audit = 1, auditDisk
	r.Note = "/bin/sh -c '" + line + "' (the Match exec line of `warden-agent ssh-config`), certificate cached; client CPU = the shell's rusage incl. the hint; agent CPU per hint"
	b.rep.add(r)
	r = tru.record(b.rep, "hint", "/bin/true")
	r.Clients, r.AgentCPU = 1, 0
	r.Note = "/bin/sh -c /bin/true, interleaved with the hints: the cost of starting any process here"
	b.rep.add(r)
	return nil
}

// runShell runs `/bin/sh -c script` and measures it as ssh's Match exec
// would cost: wall time and the shell's CPU including its children.
func runShell(script string) sshRun {
	cmd := exec.Command("/bin/sh", "-c", script)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	t0 := time.Now()
	err := cmd.Run()
	return sshRun{wall: time.Since(t0), cpu: childCPU(cmd.ProcessState), err: cmdErr(err, out)}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// pacer keeps the hints sent to one agent inside its hint rate limit (50
// a second, bursts of 500; agentproxy/ratelimit.go) with room to spare, so
// no measured hint is refused for the bench's own pace.
type pacer struct {
	start time.Time
	used  int
}

const (
	hintRate   = 50
	hintBudget = 400
)

// wait blocks until n more hints fit, and counts them.
func (p *pacer) wait(n int) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	for {
		avail := hintBudget + int(hintRate*time.Since(p.start).Seconds()) - p.used
		if avail >= n {
			p.used += n
			return
		}
		time.Sleep(time.Duration(n-avail)*time.Second/hintRate + 10*time.Millisecond)
	}
}

// auditEvents counts the records of an audit log by event, read with the
// audit package's own reader (bounded lines; unreadable ones skipped). A
// log not written yet has no records.
func auditEvents(path string) (map[string]int, error) {
	m := map[string]int{}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	err := audit.Scan(path, audit.Filter{}, func(r audit.Record) error {
		m[r.Event]++
		return nil
	})
	return m, err
}

// eventList is m as "event×n, ..." sorted by event name.
func eventList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for e, n := range m {
		out = append(out, fmt.Sprintf("%s×%d", e, n))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
