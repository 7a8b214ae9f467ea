package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// FormatVersion is the value of the "v" field of every record this package
// writes. Verify rejects records of any other version.
const FormatVersion = 1

// MaxRecordSize bounds one encoded record (the line without its newline).
// Append refuses larger records and readers treat longer lines as broken, so
// a hostile file cannot make a reader allocate without bound.
const MaxRecordSize = 64 << 10

// maxEventLen bounds an event name, and maxFieldsSize the canonical
// encoding of a record's fields, so that the envelope (v, seq, time, event,
// prev, hash: about 250 bytes) always fits within MaxRecordSize.
const (
	maxEventLen   = 64
	maxFieldsSize = MaxRecordSize - 512
)

// ZeroHash is the "prev" of the record with seq 1.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// timeLayout is RFC 3339 in UTC with a fixed nine-digit fraction, so that
// times sort as strings and a reader never has to guess the precision.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// maxSafeInt is 2^53-1. Integers beyond it do not survive a round trip
// through a float64, which is how jq 1.6 (and JavaScript) hold numbers, so
// the canonical encoding refuses them: the jq one-liner in docs/audit.md
// must recompute the same bytes this package hashes.
const maxSafeInt = 1<<53 - 1

// Reserved field names. Callers' fields may not use them.
const (
	fieldV     = "v"
	fieldSeq   = "seq"
	fieldTime  = "time"
	fieldEvent = "event"
	fieldPrev  = "prev"
	fieldHash  = "hash"
)

var reserved = map[string]bool{
	fieldV: true, fieldSeq: true, fieldTime: true,
	fieldEvent: true, fieldPrev: true, fieldHash: true,
}

// Record is one audit record as written to, or read from, the log.
type Record struct {
	V     int       // format version, FormatVersion
	Seq   uint64    // 1 for the first record ever written, then +1 per record
	Time  time.Time // when the writer sequenced the record, UTC
	Event string    // one of the Event… constants
	// Fields are the event's own fields (everything but the reserved names),
	// as decoded from JSON: numbers are json.Number, objects are
	// map[string]any, arrays are []any.
	Fields map[string]any
	Prev   string // hex SHA-256 of the previous record, ZeroHash for seq 1
	Hash   string // hex SHA-256 over Prev + canonical encoding without "hash"
	Raw    []byte // the line exactly as in the file, without the newline
}

// FieldString returns the named field as a string: strings as they are, numbers
// in their JSON form, and "" for anything else or a missing field.
func (r Record) FieldString(field string) string {
	switch v := r.Fields[field].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// normalizeFields turns arbitrary caller values into the JSON data model
// (map[string]any, []any, string, json.Number, bool, nil) by a round trip
// through encoding/json, so that structs, time.Duration and the like are
// encoded once, the way the file will hold them. It rejects reserved names
// and numbers the canonical encoding cannot carry.
func normalizeFields(fields map[string]any) (map[string]any, error) {
	for k := range fields {
		if reserved[k] {
			return nil, fmt.Errorf("audit: field name %q is reserved", k)
		}
	}
	if len(fields) == 0 {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding fields: %w", err)
	}
	if len(b) > 2*MaxRecordSize {
		// Even with Go's \u003c escapes undone it cannot fit; skip decoding.
		return nil, fmt.Errorf("audit: fields are %d bytes, more than the %d allowed", len(b), maxFieldsSize)
	}
	out, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("audit: decoding fields: %w", err)
	}
	c, err := canonical(out)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if len(c) > maxFieldsSize {
		return nil, fmt.Errorf("audit: fields are %d bytes, more than the %d allowed", len(c), maxFieldsSize)
	}
	return out, nil
}

// decodeObject decodes one JSON object, keeping numbers as their literal
// text so that re-encoding reproduces them exactly.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// canonical returns the canonical encoding of v, defined in docs/audit.md:
// compact JSON, object keys sorted by their UTF-8 bytes at every level,
// integers only (no fraction, no exponent, magnitude at most 2^53-1),
// strings escaping only '"', '\\', the controls U+0000-U+001F and U+007F
// (\b \f \n \r \t short, the rest \u00xx in lower case) and every other
// character as raw UTF-8. That is byte for byte what `jq -cS` prints, so
// the hash can be re-verified without this package.
func canonical(v any) ([]byte, error) {
	var buf []byte
	if err := appendCanonicalTo(&buf, v); err != nil {
		return nil, err
	}
	return buf, nil
}

