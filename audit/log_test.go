package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// openTest opens a log in a fresh temporary directory, closed at the end of
// the test.
func openTest(t *testing.T, opts Options) *Log {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "warden", "audit.log")
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(t *testing.T, l *Log, event string, fields map[string]any) Record {
	t.Helper()
	rec, err := l.Append(context.Background(), event, fields)
	if err != nil {
		t.Fatalf("Append(%s): %v", event, err)
	}
	return rec
}

func mustVerify(t *testing.T, path string, records int) VerifyResult {
	t.Helper()
	res, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("Verify: broken at seq %d: %s (%s line %d)", res.BrokenSeq, res.Reason, res.File, res.Line)
	}
	if records >= 0 && res.Records != records {
		t.Fatalf("Verify: %d records, want %d", res.Records, records)
	}
	return res
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func TestAppendFormat(t *testing.T) {
	clock := time.Date(2026, 11, 30, 21, 3, 51, 123, time.UTC)
	l := openTest(t, Options{Now: func() time.Time { return clock }})
	path := l.Status().Path

	r1 := mustAppend(t, l, EventAgentStart, map[string]any{"version": "v0.1.0", "pid": 4242})
	r2 := mustAppend(t, l, EventCertUsed, map[string]any{
		"serial": "c73f26d2340276aa", "serial_dec": "14357712346421409450",
		"caller": Caller{PID: 4242, UID: 1000, Exe: "/usr/bin/ssh", Chain: "ssh(4242) ← git(4240) ← zsh(100)"},
	})
	if r1.Seq != 1 || r1.Prev != ZeroHash || r2.Seq != 2 || r2.Prev != r1.Hash {
		t.Fatalf("chain: r1 %d %s, r2 %d prev %s", r1.Seq, r1.Prev, r2.Seq, r2.Prev)
	}
	if seq, head := l.Head(); seq != 2 || head != r2.Hash {
		t.Fatalf("Head() = %d %s, want 2 %s", seq, head, r2.Hash)
	}
	lines := readLines(t, path)
	if len(lines) != 2 || lines[1] != string(r2.Raw)+"\n" {
		t.Fatalf("file lines %q", lines)
	}
	want := `{"event":"agent.start","hash":"` + r1.Hash + `","pid":4242,"prev":"` + ZeroHash + `","seq":1,"time":"2026-11-30T21:03:51.000000123Z","v":1,"version":"v0.1.0"}` + "\n"
	if lines[0] != want {
		t.Fatalf("first line\n got %s\nwant %s", lines[0], want)
	}
	got, err := ParseRecord(r2.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.FieldString("serial_dec") != "14357712346421409450" || got.Fields["caller"].(map[string]any)["chain"] != "ssh(4242) ← git(4240) ← zsh(100)" {
		t.Fatalf("parsed fields %v", got.Fields)
	}
	if !got.Time.Equal(clock) || got.Event != EventCertUsed {
		t.Fatalf("parsed %v %s", got.Time, got.Event)
	}

	// The file is private to the user.
	for _, c := range []struct {
		name string
		perm os.FileMode
	}{{path, 0o600}, {filepath.Dir(path), 0o700}} {
		fi, err := os.Stat(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.perm {
			t.Errorf("%s mode %v, want %v", c.name, fi.Mode().Perm(), c.perm)
		}
	}
	mustVerify(t, path, 2)
}

func TestAppendRejects(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		event  string
		fields map[string]any
		want   string
	}{
		{"reserved seq", EventHint, map[string]any{"seq": 1}, `"seq" is reserved`},
		{"reserved hash", EventHint, map[string]any{"hash": "x"}, `"hash" is reserved`},
		{"float", EventHint, map[string]any{"latency": 1.5}, "not an integer"},
		{"unsafe int", EventHint, map[string]any{"serial": uint64(1) << 60}, "not an integer"},
		{"too big", EventHint, map[string]any{"blob": strings.Repeat("x", MaxRecordSize)}, "more than"},
		{"no event", "", nil, "event name"},
		{"bad value", EventHint, map[string]any{"ch": make(chan int)}, "encoding fields"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := l.Append(ctx, c.event, c.fields)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "audit: ") {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Fatalf("a caller mistake is not ErrUnavailable: %v", err)
			}
		})
	}
	// Nothing was written; the next record is seq 1.
	if r := mustAppend(t, l, EventHint, map[string]any{"latency_ms": 12}); r.Seq != 1 {
		t.Fatalf("seq %d", r.Seq)
	}
}

