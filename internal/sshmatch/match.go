// Package sshmatch implements OpenSSH's pattern matching (match.c): the *
// and ? wildcards of match_pattern and the negatable, comma-separated lists
// of match_pattern_list. The catalog (host patterns) and the policy (host,
// principal, route and caller patterns) share it so that a pattern means
// the same thing in both files, and neither package imports the other.
package sshmatch

import "strings"

// Pattern reports whether s matches pattern, where * matches any run of
// characters and ? exactly one; every other byte matches itself (ssh has
// no character classes, so brackets and backslashes are literal).
//
// The greedy two-pointer walk with one backtrack point is O(len(pattern) ×
// len(s)) at worst; a recursive matcher is exponential on patterns such as
// "*a*a*a*b", which a shared catalog file must not be able to trigger.
func Pattern(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]) && pattern[p] != '*':
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Split flattens pattern list entries: each entry may itself hold several
// patterns separated by commas or spaces, as in an ssh_config Host line.
func Split(entries []string) []string {
	var out []string
	for _, e := range entries {
		out = append(out, strings.FieldsFunc(e, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })...)
	}
	return out
}

// List reports whether s matches the pattern list: at least one positive
// pattern must match and no negated (!) pattern may, as in ssh's
// match_pattern_list. Matching is case-sensitive (user and program names).
func List(patterns []string, s string) bool { return list(patterns, s, false) }

// HostList is List for host names: like ssh, which lowercases the host
// before matching Host and Match host lines, it ignores case.
func HostList(patterns []string, host string) bool { return list(patterns, host, true) }

func list(patterns []string, s string, fold bool) bool {
	if fold {
		s = strings.ToLower(s)
	}
	matched := false
	for _, p := range Split(patterns) {
		if fold {
			p = strings.ToLower(p)
		}
		negate := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if !Pattern(p, s) {
			continue
		}
		if negate {
			return false
		}
		matched = true
	}
	return matched
}

// Positive returns the non-negated patterns of a list, split.
func Positive(patterns []string) []string {
	var out []string
	for _, p := range Split(patterns) {
		if !strings.HasPrefix(p, "!") {
			out = append(out, p)
		}
	}
	return out
}

// HasNegation reports whether the list holds a negated pattern.
func HasNegation(patterns []string) bool {
	for _, p := range Split(patterns) {
		if strings.HasPrefix(p, "!") {
			return true
		}
	}
	return false
}

// Intersect reports whether some string matches both patterns a and b
// (compared as written; fold case first for host names). Lint uses it to
// report routes whose host patterns overlap.
func Intersect(a, b string) bool {
	// memo[i][j] caches whether a[i:] and b[j:] can match a common string.
	memo := make([][]int8, len(a)+1)
	for i := range memo {
		memo[i] = make([]int8, len(b)+1)
	}
	var f func(i, j int) bool
	f = func(i, j int) bool {
		if m := memo[i][j]; m != 0 {
			return m > 0
		}
		r := false
		switch {
		case i == len(a) && j == len(b):
			r = true
		case i < len(a) && a[i] == '*':
			// a's star matches nothing, or swallows one character of b's.
			r = f(i+1, j) || (j < len(b) && f(i, j+1))
		case j < len(b) && b[j] == '*':
			r = f(i, j+1) || (i < len(a) && f(i+1, j))
		case i < len(a) && j < len(b):
			r = (a[i] == b[j] || a[i] == '?' || b[j] == '?') && f(i+1, j+1)
		}
		if r {
			memo[i][j] = 1
		} else {
			memo[i][j] = -1
		}
		return r
	}
	return f(0, 0)
}

// Covers reports, conservatively, whether every string matching p also
// matches q: true only when that is certain (q is "*", the patterns are
// equal, p is a literal q matches, or q is "*suffix"/"prefix*" with a
// literal part that every match of p has). False means "not proven".
func Covers(q, p string) bool {
	switch {
	case q == "*" || q == p:
		return true
	case !strings.ContainsAny(p, "*?"):
		return Pattern(q, p)
	}
	if strings.Count(q, "*") == 1 && !strings.Contains(q, "?") {
		if strings.HasPrefix(q, "*") {
			// Every match of p ends with p's text after its last wildcard.
			suffix := q[1:]
			tail := p[strings.LastIndexAny(p, "*?")+1:]
			return strings.HasSuffix(tail, suffix)
		}
		if strings.HasSuffix(q, "*") {
			prefix := q[:len(q)-1]
			head := p[:strings.IndexAny(p, "*?")]
			return strings.HasPrefix(head, prefix)
		}
	}
	return false
}
