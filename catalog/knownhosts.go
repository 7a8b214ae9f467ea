package catalog

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
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

// KeyMatchesRoute reports whether known_hosts knows key (or, for a host
// certificate, its CA via @cert-authority) under a name the route's host
// patterns match.
func (kh *KnownHosts) KeyMatchesRoute(key ssh.PublicKey, r *Route) bool {
	blob := key.Marshal()
	isCA := false
	if cert, ok := key.(*ssh.Certificate); ok && cert.CertType == ssh.HostCert {
		blob, isCA = cert.SignatureKey.Marshal(), true
	}
	for _, e := range kh.entries {
		if e.ca != isCA || !bytes.Equal(e.key, blob) {
			continue
		}
		for _, name := range e.names {
			if strings.HasPrefix(name, "!") {
				continue
			}
			// "[host]:port" matches a route naming the host, or naming
			// that exact "[host]:port" as a hashed entry needs.
			if r.MatchesHost(hostOnly(name)) || r.MatchesHost(name) {
				return true
			}
		}
		for _, h := range e.hashed {
			for _, lit := range literalHosts(r.Hosts) {
				if hashMatches(h, lit) {
					return true
				}
			}
		}
	}
	return false
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
