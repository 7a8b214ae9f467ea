package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Fields are an event's fields already in canonical form, built without
// maps or reflection: the agent writes one record per signature and uses
// this for those (cert.used, upstream.used). Each value is encoded as it is
// added, exactly as Append would encode the same value passed in a map, so
// a record written with AppendFields is byte for byte the record Append
// writes for the equivalent map (TestFieldsEncodeLikeAppend).
//
// Keys may be added in any order; the encoder sorts them. A reserved name,
// a key added twice, a key that is not valid UTF-8 or an integer beyond
// ±2^53-1 makes AppendFields fail, as Append fails for the same map.
//
// A Fields is not safe for concurrent use and must not be changed after it
// was passed to AppendFields.
type Fields struct {
	buf []byte   // the members' encodings, each `"key":value`, in the order added
	mem []member // one per member, in the order added
	err error    // the first invalid field
	arr [24]member
}

type member struct {
	key        string
	start, end int // buf[start:end] is `"key":value`
}

// NewFields returns an empty Fields with room for about size bytes of
// encoded fields.
func NewFields(size int) *Fields {
	f := &Fields{buf: make([]byte, 0, size)}
	f.mem = f.arr[:0]
	return f
}

func (f *Fields) begin(key string) int {
	if f.mem == nil {
		f.mem = f.arr[:0]
	}
	start := len(f.buf)
	switch {
	case f.err != nil:
	case reserved[key]:
		f.err = fmt.Errorf("audit: field name %q is reserved", key)
	case !utf8.ValidString(key):
		f.err = fmt.Errorf("audit: field name %q is not valid UTF-8", key)
	default:
		for _, m := range f.mem {
			if m.key == key {
				f.err = fmt.Errorf("audit: field %q given twice", key)
				break
			}
		}
	}
	f.buf = appendString(f.buf, key)
	f.buf = append(f.buf, ':')
	return start
}

func (f *Fields) end(key string, start int) {
	f.mem = append(f.mem, member{key: key, start: start, end: len(f.buf)})
}

// String adds a string field.
func (f *Fields) String(key, value string) {
	s := f.begin(key)
	f.buf = appendString(f.buf, value)
	f.end(key, s)
}

// Bool adds a boolean field.
func (f *Fields) Bool(key string, value bool) {
	s := f.begin(key)
	f.buf = strconv.AppendBool(f.buf, value)
	f.end(key, s)
}

// Int adds an integer field; its magnitude must be at most 2^53-1 (pass
// larger numbers, like a decimal certificate serial, as strings).
func (f *Fields) Int(key string, value int64) {
	s := f.begin(key)
	if (value > maxSafeInt || value < -maxSafeInt) && f.err == nil {
		f.err = fmt.Errorf("audit: number %d is not an integer within ±2^53; pass it as a string or an integer", value)
	}
	f.buf = strconv.AppendInt(f.buf, value, 10)
	f.end(key, s)
}

// Strings adds an array of strings.
func (f *Fields) Strings(key string, values []string) {
	s := f.begin(key)
	f.buf = append(f.buf, '[')
	for i, v := range values {
		if i > 0 {
			f.buf = append(f.buf, ',')
		}
		f.buf = appendString(f.buf, v)
	}
	f.buf = append(f.buf, ']')
	f.end(key, s)
}

// Object adds a nested object made with NewObject.
func (f *Fields) Object(key string, o Object) {
	s := f.begin(key)
	if o.err != nil && f.err == nil {
		f.err = o.err
	}
	if o.enc == nil {
		f.buf = append(f.buf, "{}"...)
	} else {
		f.buf = append(f.buf, o.enc...)
	}
	f.end(key, s)
}

// Err is the first invalid field added, if any.
func (f *Fields) Err() error { return f.err }

// Len is the number of fields.
func (f *Fields) Len() int { return len(f.mem) }

// Map returns the fields as Record.Fields holds them after a round trip
// through the log (strings, json.Number, bool, []any, map[string]any), for
// recorders that take maps.
func (f *Fields) Map() map[string]any {
	obj, _ := f.appendObject(nil)
	m, err := decodeObject(obj)
	if err != nil {
		return map[string]any{}
	}
	return m
}