func appendCanonicalTo(buf *[]byte, v any) error {
	switch v := v.(type) {
	case nil:
		*buf = append(*buf, "null"...)
	case bool:
		*buf = strconv.AppendBool(*buf, v)
	case string:
		*buf = appendString(*buf, v)
	case json.Number:
		if !isCanonicalInt(string(v)) {
			return fmt.Errorf("number %s is not an integer within ±2^53; pass it as a string or an integer", v)
		}
		*buf = append(*buf, v...)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order of UTF-8 = code point order, as jq sorts
		*buf = append(*buf, '{')
		for i, k := range keys {
			if i > 0 {
				*buf = append(*buf, ',')
			}
			*buf = appendString(*buf, k)
			*buf = append(*buf, ':')
			if err := appendCanonicalTo(buf, v[k]); err != nil {
				return err
			}
		}
		*buf = append(*buf, '}')
	case []any:
		*buf = append(*buf, '[')
		for i, e := range v {
			if i > 0 {
				*buf = append(*buf, ',')
			}
			if err := appendCanonicalTo(buf, e); err != nil {
				return err
			}
		}
		*buf = append(*buf, ']')
	default:
		return fmt.Errorf("unexpected %T in canonical encoding", v)
	}
	return nil
}

// isCanonicalInt reports whether s is -?(0|[1-9][0-9]*) with magnitude at
// most 2^53-1 (and not "-0").
func isCanonicalInt(s string) bool {
	d := s
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if d == "" || len(d) > 16 || (len(d) > 1 && d[0] == '0') || s == "-0" {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	n, err := strconv.ParseUint(d, 10, 64)
	return err == nil && n <= maxSafeInt
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as jq does (see canonical). s is valid UTF-8: it
// came out of encoding/json, which replaces invalid bytes with U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 || c == 0x7f {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				b = append(b, c)
			}
		}
		i++
	}
	return append(b, '"')
}

// chainHash is the record hash: hex SHA-256 over the previous hash (as its
// 64 hex characters) followed by the canonical encoding of the record
// without its "hash" field.
func chainHash(prev string, canonicalWithoutHash []byte) string {
	h := sha256.New()
	io.WriteString(h, prev)
	h.Write(canonicalWithoutHash)
	return hex.EncodeToString(h.Sum(nil))
}

// recordMap is the record as one JSON object, without "hash": the
// envelope and the fields, the way encodeRecord hashes it.
func recordMap(rec *Record) map[string]any {
	m := make(map[string]any, len(rec.Fields)+6)
	for k, v := range rec.Fields {
		m[k] = v
	}
	m[fieldV] = json.Number(strconv.Itoa(rec.V))
	m[fieldSeq] = json.Number(strconv.FormatUint(rec.Seq, 10))
	m[fieldTime] = rec.Time.UTC().Format(timeLayout)
	m[fieldEvent] = rec.Event
	m[fieldPrev] = rec.Prev
	return m
}

// encodeRecord builds the line for a new record (without the newline) and
// fills in rec.Hash and rec.Raw. fields must come from normalizeFields.
func encodeRecord(rec *Record) error {
	// The hash is over the line without its hash member, so encode with a
	// placeholder and fill it in.
	line, body, at, err := canonicalLine(recordMap(rec), ZeroHash)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	rec.Hash = chainHash(rec.Prev, body)
	if len(line) > MaxRecordSize {
		return fmt.Errorf("audit: %s record is %d bytes, more than the %d allowed", rec.Event, len(line), MaxRecordSize)
	}
	copy(line[at:], rec.Hash)
	rec.Raw = line
	return nil
}

// canonicalLine encodes a record's members m (without "hash") and the
// hash member in one canonical object, and returns that line and the body
// the hash is computed over: the same object without the hash member.
// hashAt is the offset of hash's first hex digit in line.
func canonicalLine(m map[string]any, hash string) (line, body []byte, hashAt int, err error) {
	keys := make([]string, 0, len(m)+1)
	for k := range m {
		keys = append(keys, k)
	}
	keys = append(keys, fieldHash)
	sort.Strings(keys)
	line = append(make([]byte, 0, 512), '{')
	start, end := -1, -1 // the hash member, with the comma that joins it
	for i, k := range keys {
		if i > 0 {
			line = append(line, ',')
		}
		if k == fieldHash {
			start = len(line)
			if i > 0 {
				start--
			}
			line = appendString(line, k)
			line = append(line, ':')
			hashAt = len(line) + 1
			line = appendString(line, hash)
			end = len(line)
			if i == 0 && len(keys) > 1 {
				end++ // the comma after it
			}
			continue
		}
		line = appendString(line, k)
		line = append(line, ':')
		if err := appendCanonicalTo(&line, m[k]); err != nil {
			return nil, nil, 0, err
		}
	}
	line = append(line, '}')
	body = make([]byte, 0, len(line)-(end-start))
	body = append(append(body, line[:start]...), line[end:]...)
	return line, body, hashAt, nil
}

