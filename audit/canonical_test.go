package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/netkingdom/ops-warden/internal/fuzzseed"
)

// TestVerifyNonCanonical: a line that decodes to a record whose hash
// matches, but is not the canonical encoding of that record, fails Verify
// with a reason naming the line, the seq and what differs. Each edit keeps
// the hash valid, as an attacker would (issue 12: a duplicated key placed
// first verified ok).
func TestVerifyNonCanonical(t *testing.T) {
	path, lines := writeLog(t, 6) // lines[i] is seq i+1
	l, err := Open(Options{Path: path + "-x"})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, EventSignDenied, map[string]any{"reason": "café", "nested": map[string]any{"b": 1, "a": 2}})
	l.Close()
	special := strings.TrimSuffix(readLines(t, path+"-x")[0], "\n")
	line3 := strings.TrimSuffix(lines[2], "\n")
	for _, c := range []struct {
		name, base, line, reason string
	}{
		{"space after colon", line3, strings.Replace(line3, `"event":`, `"event": `, 1), "whitespace at byte 10"},
		{"space after comma", line3, strings.Replace(line3, `,"hash"`, `, "hash"`, 1), "whitespace at byte"},
		{"trailing space", line3, line3 + " ", `1 extra bytes at the end: " "`},
		{"carriage return", line3, line3 + "\r", `1 extra bytes at the end: "\r"`},
		{"leading space", line3, " " + line3, "whitespace at byte 1"},
		{"duplicate key placed first", line3, `{"event":"agent.start",` + line3[1:], `key "event" appears twice`},
		{"duplicate key placed last", line3, line3[:len(line3)-1] + `,"v":1}`, `key "v" appears twice`},
		{"keys reordered", line3, `{"v":1,` + strings.Replace(line3[1:], `,"v":1}`, "}", 1), `key "v" comes before "event"`},
		{"escaped slash", line3, strings.Replace(line3, `"alice"`, `"al\/ice"`, 1), `\\/`},
		{"nested keys reordered", special, strings.Replace(special, `{"a":2,"b":1}`, `{"b":1,"a":2}`, 1), `key "b" comes before "a"`},
		{"escaped non-ASCII", special, strings.Replace(special, "é", `\u00e9`, 1), `the line has "\\u00e9`},
		{"upper-case escape", special, strings.Replace(special, `"café"`, `"caf\u00E9"`, 1), `\\u00E9`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := mustParseAny(t, c.base)
			// The edit keeps the record's meaning: the hash still matches
			// what encoding/json decodes, so only the canonical check can
			// catch it.
			if edited := mustParseAny(t, c.line); edited.Hash != rec.Hash || edited.Seq != rec.Seq {
				t.Fatalf("the edit changed the record: %+v", edited)
			}
			target := path
			all := append([]string(nil), lines...)
			if c.base == special {
				target, all = path+"-x", []string{c.line + "\n"}
			} else {
				all[2] = c.line + "\n"
			}
			if err := os.WriteFile(target, []byte(strings.Join(all, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := Verify(target)
			if err != nil {
				t.Fatal(err)
			}
			wantLine := 3
			if target != path {
				wantLine = 1
			}
			prefix := fmt.Sprintf("line %d (seq %d) is not the canonical encoding of its record", wantLine, rec.Seq)
			if res.OK() || res.BrokenSeq != rec.Seq || !strings.HasPrefix(res.Reason, prefix) || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("Verify = seq %d %q\nwant seq %d %q … %q", res.BrokenSeq, res.Reason, rec.Seq, prefix, c.reason)
			}
			// Readers still show the record.
			recs, err := Query(target, Filter{})
			if err != nil || len(recs) != len(all) {
				t.Fatalf("Query: %d records, %v", len(recs), err)
			}
		})
	}
	// The untouched lines verify.
	os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)
	mustVerify(t, path, 6)
}

// mustParseAny parses a line that may be non-canonical and returns the
// record it decodes to.
func mustParseAny(t *testing.T, line string) Record {
	t.Helper()
	rec, err := ParseRecord([]byte(line))
	if !wholeRecord(err) || errors.Is(err, errHashMismatch) {
		t.Fatalf("%q: %v", line, err)
	}
	return rec
}

// hashPlaceholder in a fuzzed line stands for the hash an attacker would
// compute: SHA-256 over prev and the canonical encoding of what the line
// decodes to.
const hashPlaceholder = "@HASH@"

