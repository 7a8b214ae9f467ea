package yamlfile

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	Name string            `yaml:"name"`
	Tags []string          `yaml:"tags"`
	Ext  map[string]string `yaml:"ext"`
	On   *bool             `yaml:"on"`
}

type outer struct {
	Items []inner `yaml:"items"`
	One   *inner  `yaml:"one"`
	Skip  string  `yaml:"-"`
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	src := "items:\n  - name: a\n    nmae: b\n    tags: x\n  - name: [1]\n    ext: [1]\none:\n  on: perhaps\nskip: 1\n"
	var o outer
	_, errs := Decode("f.yaml", []byte(src), &o)
	want := []string{
		`f.yaml:3:5: unknown field "nmae" in inner (did you mean "name"?)`,
		`f.yaml:4:11: field "tags" in inner: expected a list, found "x"`,
		`f.yaml:5:11: field "name" in inner: expected a single value, found a list`,
		`f.yaml:6:10: field "ext" in inner: expected a mapping (key: value lines), found a list`,
		`f.yaml:8:7: field "on" in inner: expected true or false, found "perhaps"`,
		`f.yaml:9:1: unknown field "skip" in outer (expected one of: items, one)`,
	}
	if got := errs.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if len(o.Items) != 2 || o.Items[0].Name != "a" || o.One == nil {
		t.Errorf("partial decode %+v", o)
	}
}

func TestDecodeAliasBudget(t *testing.T) {
	src := "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		prev := string(rune(n[0] - 1))
		src += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
	}
	type big struct {
		A, B, C, D, E, F, G [][][][][][][]string
	}
	var v big
	_, errs := Decode("f.yaml", []byte(src), &v)
	if errs.Err() == nil {
		t.Fatal("alias bomb decoded without error")
	}
}

func TestFind(t *testing.T) {
	var o outer
	root, _ := Decode("f.yaml", []byte("items:\n  - name: a\n  - name: b\n"), &o)
	if n := Find(root, "items", 1, "name"); n == nil || n.Value != "b" || n.Line != 3 {
		t.Errorf("Find = %+v", n)
	}
	if Find(root, "items", 5) != nil || Find(root, "nope") != nil {
		t.Error("Find of a missing path")
	}
}

// TestSyntaxErrorsArePositioned: a syntax error names the line and column
// of the offending character, not the line where the enclosing block
// began (yaml.v3 reports that, 0-based for parser errors, with no column).
func TestSyntaxErrorsArePositioned(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"routes:\n  - name: a\n   hosts: [a]\n", "f.yaml:3:4: invalid YAML: did not find expected '-' indicator"},
		{"a:\n  b: c\n d: e\n", "f.yaml:3:2: invalid YAML: did not find expected key"},
		{"a: b\n\tc: d\n", "f.yaml:2:1: invalid YAML: found a tab character that violates indentation"},
		{"routes:\n  - name: a\n    hosts: x: y\n", "f.yaml:3:13: invalid YAML: mapping values are not allowed in this context"},
		{"a: b\nc\nd: e\n", "f.yaml:2:1: invalid YAML: could not find expected ':'"},
		{"# é\nname: \"é\" x: y\n", "f.yaml:2:12: invalid YAML: mapping values are not allowed in this context"}, // columns count characters,
	} {
		var o inner
		_, errs := Decode("f.yaml", []byte(tc.src), &o)
		if got := errs.Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q:\n got %s\nwant %s", tc.src, got, tc.want)
		}
	}
}

// TestKeyPaths: with KeyPaths, problems are named by their place in the
// file, never by a Go type; a yaml.Node field keeps its subtree, and
// DecodeNode reports positions in the original file.
func TestKeyPaths(t *testing.T) {
	type sub struct {
		Timeout time.Duration `yaml:"timeout"`
		Address string        `yaml:"address"`
	}
	type section struct {
		Kind string    `yaml:"kind"`
		Deep yaml.Node `yaml:"deep"`
	}
	type top struct {
		Section section `yaml:"section"`
		Items   []inner `yaml:"items"`
		Count   int     `yaml:"count"`
	}
	src := "section:\n  kidn: x\n  deep:\n    timeout: 5x\n    adress: a\nitems:\n  - name: a\n    on: maybe\ncount: many\nextra: 1\n"
	var v top
	_, errs := DecodeWith("agent.yaml", []byte(src), &v, Options{KeyPaths: true})
	want := []string{
		`agent.yaml:2:3: unknown field "kidn" under section (did you mean "kind"?)`,
		`agent.yaml:8:9: items[0].on: expected true or false, found "maybe"`,
		`agent.yaml:9:8: count: expected a whole number, found "many"`,
		`agent.yaml:10:1: unknown field "extra" at the top level (expected one of: count, items, section)`,
	}
	if got := errs.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var s sub
	errs = DecodeNode("agent.yaml", &v.Section.Deep, &s, Options{KeyPaths: true, Prefix: "section.deep"})
	want = []string{
		`agent.yaml:4:14: section.deep.timeout: invalid duration "5x" (use a form like 5m or 1h)`,
		`agent.yaml:5:5: unknown field "adress" under section.deep (did you mean "address"?)`,
	}
	if got := errs.Error(); got != strings.Join(want, "\n") {
		t.Errorf("DecodeNode got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
