package audit

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fieldsCase is one set of fields, given both ways.
type fieldsCase struct {
	name   string
	fields map[string]any
	build  func(f *Fields)
}

func callerObject() (map[string]any, Object) {
	m := map[string]any{"pid": 4242, "uid": 1000, "exe": "/usr/bin/ssh", "chain": "ssh(4242) ← git(4240) ← zsh(100)"}
	f := NewFields(128)
	f.Int("pid", 4242)
	f.Int("uid", 1000)
	f.String("exe", "/usr/bin/ssh")
	f.String("chain", "ssh(4242) ← git(4240) ← zsh(100)")
	return m, NewObject(f)
}

func fieldsCases() []fieldsCase {
	callerMap, caller := callerObject()
	nasty := "quote\" back\\ nl\n cr\r tab\t bs\b ff\f nul\x00 del\x7f esc\x1b < > & / \u2028\u2029 é 日本 \xff\xfe bad \ufffd end"
	return []fieldsCase{
		{"empty", map[string]any{}, func(f *Fields) {}},
		{"cert.used", map[string]any{
			"conn": "c7-0a1b2c3d4e5f", "route": "pinned", "principal": "deploy",
			"serial": "c73f26d2340276aa", "serial_dec": "14357712346421409450",
			"key_fingerprint": "SHA256:abc", "caller": callerMap, "bound": true,
			"user": "deploy", "hostbound": true, "session_id_hash": "SHA256:0011",
			"host": "web1.example.com", "host_key": "SHA256:hk", "result": "signed",
		}, func(f *Fields) {
			// Deliberately not in key order.
			f.String("result", "signed")
			f.String("conn", "c7-0a1b2c3d4e5f")
			f.String("route", "pinned")
			f.String("principal", "deploy")
			f.String("serial", "c73f26d2340276aa")
			f.String("serial_dec", "14357712346421409450")
			f.String("key_fingerprint", "SHA256:abc")
			f.Object("caller", caller)
			f.Bool("bound", true)
			f.String("user", "deploy")
			f.Bool("hostbound", true)
			f.String("session_id_hash", "SHA256:0011")
			f.String("host", "web1.example.com")
			f.String("host_key", "SHA256:hk")
		}},
		{"keys around the envelope", map[string]any{
			"": "empty key", "a": 1, "ev": false, "eventx": "x", "f": -7, "h": "h", "hasha": "after hash",
			"hash\x00": "nul", "pre": "p", "prevx": 0, "s": []string{}, "seqq": []string{"a", nasty},
			"ti": 9007199254740991, "tz": -9007199254740991, "u": "u", "va": "va", "z": "z", "é": "é", "日": "日",
		}, func(f *Fields) {
			f.String("日", "日")
			f.String("", "empty key")
			f.Int("a", 1)
			f.Bool("ev", false)
			f.String("eventx", "x")
			f.Int("f", -7)
			f.String("h", "h")
			f.String("hasha", "after hash")
			f.String("hash\x00", "nul")
			f.String("pre", "p")
			f.Int("prevx", 0)
			f.Strings("s", []string{})
			f.Strings("seqq", []string{"a", nasty})
			f.Int("ti", 9007199254740991)
			f.Int("tz", -9007199254740991)
			f.String("u", "u")
			f.String("va", "va")
			f.String("z", "z")
			f.String("é", "é")
		}},
		{"nasty strings", map[string]any{"comment": nasty, "k\"ey\n": nasty, "caller": callerMap}, func(f *Fields) {
			f.Object("caller", caller)
			f.String("k\"ey\n", nasty)
			f.String("comment", nasty)
		}},
		{"nil strings", map[string]any{"names": []string{}}, func(f *Fields) { f.Strings("names", nil) }},
		{"empty object", map[string]any{"o": map[string]any{}}, func(f *Fields) { f.Object("o", Object{}) }},
	}
}