// sorted returns the member indexes in canonical key order.
func (f *Fields) sorted(dst []int) []int {
	dst = dst[:0]
	for i := range f.mem {
		// Insertion sort: records have a dozen fields, usually added
		// almost in order.
		j := len(dst)
		dst = append(dst, i)
		for ; j > 0 && f.mem[dst[j-1]].key > f.mem[i].key; j-- {
			dst[j] = dst[j-1]
		}
		dst[j] = i
	}
	return dst
}

// appendObject appends the canonical encoding of the fields as one object.
func (f *Fields) appendObject(b []byte) ([]byte, error) {
	var idx [32]int
	order := f.sorted(idx[:0])
	b = append(b, '{')
	for i, k := range order {
		if i > 0 {
			b = append(b, ',')
		}
		m := f.mem[k]
		b = append(b, f.buf[m.start:m.end]...)
	}
	return append(b, '}'), f.err
}

// Object is a nested object in canonical form, built once and added to
// any number of Fields (for example the caller block of a connection,
// which is the same for every record the connection makes). It is
// immutable and safe for concurrent use.
type Object struct {
	enc []byte
	err error
}

// NewObject finishes f into an Object; f is not used afterwards.
func NewObject(f *Fields) Object {
	enc, err := f.appendObject(make([]byte, 0, len(f.buf)+len(f.mem)+2))
	return Object{enc: enc, err: err}
}

// envelope are the reserved members of a record but "hash", in canonical
// order.
var envelope = [...]string{fieldEvent, fieldPrev, fieldSeq, fieldTime, fieldV}

// encodeFieldsRecord is encodeRecord for Fields: it writes the envelope
// and the fields, merged in key order, straight into the line, hashes it,
// and inserts "hash" in its place.
func encodeFieldsRecord(rec *Record, f *Fields) error {
	if f.err != nil {
		return f.err
	}
	if n := len(f.buf) + len(f.mem) + 1; n > maxFieldsSize {
		return fmt.Errorf("audit: fields are %d bytes, more than the %d allowed", n, maxFieldsSize)
	}
	var idx [32]int
	order := f.sorted(idx[:0])
	b := make([]byte, 0, len(f.buf)+len(f.mem)+len(rec.Event)+len(rec.Prev)+2*64+96)
	b = append(b, '{')
	hashAt := -1
	for e, i, n := 0, 0, 0; e < len(envelope) || i < len(order); n++ {
		field := i < len(order) && (e == len(envelope) || f.mem[order[i]].key < envelope[e])
		key := ""
		if field {
			key = f.mem[order[i]].key
		} else {
			key = envelope[e]
		}
		if hashAt < 0 && key > fieldHash {
			hashAt = len(b)
		}
		if n > 0 {
			b = append(b, ',')
		}
		if field {
			m := f.mem[order[i]]
			b = append(b, f.buf[m.start:m.end]...)
			i++
			continue
		}
		b = appendString(b, key)
		b = append(b, ':')
		switch key {
		case fieldEvent:
			b = appendString(b, rec.Event)
		case fieldPrev:
			b = appendString(b, rec.Prev)
		case fieldSeq:
			b = strconv.AppendUint(b, rec.Seq, 10)
		case fieldTime:
			// The layout has nothing to escape.
			b = append(b, '"')
			b = rec.Time.UTC().AppendFormat(b, timeLayout)
			b = append(b, '"')
		case fieldV:
			b = strconv.AppendInt(b, int64(rec.V), 10)
		}
		e++
	}
	if hashAt < 0 {
		hashAt = len(b)
	}
	b = append(b, '}')
	if rec.Seq > maxSafeInt {
		return errors.New("audit: seq is not an integer within ±2^53")
	}

	h := sha256.New()
	h.Write([]byte(rec.Prev))
	h.Write(b)
	var sum [sha256.Size]byte
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], h.Sum(sum[:0]))
	rec.Hash = string(hexSum[:])

	// "event" always precedes "hash", so the member goes in with a comma
	// before it.
	const hashMember = `,"hash":"` // + 64 hex + `"`
	line := make([]byte, 0, len(b)+len(hashMember)+len(hexSum)+1)
	line = append(line, b[:hashAt]...)
	line = append(line, hashMember...)
	line = append(line, hexSum[:]...)
	line = append(line, '"')
	line = append(line, b[hashAt:]...)
	if len(line) > MaxRecordSize {
		return fmt.Errorf("audit: %s record is %d bytes, more than the %d allowed", rec.Event, len(line), MaxRecordSize)
	}
	rec.Raw = line
	return nil
}
