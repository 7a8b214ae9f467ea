package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// describeNonCanonical says, for a person, how line differs from want, the
// canonical encoding of the record it decodes to. Both are at most
// MaxRecordSize bytes and line is one JSON object (decodeObject accepted
// it).
func describeNonCanonical(line, want []byte) string {
	dup, before, after := keyProblems(line)
	if dup != "" {
		return fmt.Sprintf("key %s appears twice", quoteShort(dup))
	}
	i := 0
	for i < len(line) && i < len(want) && line[i] == want[i] {
		i++
	}
	switch {
	case i == len(want):
		return fmt.Sprintf("%d extra bytes at the end: %s", len(line)-i, snippet(line[i:]))
	case i < len(line) && isJSONSpace(line[i]):
		return fmt.Sprintf("whitespace at byte %d", i+1)
	case before != "":
		return fmt.Sprintf("key %s comes before %s, not in sorted order", quoteShort(before), quoteShort(after))
	}
	return fmt.Sprintf("at byte %d the line has %s where the canonical encoding has %s (an escape, number or time written differently)",
		i+1, snippet(line[i:]), snippet(want[min(i, len(want)):]))
}

// keyProblems walks the objects of line and returns the first key that
// appears twice in one object, and the first pair of keys out of order.
func keyProblems(line []byte) (dup, before, after string) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	// The recursion is bounded by encoding/json's own nesting limit,
	// which decodeObject already enforced on this line.
	var walk func() bool
	walk = func() bool {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := make(map[string]bool)
			last := ""
			for d.More() {
				kt, err := d.Token()
				key, ok := kt.(string)
				if err != nil || !ok {
					return false
				}
				if seen[key] && dup == "" {
					dup = key
				}
				if len(seen) > 0 && key < last && before == "" {
					before, after = last, key
				}
				seen[key], last = true, key
				if !walk() {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		case json.Delim('['):
			for d.More() {
				if !walk() {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		}
		return true
	}
	walk()
	return dup, before, after
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// snippet quotes the first bytes of b for an error message, so that a
// hostile line cannot put control characters or megabytes in it.
func snippet(b []byte) string {
	const n = 16
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

func quoteShort(s string) string { return snippet([]byte(s)) }