// TestFieldsEncodeLikeAppend: the fast encoder writes exactly the bytes
// (and so the hash) of the generic one for the same fields.
func TestFieldsEncodeLikeAppend(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 0, 0, 123456789, time.UTC)
	for _, tc := range fieldsCases() {
		for _, seq := range []uint64{1, 2, 99999999} {
			prev := ZeroHash
			if seq > 1 {
				prev = strings.Repeat("ab", 32)
			}
			nf, err := normalizeFields(tc.fields)
			if err != nil {
				t.Fatalf("%s: normalize: %v", tc.name, err)
			}
			generic := Record{V: FormatVersion, Seq: seq, Time: at, Event: EventCertUsed, Fields: nf, Prev: prev}
			if err := encodeRecord(&generic); err != nil {
				t.Fatalf("%s: encodeRecord: %v", tc.name, err)
			}
			f := NewFields(0)
			tc.build(f)
			fast := Record{V: FormatVersion, Seq: seq, Time: at, Event: EventCertUsed, Prev: prev}
			if err := encodeFieldsRecord(&fast, f); err != nil {
				t.Fatalf("%s: encodeFieldsRecord: %v", tc.name, err)
			}
			if !bytes.Equal(fast.Raw, generic.Raw) || fast.Hash != generic.Hash {
				t.Errorf("%s seq %d:\nfast    %s\ngeneric %s", tc.name, seq, fast.Raw, generic.Raw)
			}
			parsed, err := ParseRecord(fast.Raw)
			if err != nil {
				t.Errorf("%s: fast record does not parse: %v", tc.name, err)
			} else if !reflect.DeepEqual(parsed.Fields, nf) {
				t.Errorf("%s: parsed fields %v, want %v", tc.name, parsed.Fields, nf)
			}
			if m := f.Map(); !reflect.DeepEqual(m, nf) {
				t.Errorf("%s: Map() = %v, want %v", tc.name, m, nf)
			}
		}
	}
}

// TestFieldsRefusedLikeAppend: what Append refuses, AppendFields refuses.
func TestFieldsRefusedLikeAppend(t *testing.T) {
	l, _ := openTestLog(t)
	ctx := context.Background()
	cases := map[string]func(f *Fields){
		"reserved":  func(f *Fields) { f.String("seq", "1") },
		"twice":     func(f *Fields) { f.String("a", "1"); f.Bool("a", true) },
		"too large": func(f *Fields) { f.Int("n", 1<<53) },
		"too small": func(f *Fields) { f.Int("n", -(1 << 53)) },
		"bad key":   func(f *Fields) { f.String("\xff", "x") },
		"too long":  func(f *Fields) { f.String("a", strings.Repeat("x", MaxRecordSize)) },
	}
	for name, build := range cases {
		f := NewFields(0)
		build(f)
		if _, err := l.AppendFields(ctx, EventCertUsed, f); err == nil {
			t.Errorf("%s: AppendFields accepted it", name)
		}
	}
	if _, err := l.Append(ctx, EventCertUsed, map[string]any{"n": 1 << 53}); err == nil {
		t.Errorf("Append accepted 2^53")
	}
}

