package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Files returns the log files of path in chain order: rotated files oldest
// first (path.N … path.1), then path itself. Files that do not exist are
// left out; torn tails kept aside (path.torn-*) are not part of the chain.
func Files(path string) ([]string, error) {
	path = filepath.Clean(path)
	files, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return files, nil
}

// rotatedFiles returns path.N files, oldest (highest N) first.
func rotatedFiles(path string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var files []string
	for _, e := range ents {
		name := filepath.Join(filepath.Dir(path), e.Name())
		if !e.IsDir() && rotatedIndex(path, name) > 0 {
			files = append(files, name)
		}
	}
	sort.Slice(files, func(i, j int) bool {
		return rotatedIndex(path, files[i]) > rotatedIndex(path, files[j])
	})
	return files, nil
}

// rotatedIndex returns N if name is path.N (N ≥ 1, no leading zero), else 0.
func rotatedIndex(path, name string) int {
	suffix, ok := strings.CutPrefix(name, path+".")
	if !ok || suffix == "" || suffix[0] == '0' || len(suffix) > 6 {
		return 0
	}
	n, err := strconv.Atoi(suffix)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// lineReader reads lines of at most MaxRecordSize bytes. Longer lines are
// skipped without being held in memory and reported as such, so a hostile
// file cannot make a reader allocate without bound.
type lineReader struct {
	r *bufio.Reader
	n int // lines read
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, MaxRecordSize+1)}
}

// next returns the next line without its newline. The slice is valid until
// the following call. tooLong reports a line past MaxRecordSize (its
// content dropped); unterminated a last line with no newline. At the end it
// returns io.EOF.
func (lr *lineReader) next() (line []byte, tooLong, unterminated bool, err error) {
	line, err = lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		tooLong = true
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = lr.r.ReadSlice('\n')
		}
		line = nil
	}
	switch {
	case err == nil:
		lr.n++
		if !tooLong {
			line = line[:len(line)-1]
		}
		return line, tooLong, false, nil
	case errors.Is(err, io.EOF):
		if len(line) == 0 && !tooLong {
			return nil, false, false, io.EOF
		}
		lr.n++
		return line, tooLong, true, nil
	default:
		return nil, false, false, err
	}
}

// VerifyResult is the outcome of Verify. The chain is intact when Reason is
// empty.
type VerifyResult struct {
	Files    []string // the files checked, in chain order
	Records  int      // records that verified
	FirstSeq uint64   // seq of the first record; above 1 when older files were rotated away
	LastSeq  uint64   // seq of the last record that verified
	Head     string   // hash of the last record that verified

	// When the chain is broken: the first broken seq (the seq the record
	// has, or the one expected where the line is unreadable), why, and
	// where.
	BrokenSeq uint64
	Reason    string
	File      string
	Line      int
}

// OK reports whether the whole chain verified.
func (r VerifyResult) OK() bool { return r.Reason == "" }

// Verify checks the chain across the rotated files and the current one, in
// order: each line is a record of a known version whose hash recomputes,
// seq goes up by one and prev is the previous record's hash (ZeroHash for
// seq 1). The first record may have a seq above 1 when older files were
// rotated away; its prev cannot be checked locally (the OpenBao audit
// anchor covers that). A broken chain is reported in the result, not as an
// error; the error is for a log that cannot be read at all.
func Verify(path string) (VerifyResult, error) {
	res, err := verifyOnce(path)
	// The agent may be writing while we read: a last line still being
	// written looks torn. Look once more before calling it a break.
	if err == nil && !res.OK() && res.File == res.Files[len(res.Files)-1] && strings.HasSuffix(res.Reason, "(torn write)") {
		time.Sleep(100 * time.Millisecond)
		res, err = verifyOnce(path)
	}
	return res, err
}

func verifyOnce(path string) (VerifyResult, error) {
	var res VerifyResult
	snap, err := openSnapshot(path)
	if err != nil {
		return res, err
	}
	defer snap.close()
	if len(snap) == 0 {
		return res, fmt.Errorf("audit: no log at %s: %w", path, fs.ErrNotExist)
	}
	for _, f := range snap {
		res.Files = append(res.Files, f.name)
	}
	for _, f := range snap {
		broken, err := verifyStream(f.f, f.name, &res)
		if err != nil || broken {
			return res, err
		}
	}
	return res, nil
}

