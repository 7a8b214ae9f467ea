package yamlfile

import (
	"strings"
	"testing"
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
		`f.yaml:8:7: field "on" in inner: cannot unmarshal !!str ` + "`perhaps`" + ` into bool`,
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
