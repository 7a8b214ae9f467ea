package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestE2EActivityFollowAlignedAndRoute: `activity --follow` rows line up
// with its header however long the caller chain or the principal@host,
// and --route keeps only that route's records, with and without --follow.
func TestE2EActivityFollowAlignedAndRoute(t *testing.T) {
	e := newTestEnv(t)
	user := loginUser(t)
	long := "a-very-long-host-name-that-does-not-fit.example.com"
	e.writeConfig("routes:\n  - name: lab\n    hosts: [\"*.example.com\"]\n    principals: [" + user + "]\n" +
		"  - name: other-route-with-a-long-name\n    hosts: [\"*.example.org\"]\n    principals: [" + user + "]\n")
	startAgent(t, e, nil, "--upstream", "none")
	for _, h := range []string{long, "web.example.org"} {
		if r := e.warden("sign", "--principal", user, "--host", h); r.code != 0 {
			t.Fatalf("sign for %s: %s", h, r)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wardenExe, "activity", "--follow")
	cmd.Env = e.environ()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := func() []string { return nonEmptyLines(out.String()) }
	if !waitFor(10*time.Second, func() bool { return len(lines()) >= 4 }) {
		t.Fatalf("activity --follow printed:\n%s", out)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	ls := lines()
	header := []rune(ls[0])
	var cols []int
	for _, name := range []string{"EVENT", "PRINCIPAL@HOST", "SERIAL", "CALLER", "RESULT"} {
		cols = append(cols, strings.Index(string(header), name)) // ASCII header: bytes are runes
	}
	for _, l := range ls[1:] {
		r := []rune(l)
		for i, c := range cols {
			if len(r) < c || r[c-1] != ' ' || r[c-2] != ' ' {
				t.Errorf("column %d (at %d) not aligned in --follow row:\n%s\n%s", i+1, c, ls[0], l)
				break
			}
		}
	}

	r := e.warden("activity", "--route", "lab")
	rows := nonEmptyLines(r.stdout)
	if r.code != 0 || len(rows) != 2 || !strings.Contains(rows[1], "cert.issued") || !strings.Contains(rows[1], user+"@a-very-long") {
		t.Errorf("activity --route lab: %s", r)
	}
	if r := e.warden("activity", "--route", "nosuch"); len(nonEmptyLines(r.stdout)) != 1 {
		t.Errorf("activity --route nosuch: %s", r)
	}
}