// TestAppendFieldsChainVerifies: records from Append, AppendFields and
// AppendLater interleave in one chain that verifies and reads back.
func TestAppendFieldsChainVerifies(t *testing.T) {
	l, path := openTestLog(t)
	ctx := context.Background()
	done := make(chan error, 100)
	for _, tc := range fieldsCases() {
		if _, err := l.Append(ctx, EventHint, tc.fields); err != nil {
			t.Fatal(err)
		}
		f := NewFields(0)
		tc.build(f)
		if _, err := l.AppendFields(ctx, EventCertUsed, f); err != nil {
			t.Fatal(err)
		}
		g := NewFields(0)
		tc.build(g)
		if !l.AppendLater(EventUpstreamUsed, g, func(err error) { done <- err }) {
			t.Fatal("AppendLater did not queue")
		}
	}
	for range fieldsCases() {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(path)
	if err != nil || !res.OK() || res.Records != 3*len(fieldsCases()) {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	recs, err := Query(path, Filter{Events: []string{EventCertUsed}})
	if err != nil || len(recs) != len(fieldsCases()) {
		t.Fatalf("Query: %d records, %v", len(recs), err)
	}
	if got := recs[1].FieldString("serial_dec"); got != "14357712346421409450" {
		t.Errorf("serial_dec %q", got)
	}
}

// TestAppendLaterSyncsLater: records written for AppendLater alone get
// their fsync with the next record someone waits for, at Close, or after
// the sync delay; never one each.
func TestAppendLaterSyncsLater(t *testing.T) {
	open := func(delay time.Duration) (*Log, string) {
		path := filepath.Join(t.TempDir(), "audit.log")
		l, err := Open(Options{Path: path, syncDelay: delay})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, path
	}
	later := func(l *Log, n int) {
		t.Helper()
		done := make(chan error, n)
		for i := 0; i < n; i++ {
			f := NewFields(0)
			f.Int("i", int64(i))
			if !l.AppendLater(EventUpstreamUsed, f, func(err error) { done <- err }) {
				t.Fatal("AppendLater did not queue")
			}
		}
		for i := 0; i < n; i++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}

	// With a delay longer than the test, only a waiter or Close syncs.
	l, path := open(time.Hour)
	later(l, 5)
	if n := l.fsyncs.Load(); n != 0 {
		t.Fatalf("%d fsyncs for 5 best-effort records, want them deferred", n)
	}
	if _, err := l.Append(context.Background(), EventHint, map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if n := l.fsyncs.Load(); n != 1 {
		t.Fatalf("%d fsyncs for 5 best-effort records and one durable record after them, want 1", n)
	}
	later(l, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := l.fsyncs.Load(); n != 2 {
		t.Fatalf("%d fsyncs after Close with best-effort records pending, want 2", n)
	}
	if res, err := Verify(path); err != nil || !res.OK() || res.Records != 8 {
		t.Fatalf("Verify: %+v, %v; want 8 records", res, err)
	}

	// Alone, they are synced after the delay.
	l, _ = open(10 * time.Millisecond)
	later(l, 3)
	deadline := time.Now().Add(10 * time.Second)
	for l.fsyncs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.fsyncs.Load(); n < 1 || n > 3 {
		t.Fatalf("%d fsyncs for 3 best-effort records after the delay, want 1 to 3", n)
	}
}

func openTestLog(t *testing.T) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

// TestAppendLaterWritesTogether: a stream of AppendLater records (one per
// proxied signature, here one every 50 µs) is written a batch at a time,
// not one write each, and every record is in the log, in order, in a
// chain that verifies.
func TestAppendLaterWritesTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path, syncDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	done := make(chan error, n)
	before := l.writes.Load()
	for i := 0; i < n; i++ {
		f := NewFields(0)
		f.Int("i", int64(i))
		if !l.AppendLater(EventUpstreamUsed, f, func(err error) { done <- err }) {
			t.Fatal("AppendLater did not queue")
		}
		time.Sleep(50 * time.Microsecond)
	}
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if w := l.writes.Load() - before; w > n/4 {
		t.Errorf("%d writes for %d best-effort records, want them written together", w, n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(path)
	if err != nil || !res.OK() || res.Records < n {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	recs, err := Query(path, Filter{Events: []string{EventUpstreamUsed}})
	if err != nil || len(recs) != n {
		t.Fatalf("%d upstream.used records (%v), want %d", len(recs), err, n)
	}
	for i, r := range recs {
		if got := r.FieldString("i"); got != strconv.Itoa(i) {
			t.Fatalf("record %d holds i=%v: out of order", i, got)
		}
	}
}

// TestAppendLaterGoesBeforeAWaiter: a best-effort record held back for
// company is written before, and synced with, the next record someone
// waits for (a hint's record before the issuance it led to).
func TestAppendLaterGoesBeforeAWaiter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path, syncDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	written := make(chan error, 1)
	f := NewFields(0)
	f.String("k", "first")
	if !l.AppendLater(EventHint, f, func(err error) { written <- err }) {
		t.Fatal("AppendLater did not queue")
	}
	time.Sleep(time.Millisecond) // the writer takes it and holds it
	fsyncs := l.fsyncs.Load()
	rec, err := l.Append(context.Background(), EventCertIssued, map[string]any{"k": "second"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the held record was not written with the durable one")
	}
	if rec.Seq != 2 {
		t.Fatalf("durable record has seq %d, want 2 (after the held one)", rec.Seq)
	}
	if n := l.fsyncs.Load() - fsyncs; n != 1 {
		t.Fatalf("%d fsyncs, want the two records synced together", n)
	}
}

// TestAppendLaterOrderAgainstAWaiter: a best-effort record queued just
// before a record someone waits for is written before it, every time
// (the waiter never takes the fast path past it).
func TestAppendLaterOrderAgainstAWaiter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		f := NewFields(0)
		f.Int("i", int64(i))
		if !l.AppendLater(EventHint, f, nil) {
			t.Fatal("AppendLater did not queue")
		}
		if _, err := l.Append(context.Background(), EventCertIssued, map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Query(path, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range recs {
		if r.Event == EventHint || r.Event == EventCertIssued {
			order = append(order, r.Event+":"+r.FieldString("i"))
		}
	}
	for i := 0; i < n; i++ {
		if len(order) < 2*i+2 || order[2*i] != EventHint+":"+strconv.Itoa(i) || order[2*i+1] != EventCertIssued+":"+strconv.Itoa(i) {
			t.Fatalf("records out of order at %d: %v", i, order[max(0, 2*i-2):min(len(order), 2*i+2)])
		}
	}
}
