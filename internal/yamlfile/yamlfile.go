// Package yamlfile decodes the catalog and policy files strictly: every
// unknown or repeated field, every value of the wrong kind is reported with
// the file, line and column where it stands and what was expected, and
// decoding goes on so that one run of lint reports them all.
//
// yaml.v3's own KnownFields mode stops at the first unknown field and
// reports only a line; a person fixing a shared file wants the column and
// a suggestion, so the mapping of YAML keys onto struct fields is done
// here and only leaf values are handed to yaml.v3.
package yamlfile

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSize bounds a catalog or policy file. Both are small, hand-written
// files; anything larger is a mistake or an attack on the parser.
const MaxSize = 1 << 20

// maxNodes bounds how many nodes one decode visits, so that YAML aliases
// ("billion laughs") cannot expand a small file into an enormous tree.
const maxNodes = 200_000

// Error is one problem at a position in a file. Line and Col are 1-based;
// Col is 0 when the YAML parser reported only a line.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

// Error formats the problem as file:line:col: message.
func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem a decode found, in file order.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Err returns es as an error, or nil when it is empty (a nil Errors in an
// error interface would not compare equal to nil).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// At makes an Error positioned at n (or at the top of the file if n is nil).
func At(file string, n *yaml.Node, format string, args ...any) *Error {
	e := &Error{File: file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	return e
}

// ErrEmpty is reported for a file with no YAML document in it. An empty
// file is refused rather than read as "no routes" or "no rules" because a
// reload that catches an editor between truncating and writing would
// otherwise replace a good file with nothing.
var ErrEmpty = errors.New("file is empty")

// Decode parses data (named file in messages) into out, a pointer to a
// struct whose fields carry yaml tags. It returns the document's root
// mapping node, for callers that want positions of their own, and every
// problem found. out is filled as far as possible even when there are
// problems.
func Decode(file string, data []byte, out any) (*yaml.Node, Errors) {
	return DecodeWith(file, data, out, Options{})
}

// Options change how Decode names the place of a problem.
type Options struct {
	// KeyPaths names it by its key path in the file ("signer.openbao:
	// unknown field", "routes[0].ttl: invalid duration") instead of the
	// kind of thing it is in ("in route"): for files whose structure is
	// a tree of sections, such as agent.yaml.
	KeyPaths bool
	// Prefix is the key path of the node DecodeNode decodes.
	Prefix string
}

// DecodeNode decodes a node of an already parsed file (a section handed
// on to another package, such as agent.yaml's signer.openbao), with
// positions in that file.
func DecodeNode(file string, n *yaml.Node, out any, opts Options) Errors {
	d := &decoder{file: file, paths: opts.KeyPaths}
	d.value(n, reflect.ValueOf(out).Elem(), "", opts.Prefix)
	return d.errs
}

// DecodeWith is Decode with options.
func DecodeWith(file string, data []byte, out any, opts Options) (*yaml.Node, Errors) {
	if len(data) > MaxSize {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", MaxSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: file, Msg: ErrEmpty.Error()}}
		}
		return nil, Errors{syntaxError(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{At(file, &extra, "a second YAML document (---) is not allowed; keep one document per file")}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(file, data, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, Errors{{File: file, Msg: ErrEmpty.Error()}}
		}
		root = root.Content[0]
	}
	d := &decoder{file: file, paths: opts.KeyPaths}
	d.value(root, reflect.ValueOf(out).Elem(), "", opts.Prefix)
	return root, d.errs
}

// yaml.v3 reports syntax errors as "yaml: line N: message", where N is
// often the line where the enclosing block began (its context mark, and
// 0-based at that) and never with a column; the parser's problem mark is
// not exported.
// Compiled on first use: every warden-agent run (each hint ssh runs)
// would pay for them at init.
var lineRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// syntaxError positions a syntax error where the parser found it.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE().FindStringSubmatch(err.Error()); m != nil {
		msg = m[2]
	}
	e := &Error{File: file, Msg: "invalid YAML: " + msg}
	e.Line, e.Col = locateSyntaxError(data, err.Error())
	return e
}

// parseError is the error yaml.v3 gives for data, or "".
func parseError(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return ""
		}
		return err.Error()
	}
}