// FuzzVerifyCanonical: Verify never panics on an arbitrary line and never
// says ok for a line that is not canonical, even when the line carries the
// hash of the record it decodes to (what someone editing the file would
// write). The canonical check is re-done here independently: compact,
// keys strictly increasing in every object, strings escaped as the format
// says, integers only.
func FuzzVerifyCanonical(f *testing.F) {
	for _, line := range seedLog(f)[:1] {
		line = strings.TrimSuffix(line, "\n")
		rec, _ := ParseRecord([]byte(line))
		tmpl := strings.Replace(line, rec.Hash, hashPlaceholder, 1)
		f.Add(tmpl)
		f.Add(strings.Replace(tmpl, `"event":`, `"event": `, 1))
		f.Add(`{"event":"x",` + tmpl[1:])
		f.Add(tmpl + " ")
		f.Add(strings.Replace(tmpl, "v0.1.0", `v0\u002e1.0`, 1))
		f.Add(`{"v":1,` + strings.Replace(tmpl[1:], `,"v":1}`, "}", 1))
		f.Add(strings.Replace(tmpl, `"pid":100`, `"pid":100.0`, 1))
		f.Add(strings.Replace(tmpl, `Z"`, `+00:00"`, 1))
	}
	// Every real record of the recorded run (FuzzParseRecord's corpus),
	// its hash turned into the placeholder.
	for _, line := range fuzzseed.Recorded(f, "FuzzParseRecord", "audit-") {
		if rec, err := ParseRecord(line); err == nil {
			f.Add(strings.Replace(string(line), rec.Hash, hashPlaceholder, 1))
		}
	}
	f.Add("{}")
	f.Add(`{"hash":"` + hashPlaceholder + `"}`)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.Contains(line, "\n") || len(line) > MaxRecordSize {
			return
		}
		line = withAttackerHash(line)
		var res VerifyResult
		broken, err := verifyStream(strings.NewReader(line+"\n"), "audit.log", &res)
		if err != nil {
			t.Fatal(err)
		}
		if broken == res.OK() {
			t.Fatalf("broken %v but result %+v", broken, res)
		}
		if !res.OK() {
			return
		}
		if why := notCanonicalOracle([]byte(line)); why != "" {
			t.Fatalf("verify ok for a non-canonical line (%s): %q", why, line)
		}
	})
}

// withAttackerHash replaces the placeholder with the hash of the record the
// line decodes to, as encoding/json sees it.
func withAttackerHash(line string) string {
	if !strings.Contains(line, hashPlaceholder) {
		return line
	}
	m, err := decodeObject([]byte(strings.ReplaceAll(line, hashPlaceholder, ZeroHash)))
	if err != nil {
		return line
	}
	prev, _ := m[fieldPrev].(string)
	delete(m, fieldHash)
	body, err := canonical(m)
	if err != nil {
		return line
	}
	return strings.ReplaceAll(line, hashPlaceholder, chainHash(prev, body))
}

// notCanonicalOracle returns why line is not in the canonical form of
// docs/audit.md, or "" if it is. It shares no code with canonical().
func notCanonicalOracle(line []byte) string {
	if !json.Valid(line) {
		return "not JSON"
	}
	var compact bytes.Buffer
	if json.Compact(&compact, line) != nil || !bytes.Equal(compact.Bytes(), line) {
		return "whitespace"
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	type frame struct {
		object  bool
		lastKey *string
		wantKey bool
	}
	var stack []*frame
	// Byte offsets of tokens are not exposed for strings; re-encode each
	// string with the escaping rules and look for it at the decoder's
	// position.
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			break
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.wantKey
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = true
				}
				stack = append(stack, &frame{object: v == '{', wantKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			enc := oracleQuote(v)
			rest := bytes.TrimLeft(line[off:], ",:")
			if !bytes.HasPrefix(rest, []byte(enc)) {
				return "string escaped differently: " + enc
			}
			if !utf8.ValidString(v) {
				return "invalid UTF-8"
			}
			if isKey {
				if top.lastKey != nil && v <= *top.lastKey {
					return "keys not strictly increasing"
				}
				top.lastKey = &v
				top.wantKey = false
				continue
			}
		case json.Number:
			s := v.String()
			if strings.ContainsAny(s, ".eE+") || strings.HasPrefix(s, "-0") || len(s) > 1 && s[0] == '0' || len(strings.TrimPrefix(s, "-")) > 16 {
				return "number not a canonical integer"
			}
		}
		if top != nil && top.object {
			top.wantKey = true
		}
	}
	return ""
}

// oracleQuote escapes s as docs/audit.md says: only '"', '\\', the C0
// controls and U+007F, with \b \f \n \r \t short and the rest \u00xx.
func oracleQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestNestedHashKey: a field holding an object with its own "hash" member
// (even one equal to the zero hash) does not confuse the writer or the
// verifier, which place and strip only the record's own hash.
func TestNestedHashKey(t *testing.T) {
	l := openTest(t, Options{})
	mustAppend(t, l, EventSignDenied, map[string]any{"a": map[string]any{"hash": ZeroHash}, "b": []any{map[string]any{"hash": "x"}}})
	mustAppend(t, l, EventSignDenied, map[string]any{"a": map[string]any{"hash": ZeroHash}})
	mustVerify(t, l.Status().Path, 2)
}
