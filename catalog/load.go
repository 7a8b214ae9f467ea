package catalog

import (
	"fmt"
	"io"
	"os"

	"github.com/netkingdom/ops-warden/internal/yamlfile"
)

// MaxFileSize bounds a catalog file; larger files are refused.
const MaxFileSize = yamlfile.MaxSize

// Load reads, parses and validates a catalog file. Errors name the file,
// line and column and what was expected, e.g.
//
//	catalog.yaml:12:5: unknown field "principle" in route (did you mean "principal"?)
func Load(path string) (*Catalog, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// readFile reads at most MaxFileSize+1 bytes so an oversized file is
// detected without reading all of it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	return data, nil
}

// Parse parses and validates catalog content; file names it in errors.
// The problems that make a catalog unusable (syntax, unknown fields, wrong
// types, missing or invalid required fields, duplicate names) are errors;
// the rest of what lint reports (shadowed routes, incomplete lanes) is
// not, so that a catalog in force is never refused for them on reload.
func Parse(file string, data []byte) (*Catalog, error) {
	c, findings := parse(file, data)
	var errs yamlfile.Errors
	for _, f := range findings {
		if f.blocking {
			errs = append(errs, &yamlfile.Error{File: f.File, Line: f.Line, Col: f.Col, Msg: f.Message})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if err := c.Prepare(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.path = file
	return c, nil
}