// writeLog writes n records to a fresh log and returns its path and lines.
func writeLog(t *testing.T, n int) (string, []string) {
	t.Helper()
	l := openTest(t, Options{})
	for i := 0; i < n; i++ {
		mustAppend(t, l, EventCertUsed, map[string]any{"user": "alice", "host": "web1", "n": i})
	}
	path := l.Status().Path
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, readLines(t, path)
}

func TestVerifyTamper(t *testing.T) {
	path, lines := writeLog(t, 10) // lines[i] is seq i+1
	forged := func(seq uint64, prev string) string {
		rec := Record{V: 1, Seq: seq, Time: time.Now(), Event: EventCertUsed, Fields: map[string]any{"user": "mallory"}, Prev: prev}
		if err := encodeRecord(&rec); err != nil {
			t.Fatal(err)
		}
		return string(rec.Raw) + "\n"
	}
	hash4 := mustParse(t, lines[3]).Hash
	for _, c := range []struct {
		name      string
		edit      func([]string) []string
		brokenSeq uint64
		reason    string
	}{
		{"untouched", func(l []string) []string { return l }, 0, ""},
		{"edit one byte", func(l []string) []string {
			l[4] = strings.Replace(l[4], "alice", "alicf", 1)
			return l
		}, 5, "hash mismatch (record edited)"},
		{"edit seq", func(l []string) []string {
			l[4] = strings.Replace(l[4], `"seq":5`, `"seq":6`, 1)
			return l
		}, 6, "hash mismatch (record edited)"},
		{"delete line", func(l []string) []string {
			return append(l[:4:4], l[5:]...)
		}, 6, "seq 6 follows 4 (record deleted or moved)"},
		{"delete last line", func(l []string) []string { return l[:9] }, 0, ""},
		{"swap lines", func(l []string) []string {
			l[4], l[5] = l[5], l[4]
			return l
		}, 6, "seq 6 follows 4 (record deleted or moved)"},
		{"insert copy", func(l []string) []string {
			return append(l[:5:5], append([]string{l[2]}, l[5:]...)...)
		}, 3, "seq 3 follows 5 (records reordered or duplicated)"},
		{"insert forged", func(l []string) []string {
			return append(l[:4:4], append([]string{forged(5, hash4)}, l[4:]...)...)
		}, 5, "seq 5 follows 5 (records reordered or duplicated)"},
		{"replace forged", func(l []string) []string {
			l[5] = forged(6, hash4)
			return l
		}, 6, "prev does not match seq 5's hash (records reordered or inserted)"},
		{"torn line", func(l []string) []string {
			l[9] = l[9][:40]
			return l
		}, 10, "line 10 has no newline (torn write)"},
		{"garbage line", func(l []string) []string {
			l[2] = "not json\n"
			return l
		}, 3, "line 3 is not a valid record"},
		{"long line", func(l []string) []string {
			l[2] = strings.Repeat("x", 3*MaxRecordSize) + "\n"
			return l
		}, 3, "line 3 is longer than"},
		{"unknown version", func(l []string) []string {
			l[0] = strings.Replace(l[0], `"v":1`, `"v":2`, 1)
			return l
		}, 1, "unknown format version 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := c.edit(append([]string(nil), lines...))
			if err := os.WriteFile(path, []byte(strings.Join(edited, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.reason == "" {
				if !res.OK() {
					t.Fatalf("broken at %d: %s", res.BrokenSeq, res.Reason)
				}
				return
			}
			if res.OK() || res.BrokenSeq != c.brokenSeq || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("Verify = seq %d %q, want seq %d %q", res.BrokenSeq, res.Reason, c.brokenSeq, c.reason)
			}
		})
	}
}

func mustParse(t *testing.T, line string) Record {
	t.Helper()
	r, err := ParseRecord([]byte(strings.TrimSuffix(line, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestShellVerification checks the jq + sha256sum recipe of docs/audit.md
// against the real tools, on values that stress the canonical encoding.
func TestShellVerification(t *testing.T) {
	for _, tool := range []string{"bash", "jq", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	l := openTest(t, Options{})
	mustAppend(t, l, EventHint, map[string]any{
		"user": "alice", "host": "web1.example.com", "port": 22,
		"odd":    "quote\" backslash\\ <>& \x01\x1f\x7f \b\f\n\r\t é ← \u2028 😀 \xff",
		"nested": map[string]any{"z": []any{1, "b", true, nil, map[string]any{"y": 2, "a": -3}}, "a": ""},
		"empty":  map[string]any{},
		"big":    1<<53 - 1,
	})
	mustAppend(t, l, EventCertUsed, map[string]any{"caller": Caller{PID: 1, Chain: "ssh(4242) ← git(4240) ← zsh(100)"}})
	mustAppend(t, l, EventAgentStop, nil)
	path := l.Status().Path
	// The recipe from docs/audit.md, verbatim; it reads ./audit.log.
	script := docBlock(t, "sh", "while IFS= read -r line")
	run := func() ([]byte, error) {
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = filepath.Dir(path)
		return cmd.CombinedOutput()
	}
	out, err := run()
	_, head := l.Head()
	if err != nil || strings.TrimSpace(string(out)) != "ok, head "+head {
		t.Fatalf("shell verification: %v\n%s", err, out)
	}

	// And the shell recipe catches an edit.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte("alice"), []byte("alicf"), 1), 0o600)
	out, err = run()
	if err == nil || !strings.Contains(string(out), "broken at seq 1") {
		t.Fatalf("shell verification of an edited log: %v\n%s", err, out)
	}
}

func TestGroupCommit(t *testing.T) {
	l := openTest(t, Options{})
	const writers, each = 64, 200
	var wg sync.WaitGroup
	seqs := make([][]uint64, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec, err := l.Append(context.Background(), EventCertUsed, map[string]any{"writer": w, "i": i})
				if err != nil {
					t.Error(err)
					return
				}
				seqs[w] = append(seqs[w], rec.Seq)
			}
		}()
	}
	wg.Wait()
	// Every acknowledged record has a distinct seq, and they cover 1..N.
	seen := make(map[uint64]bool)
	for _, s := range seqs {
		for _, q := range s {
			if seen[q] {
				t.Fatalf("seq %d acknowledged twice", q)
			}
			seen[q] = true
		}
	}
	const total = writers * each
	for q := uint64(1); q <= total; q++ {
		if !seen[q] {
			t.Fatalf("seq %d missing", q)
		}
	}
	mustVerify(t, l.Status().Path, total)
	fsyncs := l.fsyncs.Load()
	t.Logf("%d records in %d fsyncs", total, fsyncs)
	if fsyncs >= total {
		t.Fatalf("%d fsyncs for %d records: no batching", fsyncs, total)
	}
}

// faults makes the files opened by a Log fail on demand.
type faults struct {
	write atomic.Bool // Write stores half the data, then fails with ENOSPC
	sync  atomic.Bool // Sync fails with EIO
}

type faultyFile struct {
	*os.File
	f *faults
}

func (f faultyFile) Write(b []byte) (int, error) {
	if f.f.write.Load() {
		n, _ := f.File.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(b)
}

func (f faultyFile) Sync() error {
	if f.f.sync.Load() {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (fs *faults) open(path string) (logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return faultyFile{f, fs}, nil
}

func TestFailureAndRecoveryInjected(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*faults, bool)
		want error
	}{
		{"disk full", func(f *faults, on bool) { f.write.Store(on) }, syscall.ENOSPC},
		{"fsync fails", func(f *faults, on bool) { f.sync.Store(on) }, syscall.EIO},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := &faults{}
			l := openTest(t, Options{openFile: fs.open})
			path := l.Status().Path
			mustAppend(t, l, EventAgentStart, nil)
			c.set(fs, true)
			for i := 0; i < 3; i++ {
				_, err := l.Append(context.Background(), EventCertUsed, map[string]any{"i": i})
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, c.want) {
					t.Fatalf("Append while failing: %v", err)
				}
			}
			st := l.Status()
			if !st.Unavailable || !strings.Contains(st.LastError, c.want.Error()) || st.LastErrorAt.IsZero() || st.Seq != 1 {
				t.Fatalf("Status while failing: %+v", st)
			}
			// The failed records left nothing behind.
			mustVerify(t, path, 1)
			c.set(fs, false)
			if r := mustAppend(t, l, EventCertUsed, nil); r.Seq != 2 {
				t.Fatalf("seq after recovery %d, want 2", r.Seq)
			}
			st = l.Status()
			if st.Unavailable || st.LastError == "" {
				t.Fatalf("Status after recovery: %+v", st)
			}
			mustVerify(t, path, 2)
		})
	}
}

func TestFailureDirectoryReplaced(t *testing.T) {
	l := openTest(t, Options{})
	path := l.Status().Path
	dir := filepath.Dir(path)
	mustAppend(t, l, EventAgentStart, nil)

	// The audit directory is moved away and a file put in its place: the
	// open descriptor would still write, into a file nobody reads.
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(context.Background(), EventCertUsed, nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append with the directory replaced: %v", err)
	}
	if st := l.Status(); !st.Unavailable || st.LastError == "" {
		t.Fatalf("Status: %+v", st)
	}
	os.Remove(dir)
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, EventCertUsed, nil)
	mustVerify(t, path, 2)
}

func TestFileRemovedOrMoved(t *testing.T) {
	l := openTest(t, Options{})
	path := l.Status().Path
	first := mustAppend(t, l, EventAgentStart, nil)

	// Removed without a SIGHUP: the next record goes to a new file at path
	// and still chains.
	os.Remove(path)
	r := mustAppend(t, l, EventCertUsed, nil)
	if r.Seq != 2 || r.Prev != first.Hash {
		t.Fatalf("after removal: seq %d prev %s", r.Seq, r.Prev)
	}
	// Log shipping moves the file and sends SIGHUP.
	if err := os.Rename(path, path+".shipped"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	r3 := mustAppend(t, l, EventCertUsed, nil)
	if r3.Seq != 3 || r3.Prev != r.Hash {
		t.Fatalf("after reopen: seq %d prev %s", r3.Seq, r3.Prev)
	}
	res := mustVerify(t, path, 1)
	if res.FirstSeq != 3 {
		t.Fatalf("FirstSeq %d", res.FirstSeq)
	}
}

// TestFailureDiskFull fills a real, small tmpfs.
func TestFailureDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	path := filepath.Join(mnt, "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustAppend(t, l, EventAgentStart, nil)
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	blob := strings.Repeat("x", 8000) // more than any slack left in a page
	_, err = l.Append(context.Background(), EventCertUsed, map[string]any{"blob": blob})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	if st := l.Status(); !st.Unavailable || !strings.Contains(st.LastError, "no space") {
		t.Fatalf("Status: %+v", st)
	}
	os.Remove(filler)
	mustAppend(t, l, EventCertUsed, map[string]any{"blob": blob})
	mustVerify(t, path, 2)
}

func TestTornLastLine(t *testing.T) {
	for _, c := range []struct {
		name, tail string
	}{
		{"no newline", `{"v":1,"seq":4,"time":"2026-`},
		{"unparsable line", "{\"v\":1,\"seq\":4,\"ti\x00\n"},
		{"only a fragment", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := time.Unix(1790000000, 0)
			path := filepath.Join(t.TempDir(), "audit.log")
			tail := c.tail
			records := 3
			if c.name == "only a fragment" {
				records, tail = 0, `{"v":1,"se`
			} else {
				l := openTest(t, Options{Path: path})
				for i := 0; i < records; i++ {
					mustAppend(t, l, EventCertUsed, nil)
				}
				l.Close()
			}
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			f.WriteString(tail)
			f.Close()

			l := openTest(t, Options{Path: path, Now: func() time.Time { return clock }})
			lines := readLines(t, path)
			if len(lines) != records+1 {
				t.Fatalf("%d lines after recovery, want %d", len(lines), records+1)
			}
			rec := mustParse(t, lines[records])
			kept := path + ".torn-1790000000"
			if rec.Event != EventRecovered || rec.Seq != uint64(records+1) ||
				rec.FieldString("torn_bytes") != fmt.Sprint(len(tail)) || rec.FieldString("kept_in") != kept {
				t.Fatalf("recovered record %s", rec.Raw)
			}
			if b, err := os.ReadFile(kept); err != nil || string(b) != tail {
				t.Fatalf("kept aside %q, %v; want %q", b, err, tail)
			}
			mustAppend(t, l, EventCertUsed, nil)
			mustVerify(t, path, records+2)
			if files, _ := Files(path); len(files) != 1 {
				t.Fatalf("Files lists the torn file: %v", files)
			}
		})
	}
}

func TestOpenRefusesUnreadableTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte("garbage\nmore garbage\n"), 0o600)
	_, err := Open(Options{Path: path})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "activity verify") {
		t.Fatalf("Open = %v", err)
	}
}