// snapshot is the log's files, opened in chain order.
type snapshot []snapFile

type snapFile struct {
	name string
	f    *os.File
}

func (s snapshot) close() {
	for _, f := range s {
		f.f.Close()
	}
}

// openSnapshot opens every file of the log. A rotation renames files
// while we list and open them, which would make a reader skip or repeat a
// file and see a broken chain; so after opening, it lists again and starts
// over unless every name still refers to the file it opened. Open
// descriptors keep reading the right data however the files are renamed
// afterwards.
func openSnapshot(path string) (snapshot, error) {
	for try := 0; ; try++ {
		files, err := Files(path)
		if err != nil {
			return nil, err
		}
		snap := make(snapshot, 0, len(files))
		stable := true
		for _, name := range files {
			f, err := os.Open(name)
			if errors.Is(err, fs.ErrNotExist) {
				stable = false
				break
			}
			if err != nil {
				snap.close()
				return nil, fmt.Errorf("audit: %w", err)
			}
			snap = append(snap, snapFile{name, f})
		}
		if stable {
			again, err := Files(path)
			stable = err == nil && len(again) == len(snap)
			for i := 0; stable && i < len(snap); i++ {
				fi, err1 := os.Stat(again[i])
				ofi, err2 := snap[i].f.Stat()
				stable = again[i] == snap[i].name && err1 == nil && err2 == nil && os.SameFile(fi, ofi)
			}
		}
		if stable || try == 20 {
			return snap, nil
		}
		snap.close()
		time.Sleep(time.Millisecond)
	}
}

// verifyStream checks the records of one file (called name in reports),
// continuing the chain held in res.
func verifyStream(r io.Reader, name string, res *VerifyResult) (broken bool, err error) {
	lr := newLineReader(r)
	fail := func(seq uint64, format string, args ...any) (bool, error) {
		res.BrokenSeq, res.Reason = seq, fmt.Sprintf(format, args...)
		res.File, res.Line = name, lr.n
		return true, nil
	}
	for {
		line, tooLong, unterminated, err := lr.next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("audit: reading %s: %w", name, err)
		}
		expect := res.LastSeq + 1
		switch {
		case tooLong:
			return fail(expect, "line %d is longer than %d bytes", lr.n, MaxRecordSize)
		case unterminated:
			return fail(expect, "line %d has no newline (torn write)", lr.n)
		}
		rec, err := ParseRecord(line)
		var nc *notCanonicalError
		if errors.As(err, &nc) {
			return fail(rec.Seq, "line %d (seq %d) is not the canonical encoding of its record (line edited): %s", lr.n, rec.Seq, nc.what)
		}
		if errors.Is(err, errHashMismatch) {
			return fail(rec.Seq, "hash mismatch (record edited)")
		}
		if err != nil {
			return fail(expect, "line %d is not a valid record: %s", lr.n, strings.TrimPrefix(err.Error(), "audit: "))
		}
		if res.Records == 0 {
			res.FirstSeq = rec.Seq
			if rec.Seq == 1 && rec.Prev != ZeroHash {
				return fail(rec.Seq, "seq 1 has a prev other than zeros (records inserted before it)")
			}
		} else {
			switch {
			case rec.Seq > expect:
				return fail(rec.Seq, "seq %d follows %d (record deleted or moved)", rec.Seq, res.LastSeq)
			case rec.Seq < expect:
				return fail(rec.Seq, "seq %d follows %d (records reordered or duplicated)", rec.Seq, res.LastSeq)
			case rec.Prev != res.Head:
				return fail(rec.Seq, "prev does not match seq %d's hash (records reordered or inserted)", res.LastSeq)
			}
		}
		res.Records++
		res.LastSeq, res.Head = rec.Seq, rec.Hash
	}
}

// Filter selects records for Query and Follow. Zero fields match
// everything.
type Filter struct {
	Since, Until time.Time // inclusive bounds on the record time
	// Events are event names; "cert.*" matches every event starting with
	// "cert.".
	Events []string
	// Principal matches the principal, principals or user field.
	Principal string
	// Host matches the host or target_host field.
	Host string
	// Serial matches the serial (hex) or serial_dec (decimal) field; it may
	// be given in hex (with or without 0x or colons) or decimal.
	Serial string
	// Caller matches a substring of the caller's chain or executable, or
	// the caller's pid exactly.
	Caller string
}

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && r.Time.After(f.Until) {
		return false
	}
	if len(f.Events) > 0 && !matchEvent(f.Events, r.Event) {
		return false
	}
	if f.Principal != "" && !matchAny(r, f.Principal, "principal", "principals", "user") {
		return false
	}
	if f.Host != "" && !matchAny(r, f.Host, "host", "target_host") {
		return false
	}
	if f.Serial != "" && !matchSerial(r, f.Serial) {
		return false
	}
	if f.Caller != "" && !matchCaller(r, f.Caller) {
		return false
	}
	return true
}

