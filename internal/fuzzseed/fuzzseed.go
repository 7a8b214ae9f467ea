// Package fuzzseed reads and writes Go fuzz corpus files holding one
// []byte, the seeds recorded from real ssh, ssh-add and warden-agent
// traffic (TestRecordSeeds in cmd/warden-agent, `make fuzz-seeds`).
package fuzzseed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// header opens every corpus file (Go's internal/fuzz/encoding.go).
const header = "go test fuzz v1"

// Encode returns the corpus file for one []byte input.
func Encode(v []byte) []byte {
	return fmt.Appendf(nil, "%s\n[]byte(%q)\n", header, v)
}

// Decode returns the input of a corpus file written by Encode (or by the
// fuzzer for a target of one []byte).
func Decode(data []byte) ([]byte, error) {
	first, rest, _ := strings.Cut(string(data), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
	if first != header || !ok || !strings.HasSuffix(v, ")") {
		return nil, errors.New("not a corpus file of one []byte")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// Recorded returns the inputs of a target's corpus files in
// testdata/fuzz/<target> whose names start with prefix, by file name. It
// fails the test when there are none.
func Recorded(t testing.TB, target, prefix string) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("recorded seeds: %v (make fuzz-seeds)", err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if out[e.Name()], err = Decode(data); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no recorded seeds %s* in %s (make fuzz-seeds)", prefix, dir)
	}
	return out
}