func TestRotationUnderLoad(t *testing.T) {
	const maxSize, keep = 8 << 10, 3
	l := openTest(t, Options{MaxSize: maxSize, Keep: keep, MinAge: -1})
	path := l.Status().Path
	const writers, each = 16, 100
	var wg sync.WaitGroup
	// A reviewer verifying while the agent writes and rotates sees an
	// intact chain.
	stopVerify := make(chan struct{})
	verified := make(chan int)
	go func() {
		n := 0
		defer func() { verified <- n }()
		for {
			select {
			case <-stopVerify:
				return
			default:
			}
			if res, err := Verify(path); err != nil || !res.OK() {
				t.Errorf("Verify during writes: %v %+v", err, res)
				return
			}
			n++
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(context.Background(), EventCertUsed, map[string]any{"writer": w, "i": i}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stopVerify)
	t.Logf("verified %d times during the writes", <-verified)
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != keep+1 || l.Status().Rotated != keep {
		t.Fatalf("files %v, status %+v; want %d rotated", files, l.Status(), keep)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > maxSize {
			t.Errorf("%s is %d bytes, past MaxSize", f, fi.Size())
		}
	}
	res := mustVerify(t, path, -1)
	if res.LastSeq != writers*each || res.FirstSeq <= 1 || res.Records != int(res.LastSeq-res.FirstSeq+1) {
		t.Fatalf("Verify %+v", res)
	}
	// Each file's first record chains to the previous file's last one.
	for i := 1; i < len(files); i++ {
		prev, cur := readLines(t, files[i-1]), readLines(t, files[i])
		if mustParse(t, cur[0]).Prev != mustParse(t, prev[len(prev)-1]).Hash {
			t.Fatalf("%s does not chain to %s", files[i], files[i-1])
		}
	}
}

func TestRestartContinuity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openTest(t, Options{Path: path})
	mustAppend(t, l, EventAgentStart, nil)
	mustAppend(t, l, EventAgentStop, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(context.Background(), EventHint, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append after Close: %v", err)
	}

	l = openTest(t, Options{Path: path})
	if seq, _ := l.Head(); seq != 2 {
		t.Fatalf("Head after restart: seq %d", seq)
	}
	if r := mustAppend(t, l, EventAgentStart, nil); r.Seq != 3 {
		t.Fatalf("seq %d", r.Seq)
	}
	l.Close()

	// A crash right after a rotation renamed the file: the chain continues
	// from the newest rotated file.
	os.Rename(path, path+".1")
	l = openTest(t, Options{Path: path})
	if r := mustAppend(t, l, EventAgentStart, nil); r.Seq != 4 {
		t.Fatalf("seq after restart on an empty file: %d", r.Seq)
	}
	mustVerify(t, path, 4)
}

func TestAppendContext(t *testing.T) {
	l := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, EventHint, nil); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
}

func TestQueryAndRender(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := now
	l := openTest(t, Options{Now: func() time.Time { clock = clock.Add(time.Minute); return clock }})
	path := l.Status().Path
	caller := Caller{PID: 4242, UID: 1000, Exe: "/usr/bin/ssh", Chain: "ssh(4242) ← git(4240) ← zsh(100)"}
	mustAppend(t, l, EventHint, map[string]any{"user": "alice", "host": "web1", "port": 22, "caller": caller})
	mustAppend(t, l, EventCertIssued, map[string]any{"principals": []string{"alice", "deploy"}, "target_host": "web1",
		"serial": "00c73f26d2340276aa", "serial_dec": "14357712346421409450", "caller": caller})
	mustAppend(t, l, EventCertUsed, map[string]any{"user": "deploy", "host": "web1", "serial": "c73f26d2340276aa",
		"serial_dec": "14357712346421409450", "result": "signed", "caller": caller})
	mustAppend(t, l, EventSignDenied, map[string]any{"user": "root", "host": "db1", "reason": "policy rule 3 \x1b[31m", "caller": Caller{PID: 7, Exe: "/usr/bin/scp"}})
	mustAppend(t, l, EventPolicyReloaded, nil)

	for _, c := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{1, 2, 3, 4, 5}},
		{"events", Filter{Events: []string{"cert.*", EventHint}}, []uint64{1, 2, 3}},
		{"principal", Filter{Principal: "deploy"}, []uint64{2, 3}},
		{"host", Filter{Host: "web1"}, []uint64{1, 2, 3}},
		{"serial hex", Filter{Serial: "C73F26D2340276AA"}, []uint64{2, 3}},
		{"serial 0x", Filter{Serial: "0xc73f26d2340276aa"}, []uint64{2, 3}},
		{"serial dec", Filter{Serial: "14357712346421409450"}, []uint64{2, 3}},
		{"caller chain", Filter{Caller: "git(4240)"}, []uint64{1, 2, 3}},
		{"caller pid", Filter{Caller: "7"}, []uint64{4}},
		{"since", Filter{Since: now.Add(3 * time.Minute)}, []uint64{3, 4, 5}},
		{"until", Filter{Until: now.Add(2 * time.Minute)}, []uint64{1, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs, err := Query(path, c.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got seqs %v, want %v", got, c.want)
			}
		})
	}

	// show: the certificate's records and the serial-less records of its
	// connection, not those of other connections.
	mustAppend(t, l, EventSessionBind, map[string]any{"conn": "c1", "host_key": "SHA256:x"})
	mustAppend(t, l, EventCertIssued, map[string]any{"conn": "c1", "serial": "aa", "serial_dec": "170"})
	mustAppend(t, l, EventCertUsed, map[string]any{"conn": "c1", "serial": "aa", "serial_dec": "170", "result": "signed"})
	mustAppend(t, l, EventCertUsed, map[string]any{"conn": "c1", "serial": "bb", "serial_dec": "187", "result": "signed"})
	mustAppend(t, l, EventSessionBind, map[string]any{"conn": "c2"})
	mustAppend(t, l, EventCertUsed, map[string]any{"conn": "c2", "serial": "aa", "serial_dec": "170", "result": "signed"})
	shown, err := Show(path, "170")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range shown {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[6 7 8 10 11]" {
		t.Fatalf("Show gave seqs %v", seqs)
	}

	recs, _ := Query(path, Filter{})
	var table bytes.Buffer
	if err := WriteTable(&table, recs); err != nil {
		t.Fatal(err)
	}
	out := table.String()
	for _, want := range []string{"alice,deploy@web1", "deploy@web1", "signed", "denied: policy rule 3 ?[31m", "ssh(4242) ← git(4240) ← zsh(100)", "/usr/bin/scp(7)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("table passes an escape character through:\n%s", out)
	}
	var js bytes.Buffer
	WriteJSON(&js, recs)
	if b, _ := os.ReadFile(path); !bytes.Equal(js.Bytes(), b) {
		t.Errorf("WriteJSON differs from the file:\n%s", js.String())
	}
}

