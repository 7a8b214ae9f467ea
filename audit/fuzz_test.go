package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

// seedLog returns the lines of a small real log, for seed corpora.
func seedLog(f *testing.F) []string {
	f.Helper()
	path := filepath.Join(f.TempDir(), "audit.log")
	l, err := Open(Options{Path: path, Now: func() time.Time { return time.Unix(1790000000, 5) }})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range []struct {
		event  string
		fields map[string]any
	}{
		{EventAgentStart, map[string]any{"version": "v0.1.0", "pid": 100}},
		{EventCertIssued, map[string]any{"principals": []string{"alice"}, "serial": "c73f26d2340276aa", "serial_dec": "14357712346421409450",
			"caller": Caller{PID: 4242, UID: 1000, Exe: "/usr/bin/ssh", Chain: "ssh(4242) ← git(4240) ← zsh(100)"}}},
		{EventSignDenied, map[string]any{"reason": "quote\" \\ \x01 \x7f é", "nested": map[string]any{"a": []any{1, nil, true}}}},
	} {
		if _, err := l.Append(ctx, r.event, r.fields); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

// FuzzVerify feeds arbitrary files to Verify and Query: they must not
// panic, and a file with an over-long line must not be held in memory.
func FuzzVerify(f *testing.F) {
	lines := seedLog(f)
	f.Add([]byte(strings.Join(lines, "")))
	f.Add([]byte(lines[0] + lines[2] + lines[1]))
	f.Add([]byte(lines[0] + lines[1][:50]))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"v":1,"seq":1,"time":"x","event":"e","prev":"` + ZeroHash + `","hash":"` + ZeroHash + `"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The stream is what Verify reads from each file; going through
		// the file system would make the fuzzer a hundred times slower.
		var res VerifyResult
		broken, err := verifyStream(bytes.NewReader(data), "audit.log", &res)
		if err != nil {
			t.Fatal(err)
		}
		if broken == res.OK() {
			t.Fatalf("broken %v but result %+v", broken, res)
		}
		if res.OK() && res.Records > 0 && len(res.Head) != 64 {
			t.Fatalf("ok with head %q", res.Head)
		}
	})
}

// FuzzParseRecord checks that ParseRecord never panics and that whatever
// it accepts can be encoded again canonically.
func FuzzParseRecord(f *testing.F) {
	for _, line := range seedLog(f) {
		f.Add([]byte(strings.TrimSuffix(line, "\n")))
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"seq":1e3}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := ParseRecord(line)
		if err != nil {
			return
		}
		if len(line) > MaxRecordSize || rec.Seq == 0 || !isHexHash(rec.Hash) || !isHexHash(rec.Prev) {
			t.Fatalf("accepted %q as %+v", line, rec)
		}
		if _, err := canonical(rec.Fields); err != nil {
			t.Fatalf("accepted fields that do not encode: %v", err)
		}
		for k := range reserved {
			if _, ok := rec.Fields[k]; ok {
				t.Fatalf("reserved %q left in Fields", k)
			}
		}
	})
}

// TestRecordedAuditLog: the audit log of a real recorded run (logins,
// ssh -J, ssh -A, ssh-add, lock) verifies, whole and from its middle, and
// each of its lines parses.
func TestRecordedAuditLog(t *testing.T) {
	for name, data := range fuzzseed.Recorded(t, "FuzzVerify", "audit-") {
		var res VerifyResult
		broken, err := verifyStream(bytes.NewReader(data), name, &res)
		if err != nil || broken || !res.OK() {
			t.Errorf("%s: real log does not verify: broken %v, err %v, %+v", name, broken, err, res)
		}
		if want := bytes.Count(data, []byte("\n")); res.Records != want {
			t.Errorf("%s: %d records verified, the log has %d lines", name, res.Records, want)
		}
	}
	for name, line := range fuzzseed.Recorded(t, "FuzzParseRecord", "audit-") {
		rec, err := ParseRecord(line)
		if err != nil {
			t.Errorf("%s: real record refused: %v", name, err)
			continue
		}
		if "audit-"+strings.ReplaceAll(rec.Event, ".", "-") != name {
			t.Errorf("%s: event %q", name, rec.Event)
		}
	}
}
