package audit

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// WriteTable writes recs as a compact table, in the order given (Query
// returns oldest first, so the newest is last): time, event, principal@host,
// serial, caller, result. Values come from a file anyone with the user's
// rights can edit, so control characters are replaced before they reach a
// terminal.
func WriteTable(w io.Writer, recs []Record) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	for _, r := range recs {
		fmt.Fprintln(tw, strings.Join(row(r), "\t"))
	}
	return tw.Flush()
}

var tableHeader = []string{"TIME", "EVENT", "PRINCIPAL@HOST", "SERIAL", "CALLER", "RESULT"}

// row renders the cells of one table row.
func row(r Record) []string {
	return []string{
		r.Time.UTC().Format("2006-01-02T15:04:05Z"),
		cell(r.Event, 24),
		cell(who(r), 40),
		cell(r.FieldString("serial"), 20),
		cell(callerCell(r), 40),
		cell(resultCell(r), 60),
	}
}

// RowWriter writes records as table rows one at a time, for --follow,
// where WriteTable cannot wait for every row to align the columns: the
// columns have fixed widths instead, and the header comes before the first
// row.
type RowWriter struct {
	w      io.Writer
	header bool
}

// NewRowWriter returns a RowWriter writing to w.
func NewRowWriter(w io.Writer) *RowWriter { return &RowWriter{w: w} }

// Write writes one row, preceded by the header the first time.
func (rw *RowWriter) Write(r Record) error {
	line := func(c []string) string {
		// The widths are row's cell limits, so every row lines up.
		return fmt.Sprintf("%-20s  %-24s  %-40s  %-20s  %-40s  %s\n", c[0], c[1], c[2], c[3], c[4], c[5])
	}
	if !rw.header {
		rw.header = true
		if _, err := io.WriteString(rw.w, line(tableHeader)); err != nil {
			return err
		}
	}
	_, err := io.WriteString(rw.w, line(row(r)))
	return err
}

// WriteJSON writes recs as they are in the file, one JSON object per line.
func WriteJSON(w io.Writer, recs []Record) error {
	for _, r := range recs {
		if _, err := w.Write(append(r.Raw[:len(r.Raw):len(r.Raw)], '\n')); err != nil {
			return err
		}
	}
	return nil
}

// who renders principal@host from whichever fields the event has.
func who(r Record) string {
	p := r.FieldString("principal")
	if p == "" {
		if ps, ok := r.Fields["principals"].([]any); ok {
			var names []string
			for _, e := range ps {
				if s, ok := e.(string); ok {
					names = append(names, s)
				}
			}
			p = strings.Join(names, ",")
		} else {
			p = r.FieldString("principals")
		}
	}
	if p == "" {
		p = r.FieldString("user")
	}
	h := r.FieldString("host")
	if h == "" {
		h = r.FieldString("target_host")
	}
	switch {
	case p != "" && h != "":
		return p + "@" + h
	case h != "":
		return "@" + h
	}
	return p
}

func callerCell(r Record) string {
	switch c := r.Fields["caller"].(type) {
	case string:
		return c
	case map[string]any:
		if s, ok := c["chain"].(string); ok && s != "" {
			return s
		}
		exe, _ := c["exe"].(string)
		return fmt.Sprintf("%s(%v)", exe, c["pid"])
	}
	return ""
}

// resultCell says how the event ended: its result field, else the reason
// of a denial or the error of a failure.
func resultCell(r Record) string {
	if s := r.FieldString("result"); s != "" {
		return s
	}
	if s := r.FieldString("reason"); s != "" {
		return "denied: " + s
	}
	if s := r.FieldString("error"); s != "" {
		return "error: " + s
	}
	return ""
}

// cell makes s safe and short for one table cell: no control or tab
// characters, at most max runes.
func cell(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	if n := []rune(s); len(n) > max {
		s = string(n[:max-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

// ParseTime parses a --since/--until value: a duration before now ("2h",
// "30m", "7d") or a time ("2026-11-30T21:00:00Z", "2026-11-30"). An empty
// string is the zero time (no bound).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("audit: %q is neither a duration (2h, 30m, 7d) nor a time (2026-11-30T21:00:00Z or 2026-11-30)", s)
}
