package signer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// CAPinFile is the trust-on-first-use record of OpenBao CA keys in the
// state directory: one line "<address> <mount> <key type> <base64>" per
// node and mount.
const CAPinFile = "openbao-ca.pub"

// maxPinFile bounds ca_public_key_file and the pin record; a few hundred
// keys fit.
const maxPinFile = 256 << 10

// maxSerials bounds how many issued serials are remembered for the
// repeated-serial check.
const maxSerials = 4096

// CAKeyChangedError reports a CA key that differs from the pinned one: the
// CA was rotated, or something between the agent and OpenBao (or OpenBao
// itself) hands out another CA. Nothing signed by it is listed.
type CAKeyChangedError struct {
	Address string
	// Mount is the SSH mount, prefixed with the namespace if any.
	Mount string
	// Pinned are the fingerprints of the accepted keys; Served the one
	// OpenBao served.
	Pinned []string
	Served string
	// PinnedBy names the setting (ca_public_key, ca_public_key_file …) or,
	// for trust on first use, the record file.
	PinnedBy string
	TOFU     bool
}

// Error names the old and new keys and the fix.
func (e *CAKeyChangedError) Error() string {
	old := strings.Join(e.Pinned, ", ")
	if e.TOFU {
		return fmt.Sprintf("openbao: the CA key of mount %s at %s changed: it was %s when first used (recorded in %s) and is now %s; nothing it signs is used. If OpenBao's CA was rotated on purpose, delete the %s lines from %s (or pin the new key with signer.openbao.ca_public_key) and try again; otherwise treat this as an incident: OpenBao, or something between it and this agent, hands out another CA",
			e.Mount, e.Address, old, e.PinnedBy, e.Served, e.Mount, e.PinnedBy)
	}
	return fmt.Sprintf("openbao: the CA key of mount %s at %s is %s, not a key pinned by %s (%s); nothing it signs is used. If OpenBao's CA was rotated on purpose, add the new key to %s; otherwise treat this as an incident: OpenBao, or something between it and this agent, hands out another CA",
		e.Mount, e.Address, e.Served, e.PinnedBy, old, e.PinnedBy)
}

// readBounded reads a small file, refusing one larger than limit.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// parseKeyLines reads authorized_keys-style lines (blank lines and
// # comments skipped); certificates are refused.
func parseKeyLines(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d is not an SSH public key: %v", i+1, err)
		}
		if _, ok := k.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("line %d is a certificate, not a CA key", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// pinLine is one line of the pin record.
type pinLine struct {
	addr, mount string
	key         ssh.PublicKey
}

// parsePinRecord reads the pin record.
func parsePinRecord(b []byte) ([]pinLine, error) {
	var out []pinLine
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want \"<address> <mount> <key type> <base64>\"", i+1)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f[2] + " " + f[3]))
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		out = append(out, pinLine{addr: f[0], mount: f[1], key: k})
	}
	return out, nil
}

// caPins checks CA keys against ca_public_key or, without it, against the
// trust-on-first-use record.
type caPins struct {
	pinned     []ssh.PublicKey
	pinnedFrom string
	// path is the record file; "" keeps the record in memory only (no
	// state directory was given).
	path string

	mu  sync.Mutex
	mem []pinLine
}

// check accepts k as the CA of mount served at addr, for a cluster whose
// nodes are addrs, or says why not. First use records k for every node.
func (p *caPins) check(addrs []string, addr, mount string, k ssh.PublicKey, log func(msg string, args ...any)) error {
	if p.pinned != nil {
		if slices.ContainsFunc(p.pinned, func(pk ssh.PublicKey) bool { return bytes.Equal(pk.Marshal(), k.Marshal()) }) {
			return nil
		}
		fps := make([]string, len(p.pinned))
		for i, pk := range p.pinned {
			fps[i] = ssh.FingerprintSHA256(pk)
		}
		return &CAKeyChangedError{Address: addr, Mount: mount, Pinned: fps, Served: ssh.FingerprintSHA256(k), PinnedBy: p.pinnedFrom}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lines, err := p.load()
	if err != nil {
		return err
	}
	var old []ssh.PublicKey
	have := map[string]bool{}
	for _, l := range lines {
		if l.mount == mount && slices.Contains(addrs, l.addr) {
			have[l.addr] = true
			if !slices.ContainsFunc(old, func(o ssh.PublicKey) bool { return bytes.Equal(o.Marshal(), l.key.Marshal()) }) {
				old = append(old, l.key)
			}
		}
	}
	for _, o := range old {
		if !bytes.Equal(o.Marshal(), k.Marshal()) {
			fps := make([]string, len(old))
			for i, o := range old {
				fps[i] = ssh.FingerprintSHA256(o)
			}
			where := p.path
			if where == "" {
				where = "memory (no state directory)"
			}
			return &CAKeyChangedError{Address: addr, Mount: mount, Pinned: fps, Served: ssh.FingerprintSHA256(k), PinnedBy: where, TOFU: true}
		}
	}
	var add []pinLine
	for _, a := range addrs {
		if !have[a] {
			add = append(add, pinLine{addr: a, mount: mount, key: k})
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := p.store(append(lines, add...)); err != nil {
		return err
	}
	if len(old) == 0 {
		log("openbao: trusting the CA key on first use; a later change is refused", "mount", mount, "address", addr,
			"fingerprint", ssh.FingerprintSHA256(k), "record", p.path)
	}
	return nil
}

func (p *caPins) load() ([]pinLine, error) {
	if p.path == "" {
		return slices.Clone(p.mem), nil
	}
	fi, err := os.Stat(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("openbao: CA pin record: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("openbao: CA pin record %s is writable by others (mode %v), so it pins nothing; run: chmod 600 %s", p.path, fi.Mode().Perm(), p.path)
	}
	b, err := readBounded(p.path, maxPinFile)
	if err != nil {
		return nil, fmt.Errorf("openbao: CA pin record: %w", err)
	}
	lines, err := parsePinRecord(b)
	if err != nil {
		return nil, fmt.Errorf("openbao: CA pin record %s: %w; fix or delete the line", p.path, err)
	}
	return lines, nil
}

// store replaces the record atomically (0600).
func (p *caPins) store(lines []pinLine) error {
	if p.path == "" {
		p.mem = lines
		return nil
	}
	var b strings.Builder
	b.WriteString("# OpenBao CA keys trusted on first use by warden-agent: <address> <mount> <key>.\n")
	b.WriteString("# Delete a mount's lines after a deliberate CA rotation.\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s %s", l.addr, l.mount, ssh.MarshalAuthorizedKey(l.key))
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return fmt.Errorf("openbao: CA pin record: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".openbao-ca-*")
	if err != nil {
		return fmt.Errorf("openbao: CA pin record: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if err != nil {
		return fmt.Errorf("openbao: writing CA pin record %s: %w", p.path, err)
	}
	return nil
}

// serialSet remembers the last maxSerials serials issued in this process.
type serialSet struct {
	mu    sync.Mutex
	seen  map[uint64]struct{}
	order []uint64
	next  int
}

// add records serial and reports false if it was seen already.
func (s *serialSet) add(serial uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[uint64]struct{}, maxSerials)
	}
	if _, ok := s.seen[serial]; ok {
		return false
	}
	if len(s.order) < maxSerials {
		s.order = append(s.order, serial)
	} else {
		delete(s.seen, s.order[s.next])
		s.order[s.next] = serial
		s.next = (s.next + 1) % maxSerials
	}
	s.seen[serial] = struct{}{}
	return true
}