func TestFollow(t *testing.T) {
	old := pollInterval
	pollInterval = 5 * time.Millisecond
	t.Cleanup(func() { pollInterval = old })

	l := openTest(t, Options{MaxSize: 2 << 10, Keep: 50})
	path := l.Status().Path
	for i := 0; i < 5; i++ {
		mustAppend(t, l, EventHint, map[string]any{"i": i})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 1000)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, path, Filter{Events: []string{EventHint}}, func(r Record) { got <- r.Seq })
	}()
	const total = 200 // enough to rotate several times while following
	for i := 5; i < total; i++ {
		ev := EventHint
		if i%10 == 0 {
			ev = EventCertUsed
		}
		mustAppend(t, l, ev, map[string]any{"i": i, "pad": strings.Repeat("p", 100)})
	}
	want := uint64(1)
	timeout := time.After(10 * time.Second)
	for want <= total {
		if want > 5 && (want-1)%10 == 0 {
			want++ // a cert.used record, filtered out
			continue
		}
		select {
		case seq := <-got:
			if seq != want {
				t.Fatalf("Follow gave seq %d, want %d", seq, want)
			}
			want++
		case <-timeout:
			t.Fatalf("Follow stalled before seq %d", want)
		}
	}
	if l.Status().Rotated == 0 {
		t.Fatal("the test did not rotate")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2h":                   now.Add(-2 * time.Hour),
		"7d":                   now.AddDate(0, 0, -7),
		"2026-11-30T10:00:00Z": time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseTime("yesterday", now); err == nil {
		t.Error("ParseTime accepted yesterday")
	}
}