// locateSyntaxError finds where the parser stops: the shortest prefix of
// data that already gives the same error ends at the offending character
// (the parser reads forward and fails as soon as it sees it). A binary
// search over prefixes costs about 20 parses of at most MaxSize bytes.
// It returns the 1-based line and column (in characters) of the last byte
// of that prefix.
func locateSyntaxError(data []byte, want string) (line, col int) {
	lo, hi := 0, len(data)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if parseError(data[:mid]) == want {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	end := lo - 1 // index of the last byte of the shortest failing prefix
	if end < 0 {
		return 1, 1
	}
	// Back up to the start of a multi-byte character.
	for end > 0 && !utf8.RuneStart(data[end]) {
		end--
	}
	lineStart := bytes.LastIndexByte(data[:end], '\n') + 1
	line = bytes.Count(data[:lineStart], []byte{'\n'}) + 1
	col = utf8.RuneCount(data[lineStart:end]) + 1
	return line, col
}

type decoder struct {
	file  string
	errs  Errors
	nodes int
	paths bool // Options.KeyPaths
}

func (d *decoder) fail(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, At(d.file, n, format, args...))
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

// value decodes n into v. in names the enclosing thing ("field \"ttl\"
// in route") for messages; path is n's key path ("routes[0].ttl").
func (d *decoder) value(n *yaml.Node, v reflect.Value, in, path string) {
	if d.paths {
		in = path
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.fail(n, "document too large: more than %d nodes (check for runaway aliases)", maxNodes)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "field:" with no value leaves the zero value
	}
	t := v.Type()
	if t == nodeType {
		v.Set(reflect.ValueOf(*n)) // decoded later by its owner (DecodeNode)
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		d.leaf(n, v, in)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Struct {
			if v.IsNil() {
				v.Set(reflect.New(t.Elem()))
			}
			d.value(n, v.Elem(), in, path)
			return
		}
		d.leaf(n, v, in)
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, "%s: expected a list, found %s", what(in), describe(n))
			return
		}
		if t.Elem().Kind() != reflect.Struct {
			d.leaf(n, v, in)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), "", fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, "%s: expected a mapping (key: value lines), found %s", what(in), describe(n))
			return
		}
		d.leaf(n, v, in)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, "%s: expected a single value, found %s", what(in), describe(n))
			return
		}
		d.leaf(n, v, in)
	}
}

// leaf hands n to yaml.v3 and positions its error.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, in string) {
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		d.fail(n, "%s: %s", what(in), cleanTypeError(err))
		return
	}
	v.Set(p.Elem())
}

// cleanTypeError drops yaml.v3's "unmarshal errors: line N:" framing (the
// position is ours) and says what was expected in the words of YAML, not
// Go's types ("cannot unmarshal !!str `maybe` into bool").
func cleanTypeError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "line ") && i > 0 {
			msg = msg[i+2:]
		}
		return plainTypeError(msg)
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

var typeErrRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
})

// plainTypeError rewrites one of yaml.v3's type errors.
func plainTypeError(msg string) string {
	m := typeErrRE().FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	tag, value, goType := m[1], m[2], m[3]
	found := fmt.Sprintf("%q", value)
	switch tag {
	case "map":
		found = "a mapping"
	case "seq":
		found = "a list"
	}
	var want string
	switch {
	case goType == "time.Duration":
		if tag == "map" || tag == "seq" {
			return "expected a duration such as 5m or 1h, found " + found
		}
		return fmt.Sprintf("invalid duration %q (use a form like 5m or 1h)", value)
	case goType == "bool":
		want = "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		want = "a whole number"
	case strings.HasPrefix(goType, "float"):
		want = "a number"
	case goType == "string":
		want = "a single value"
	case strings.HasPrefix(goType, "[]"):
		want = "a list"
	case strings.HasPrefix(goType, "map["):
		want = "a mapping (key: value lines)"
	default:
		want = "a different kind of value"
	}
	return "expected " + want + ", found " + found
}

func what(in string) string {
	if in == "" {
		return "value"
	}
	return in
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// mapping decodes a YAML mapping into a struct, field by yaml tag.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	kind := strings.ToLower(v.Type().Name())
	// "in route" or, with key paths, "under signer" / "at the top level".
	in, at := "in "+kind, kind
	if d.paths {
		in, at = "under "+path, path
		if path == "" {
			in, at = "at the top level", "the file"
		}
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, "%s: expected a mapping (key: value lines), found %s", at, describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, "%s: expected a field name, found %s", at, describe(k))
			continue
		}
		if k.Value == "<<" {
			d.fail(k, "%s: merge keys (<<) are not supported; write the fields out", at)
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, "unknown field %q %s%s", k.Value, in, suggest(k.Value, fields))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, "duplicate field %q %s (first at line %d)", k.Value, in, first.Line)
			continue
		}
		seen[k.Value] = k
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		d.value(val, v.Field(idx), fmt.Sprintf("field %q in %s", k.Value, kind), sub)
	}
}

// fieldsOf maps yaml names to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	return m
}

// suggest names the closest known field, or lists them all.
func suggest(got string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", 3
	for _, name := range names {
		if dist := levenshtein(strings.ToLower(got), name); dist < bestD {
			best, bestD = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (expected one of: " + strings.Join(names, ", ") + ")"
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Find walks from n along keys (string) and sequence indexes (int) and
// returns the node there, or nil. Lint uses it to position findings.
func Find(n *yaml.Node, path ...any) *yaml.Node {
	for _, step := range path {
		if n == nil {
			return nil
		}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		switch s := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return nil
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s {
					next = n.Content[i+1]
					break
				}
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || s < 0 || s >= len(n.Content) {
				return nil
			}
			n = n.Content[s]
		default:
			return nil
		}
	}
	return n
}