func matchEvent(patterns []string, event string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(event, prefix) {
				return true
			}
		} else if p == event {
			return true
		}
	}
	return false
}

// matchAny reports whether one of the fields equals want, or, for an array
// field, contains it.
func matchAny(r Record, want string, fields ...string) bool {
	for _, name := range fields {
		switch v := r.Fields[name].(type) {
		case string:
			if v == want {
				return true
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && s == want {
					return true
				}
			}
		}
	}
	return false
}

// matchSerial compares want, in hex or decimal, with the record's serial
// (hex) and serial_dec (decimal) fields.
func matchSerial(r Record, want string) bool {
	want = strings.ToLower(strings.TrimSpace(want))
	hexWant := normHex(strings.TrimPrefix(want, "0x"))
	if s := r.FieldString("serial"); s != "" && hexWant != "" && normHex(strings.TrimPrefix(strings.ToLower(s), "0x")) == hexWant {
		return true
	}
	if d := r.FieldString("serial_dec"); d != "" && !strings.HasPrefix(want, "0x") {
		if a, err := strconv.ParseUint(d, 10, 64); err == nil {
			if b, err := strconv.ParseUint(want, 10, 64); err == nil && a == b {
				return true
			}
		}
	}
	return false
}

// normHex drops colons and leading zeros so "00:c7:3f" equals "c73f".
func normHex(s string) string {
	s = strings.ReplaceAll(s, ":", "")
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return "0"
	}
	return s
}

func matchCaller(r Record, want string) bool {
	switch c := r.Fields["caller"].(type) {
	case string:
		return strings.Contains(c, want)
	case map[string]any:
		for _, k := range []string{"chain", "exe"} {
			if s, ok := c[k].(string); ok && strings.Contains(s, want) {
				return true
			}
		}
		if pid, ok := c["pid"]; ok && fmt.Sprint(pid) == want {
			return true
		}
	}
	return false
}

// Scan calls fn for every record in path's files (oldest first) that
// matches f, stopping at fn's first error. Unreadable lines are skipped and
// records whose hash does not match are included: Scan reads, Verify
// judges.
func Scan(path string, f Filter, fn func(Record) error) error {
	snap, err := openSnapshot(path)
	if err != nil {
		return err
	}
	defer snap.close()
	for _, file := range snap {
		if err := scanStream(file.f, file.name, f, fn); err != nil {
			return err
		}
	}
	return nil
}

func scanFile(name string, f Filter, fn func(Record) error) error {
	file, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // rotated away since it was listed
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer file.Close()
	return scanStream(file, name, f, fn)
}