func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	// For values without HTML characters or U+2028/9, the canonical
	// encoding equals encoding/json's (which also sorts map keys).
	v := map[string]any{"b": []any{json.Number("1"), "x", nil, true}, "a": map[string]any{"d": "é", "c": "\n"}}
	c, err := canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(v)
	if !bytes.Equal(c, j) {
		t.Fatalf("canonical %s\n     json %s", c, j)
	}
}

// xReader yields an endless line of 'x'.
type xReader struct{}

func (xReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestVerifyHugeLineBoundedMemory pins that a hostile 256 MiB line is
// skipped, not buffered.
func TestVerifyHugeLineBoundedMemory(t *testing.T) {
	_, lines := writeLog(t, 2)
	data := io.MultiReader(strings.NewReader(lines[0]), io.LimitReader(xReader{}, 256<<20), strings.NewReader("\n"+lines[1]))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var res VerifyResult
	if _, err := verifyStream(data, "hostile", &res); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if res.OK() || res.BrokenSeq != 2 || !strings.Contains(res.Reason, "longer than") {
		t.Fatalf("Verify = %+v", res)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 8<<20 {
		t.Fatalf("verifying allocated %d bytes", grown)
	}
}

// docBlock returns the first fenced block of docs/audit.md in language lang
// that contains marker.
func docBlock(t *testing.T, lang, marker string) string {
	t.Helper()
	for _, b := range docBlocks(t, lang) {
		if strings.Contains(b, marker) {
			return b
		}
	}
	t.Fatalf("docs/audit.md has no %s block containing %q", lang, marker)
	return ""
}

func docBlocks(t *testing.T, lang string) []string {
	t.Helper()
	doc, err := os.ReadFile("../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(doc), "```"+lang+"\n")[1:] {
		end := strings.Index(part, "```")
		if end < 0 {
			t.Fatal("unterminated block in docs/audit.md")
		}
		blocks = append(blocks, part[:end])
	}
	return blocks
}

// TestDocExamples keeps docs/audit.md honest: its example records form a
// chain that verifies, and every event has one.
func TestDocExamples(t *testing.T) {
	var chain []string
	seen := make(map[string]bool)
	for _, b := range docBlocks(t, "json") {
		line := strings.TrimSpace(b)
		if !strings.HasPrefix(line, `{"`) || !strings.Contains(line, `"seq":`) {
			continue
		}
		rec, err := ParseRecord([]byte(line))
		if err != nil {
			t.Fatalf("example %s: %v", line, err)
		}
		seen[rec.Event] = true
		if rec.Event != EventRecovered && rec.Event != EventLimited { // from other logs
			chain = append(chain, line+"\n")
		}
	}
	for _, e := range Events {
		if !seen[e] {
			t.Errorf("docs/audit.md has no example of %s", e)
		}
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte(strings.Join(chain, "")), 0o600)
	mustVerify(t, path, len(Events)-2)
}

// BenchmarkAppend measures durable appends at 1, 8 and 64 concurrent
// writers; group commit should keep ns/op falling as writers are added.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(Options{Path: filepath.Join(b.TempDir(), "audit.log")})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			fields := map[string]any{"conn": "c7", "serial": "c73f26d2340276aa", "serial_dec": "14357712346421409450", "result": "signed"}
			var wg sync.WaitGroup
			var next atomic.Int64
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := l.Append(context.Background(), EventCertUsed, fields); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(l.fsyncs.Load())/float64(b.N), "fsyncs/op")
		})
	}
}