// ParseRecord parses one line of the log (without its newline) and checks
// that it is well formed, that it is byte for byte the canonical encoding
// of the record it decodes to, and that its hash matches its content. It
// does not check the chain (seq and prev against the previous record);
// Verify does. The returned error says what is wrong, for a person to
// read; for a non-canonical line or a hash mismatch the record is returned
// filled in, so that readers can still show it.
func ParseRecord(line []byte) (Record, error) {
	if len(line) > MaxRecordSize {
		return Record{}, fmt.Errorf("audit: line is longer than %d bytes", MaxRecordSize)
	}
	m, err := decodeObject(line)
	if err != nil {
		return Record{}, fmt.Errorf("audit: not a JSON object: %v", err)
	}
	var rec Record
	v, ok := m[fieldV].(json.Number)
	if !ok {
		return Record{}, errors.New("audit: no format version (v)")
	}
	if v.String() != strconv.Itoa(FormatVersion) {
		return Record{}, fmt.Errorf("audit: unknown format version %s", v)
	}
	rec.V = FormatVersion
	seq, ok := m[fieldSeq].(json.Number)
	if !ok || !isCanonicalInt(seq.String()) || seq.String()[0] == '-' || seq.String() == "0" {
		return Record{}, errors.New("audit: seq is not a positive integer")
	}
	rec.Seq, _ = strconv.ParseUint(seq.String(), 10, 64)
	ts, ok := m[fieldTime].(string)
	if !ok {
		return rec, errors.New("audit: no time")
	}
	if rec.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return rec, fmt.Errorf("audit: bad time: %v", err)
	}
	if rec.Event, ok = m[fieldEvent].(string); !ok || rec.Event == "" {
		return rec, errors.New("audit: no event")
	}
	if rec.Prev, ok = m[fieldPrev].(string); !ok || !isHexHash(rec.Prev) {
		return rec, errors.New("audit: prev is not a SHA-256 hex hash")
	}
	if rec.Hash, ok = m[fieldHash].(string); !ok || !isHexHash(rec.Hash) {
		return rec, errors.New("audit: hash is not a SHA-256 hex hash")
	}
	for k := range reserved {
		delete(m, k)
	}
	rec.Fields = m
	rec.Raw = line
	// The line must be exactly what the writer would write for the record
	// it decodes to: encoding/json keeps the last of duplicated keys and
	// skips whitespace, so without this check a line could show a reader
	// (jq, a person, another decoder) something other than what was hashed.
	want, body, _, err := canonicalLine(recordMap(&rec), rec.Hash)
	if err != nil {
		return rec, fmt.Errorf("audit: not canonical: %v", err)
	}
	sum := chainHash(rec.Prev, body)
	if !bytes.Equal(want, line) {
		// Returned with the record filled in, like a hash mismatch.
		return rec, &notCanonicalError{what: describeNonCanonical(line, want)}
	}
	if sum != rec.Hash {
		// Returned with the record filled in: Query still shows it, Verify
		// reports it.
		return rec, errHashMismatch
	}
	return rec, nil
}

var errHashMismatch = errors.New("audit: hash mismatch (record edited)")

// notCanonicalError is a well-formed record whose line is not the
// canonical encoding of the record it decodes to.
type notCanonicalError struct{ what string }

func (e *notCanonicalError) Error() string {
	return "audit: not the canonical encoding of its record (line edited): " + e.what
}

// wholeRecord reports whether ParseRecord's error still leaves a whole
// record: none, a hash mismatch or a non-canonical line. Readers show such
// records; Verify reports them.
func wholeRecord(err error) bool {
	var nc *notCanonicalError
	return err == nil || errors.Is(err, errHashMismatch) || errors.As(err, &nc)
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