func scanStream(file io.Reader, name string, f Filter, fn func(Record) error) error {
	lr := newLineReader(file)
	for {
		line, tooLong, unterminated, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: reading %s: %w", name, err)
		}
		if tooLong || unterminated {
			continue
		}
		rec, err := ParseRecord(bytes.Clone(line))
		if !wholeRecord(err) {
			continue
		}
		if f.Match(rec) {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
}

// Query returns the records of path's files that match f, oldest first.
func Query(path string, f Filter) ([]Record, error) {
	var out []Record
	err := Scan(path, f, func(r Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Show returns the story of one certificate, oldest first: every record
// whose serial matches (issuance, uses, refusals) and the records of the
// same agent connections that carry no serial (the hint and session.bind
// that led to the issuance), linked by the "conn" field.
func Show(path, serial string) ([]Record, error) {
	conns := make(map[string]bool)
	err := Scan(path, Filter{Serial: serial}, func(r Record) error {
		if c := r.FieldString("conn"); c != "" {
			conns[c] = true
		}
		return nil
	})
	if err != nil || len(conns) == 0 {
		return Query(path, Filter{Serial: serial})
	}
	var out []Record
	err = Scan(path, Filter{}, func(r Record) error {
		_, hasSerial := r.Fields["serial"]
		if matchSerial(r, serial) || !hasSerial && conns[r.FieldString("conn")] {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// pollInterval is how often Follow looks for new records.
var pollInterval = 200 * time.Millisecond

// Follow calls fn for every record that matches f, the existing ones
// first (oldest first) and then each new one as it is appended, following
// the file across rotation and reopening, until ctx is done. It polls, so a
// new record shows up within a fraction of a second.
func Follow(ctx context.Context, path string, f Filter, fn func(Record)) error {
	path = filepath.Clean(path)
	var lastSeq uint64
	deliver := func(r Record) {
		// Rotation can show a file twice (as path, then as path.1); seq
		// tells them apart.
		if r.Seq <= lastSeq {
			return
		}
		lastSeq = r.Seq
		if f.Match(r) {
			fn(r)
		}
	}
	emit := func(r Record) {
		// A gap means files rotated past us between two looks (or were
		// renamed while we listed them): fill it from the rotated files,
		// retrying since names shift under a busy writer.
		for try := 0; try < 3 && lastSeq > 0 && r.Seq > lastSeq+1; try++ {
			scanRotatedSince(path, lastSeq, func(g Record) error {
				if g.Seq == lastSeq+1 && g.Seq < r.Seq {
					deliver(g)
				}
				return nil
			})
		}
		deliver(r)
	}
	// Open the current file before reading the rotated ones: if it is
	// rotated meanwhile, the open descriptor still reads it to the end.
	cur, _ := os.Open(path)
	t := &tailer{f: cur}
	defer func() { t.close() }()
	catchUp := func() error {
		return scanRotatedSince(path, lastSeq, func(r Record) error { emit(r); return nil })
	}
	if err := catchUp(); err != nil {
		return err
	}
	for {
		if err := t.poll(emit); err != nil {
			return err
		}
		// Switch files when path is no longer the one we hold.
		if fi, err := os.Stat(path); err == nil {
			var held os.FileInfo
			if t.f != nil {
				held, _ = t.f.Stat()
			}
			if held == nil || !os.SameFile(fi, held) {
				if err := t.poll(emit); err != nil { // drain the old file
					return err
				}
				if nf, err := os.Open(path); err == nil {
					t.close()
					t = &tailer{f: nf}
					// Several rotations may have happened between two
					// polls; read the files we skipped.
					if err := catchUp(); err != nil {
						return err
					}
					continue
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pollInterval):
		}
	}
}

// scanRotatedSince calls fn for the records of path's rotated files that
// may hold records after seq after, skipping older files by their first
// record so that following a log does not re-read all of it.
func scanRotatedSince(path string, after uint64, fn func(Record) error) error {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return err
	}
	from := 0
	for i, name := range rotated {
		if first, ok := firstSeq(name); ok && first <= after+1 {
			from = i
		}
	}
	for _, name := range rotated[from:] {
		if err := scanFile(name, Filter{}, fn); err != nil {
			return err
		}
	}
	return nil
}

// firstSeq returns the seq of the first record of a file.
func firstSeq(name string) (uint64, bool) {
	f, err := os.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	line, tooLong, unterminated, err := newLineReader(f).next()
	if err != nil || tooLong || unterminated {
		return 0, false
	}
	rec, err := ParseRecord(line)
	if !wholeRecord(err) {
		return 0, false
	}
	return rec.Seq, true
}

// tailer reads complete lines appended to an open file, keeping a partial
// last line until its newline arrives.
type tailer struct {
	f       *os.File
	buf     []byte
	partial []byte
	skip    bool // discarding an over-long line up to its newline
}

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

func (t *tailer) poll(emit func(Record)) error {
	if t.f == nil {
		return nil
	}
	if t.buf == nil {
		t.buf = make([]byte, 64<<10)
	}
	buf := t.buf
	for {
		n, err := t.f.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !t.skip {
					t.partial = append(t.partial, data...)
					if len(t.partial) > MaxRecordSize {
						t.partial, t.skip = t.partial[:0], true
					}
				}
				break
			}
			if !t.skip {
				line := append(t.partial, data[:i]...)
				if rec, err := ParseRecord(bytes.Clone(line)); wholeRecord(err) {
					emit(rec)
				}
			}
			t.partial, t.skip = t.partial[:0], false
			data = data[i+1:]
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
}
