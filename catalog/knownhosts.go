package catalog

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/internal/sshmatch"
)

// MaxKnownHostsSize bounds how much of a known_hosts file is read.
const MaxKnownHostsSize = 16 << 20

// KnownHosts is a reverse index of known_hosts files: from a host key to
// the names it is known under. Hashed entries (HashKnownHosts) cannot be
// reversed, so they are tested against the literal host names of a route;
// ssh hashes a host on a port other than 22 as "[host]:port", so only a
// route listing that form finds such an entry.
type KnownHosts struct {
	entries []knownEntry
}

type knownEntry struct {
	key    []byte   // marshalled public key
	names  []string // plain host patterns, "[host]:port" kept as is
	hashed [][2][]byte
	ca     bool // @cert-authority line
}

// LoadKnownHosts reads known_hosts files; missing files are skipped.
func LoadKnownHosts(paths ...string) (*KnownHosts, error) {
	kh := &KnownHosts{}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, MaxKnownHostsSize))
		f.Close()
		if err != nil {
			return nil, err
		}
		kh.add(data)
	}
	return kh, nil
}

// ParseKnownHosts indexes known_hosts content; malformed lines are skipped,
// as ssh skips them.
func ParseKnownHosts(data []byte) *KnownHosts {
	kh := &KnownHosts{}
	kh.add(data)
	return kh
}

func (kh *KnownHosts) add(data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil || marker == "revoked" {
			continue
		}
		e := knownEntry{key: key.Marshal(), ca: marker == "cert-authority"}
		for _, h := range hosts {
			if salt, hash, ok := parseHashed(h); ok {
				e.hashed = append(e.hashed, [2][]byte{salt, hash})
				continue
			}
			e.names = append(e.names, h)
		}
		kh.entries = append(kh.entries, e)
	}
}

// parseHashed decodes "|1|salt|hash" (OpenSSH's hostfile.c HASH_MAGIC).
func parseHashed(h string) (salt, hash []byte, ok bool) {
	if !strings.HasPrefix(h, "|1|") {
		return nil, nil, false
	}
	parts := strings.Split(h[3:], "|")
	if len(parts) != 2 {
		return nil, nil, false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[0])
	hash, err2 := base64.StdEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || len(salt) != sha1.Size || len(hash) != sha1.Size {
		return nil, nil, false
	}
	return salt, hash, true
}

// KeyMatchesRoute reports whether known_hosts knows key under a name the
// route's host patterns match: a plain line for the key, or an
// @cert-authority line whose CA signed key as a host certificate that
// verifies now (see Catalog.MatchHostKey, which also returns the names).
func (kh *KnownHosts) KeyMatchesRoute(key ssh.PublicKey, r *Route) bool {
	_, _, err := kh.match(key, r, "", time.Now())
	return err == nil
}

// match finds key for route r: host is the hinted host or "". It returns
// the host names the matching lines give, and ViaKnownHosts or
// ViaCertAuthority; errNoPin when no line names the key, another error
// when a certificate from a known CA failed verification.
func (kh *KnownHosts) match(key ssh.PublicKey, r *Route, host string, now time.Time) ([]string, string, error) {
	raw := rawKey(key)
	cert, isCert := key.(*ssh.Certificate)
	var caBlob []byte
	if isCert {
		caBlob = cert.SignatureKey.Marshal()
	}
	var names []string
	var refused error
	for _, e := range kh.entries {
		switch {
		case !e.ca && bytes.Equal(e.key, raw):
			names = appendNew(names, e.namesFor(r, host)...)
		case e.ca && isCert && bytes.Equal(e.key, caBlob):
			if host != "" && !e.covers(host) {
				continue
			}
			got, err := verifyHostCert(cert, host, func(p string) bool { return e.covers(p) && r.MatchesHost(p) }, now)
			if err != nil {
				if refused == nil {
					refused = fmt.Errorf("known_hosts @cert-authority: %w", err)
				}
				continue
			}
			return got, ViaCertAuthority, nil
		}
	}
	if len(names) > 0 {
		return names, ViaKnownHosts, nil
	}
	if refused != nil {
		return nil, "", refused
	}
	return nil, "", errNoPin
}

// namesFor returns the host names a plain line gives for route r: with a
// hint, the hinted host if the line's patterns cover it; without, the
// literal names on the line when one of them is a host of the route (or
// the literal route host a hashed name matched). Wildcard patterns on the
// line name no host.
func (e *knownEntry) namesFor(r *Route, host string) []string {
	if host != "" {
		if e.covers(host) {
			return []string{host}
		}
		return nil
	}
	var literal []string
	matched := false
	for _, name := range e.names {
		if strings.ContainsAny(name, "*?!") {
			continue
		}
		literal = append(literal, hostOnly(name))
		// "[host]:port" matches a route naming the host, or naming
		// that exact "[host]:port" as a hashed entry needs.
		if r.MatchesHost(hostOnly(name)) || r.MatchesHost(name) {
			matched = true
		}
	}
	for _, h := range e.hashed {
		for _, lit := range literalHosts(r.Hosts) {
			if hashMatches(h, lit) {
				matched = true
				literal = appendNew(literal, hostOnly(lit))
			}
		}
	}
	if !matched {
		return nil
	}
	return literal
}

// covers reports whether the line's host patterns cover name, as ssh's
// match_hostname does (negation included; a hashed name only by its hash).
func (e *knownEntry) covers(name string) bool {
	name = strings.ToLower(name)
	var pats []string
	for _, n := range e.names {
		neg := strings.HasPrefix(n, "!")
		h := hostOnly(strings.TrimPrefix(n, "!"))
		if neg {
			h = "!" + h
		}
		pats = append(pats, h)
	}
	if len(pats) > 0 && sshmatch.HostList(pats, name) {
		return true
	}
	for _, h := range e.hashed {
		if hashMatches(h, name) {
			return true
		}
	}
	return false
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// hostOnly strips the "[host]:port" form to host.
func hostOnly(name string) string {
	if strings.HasPrefix(name, "[") {
		if h, _, err := net.SplitHostPort(name); err == nil {
			return h
		}
	}
	return name
}

// literalHosts returns the patterns that name one host exactly, the only
// ones a hashed known_hosts entry can be tested against.
func literalHosts(patterns []string) []string {
	var out []string
	for _, entry := range patterns {
		for _, p := range strings.FieldsFunc(entry, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !strings.ContainsAny(p, "*?!") {
				out = append(out, strings.ToLower(p))
			}
		}
	}
	return out
}

func hashMatches(h [2][]byte, host string) bool {
	mac := hmac.New(sha1.New, h[0])
	mac.Write([]byte(host))
	return hmac.Equal(mac.Sum(nil), h[1])
}

// knownHostsHash writes "salt|hash" of a hashed known_hosts name.
func knownHostsHash(salt []byte, host string) string {
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