// TestHeadCurrentWhenAppendReturns pins a bug where the writer answered
// Append before publishing the new head, so the next OpenBao request could
// carry a head older than a record the agent had already acted on.
func TestHeadCurrentWhenAppendReturns(t *testing.T) {
	l := openTest(t, Options{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				rec := mustAppend(t, l, EventCertUsed, nil)
				if seq, _ := l.Head(); seq < rec.Seq {
					t.Errorf("Head() seq %d after Append returned seq %d", seq, rec.Seq)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSecondWriterRefused: a second Open of the same log (here in the same
// process; flock conflicts between open files as between processes) is
// refused with a message naming the holder's pid and the lock file, the
// first keeps writing, and once it is closed the log opens again. A lock
// file left by a dead holder does not stand in the way.
func TestSecondWriterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path+lockSuffix, []byte("99999999\n"), 0o600) // left by a crash
	l := openTest(t, Options{Path: path})
	mustAppend(t, l, EventAgentStart, nil)
	_, err := Open(Options{Path: path})
	var held *LockedError
	if !errors.As(err, &held) || held.PID != os.Getpid() ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d is already writing %s", os.Getpid(), path)) ||
		!strings.Contains(err.Error(), path+lockSuffix) {
		t.Fatalf("second Open: %v", err)
	}
	mustAppend(t, l, EventAgentStop, nil)
	if got, _ := os.ReadFile(path + lockSuffix); string(got) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Fatalf("lock file holds %q", got)
	}
	l.Close()
	l = openTest(t, Options{Path: path})
	mustAppend(t, l, EventAgentStart, nil)
	// Readers take no lock, and the lock file is no part of the chain.
	mustVerify(t, path, 3)
}

// TestRotationRefusesYoungFiles (issue 12: with a small max_size a burst
// of records rotated agent.start away while verify said ok): rotation
// never deletes a file whose newest record is younger than MinAge. It
// keeps writing into the current file past MaxSize instead, says so in
// Status, and deletes once the file has aged.
func TestRotationRefusesYoungFiles(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	const maxSize, keep = 2 << 10, 2
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openTest(t, Options{Path: path, MaxSize: maxSize, Keep: keep, Now: clock}) // MinAge: the default, 7 days
	mustAppend(t, l, EventAgentStart, map[string]any{"pid": 1})
	for i := 0; i < 200; i++ {
		advance(time.Minute)
		mustAppend(t, l, EventHint, map[string]any{"host": "web1", "n": i, "pad": strings.Repeat("x", 40)})
	}
	st := l.Status()
	if !strings.Contains(st.RotationRefused, "rotating would delete audit.log.2") || !strings.Contains(st.RotationRefused, "minimum age 168h0m0s") {
		t.Fatalf("Status.RotationRefused = %q", st.RotationRefused)
	}
	files, _ := Files(path)
	if len(files) != keep+1 {
		t.Fatalf("files %v, want %d", files, keep+1)
	}
	if fi, _ := os.Stat(path); fi.Size() <= maxSize {
		t.Fatalf("current file is %d bytes; it should have grown past MaxSize instead of rotating", fi.Size())
	}
	res := mustVerify(t, path, 201)
	if res.FirstSeq != 1 {
		t.Fatalf("chain starts at seq %d: records were deleted", res.FirstSeq)
	}
	if first := mustParse(t, readLines(t, files[0])[0]); first.Event != EventAgentStart {
		t.Fatalf("first record is %s", first.Event)
	}

	// Eight days later the oldest file may go.
	advance(8 * 24 * time.Hour)
	mustAppend(t, l, EventHint, map[string]any{"host": "web1"})
	if st := l.Status(); st.RotationRefused != "" {
		t.Fatalf("rotation still refused after the files aged: %q", st.RotationRefused)
	}
	res = mustVerify(t, path, -1)
	if res.FirstSeq == 1 || res.LastSeq != 202 {
		t.Fatalf("after aging: %+v", res)
	}
}
