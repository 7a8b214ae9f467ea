package agentproxy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/signer"
)

// Reading an add request for the audit record only. The frame itself goes
// upstream unchanged; what is read here never decides anything, so a key
// type or constraint warden does not know is recorded as "unparsed" and
// still added. Private parts are skipped, never kept.

// addInfo is what the audit record of an add says.
type addInfo struct {
	Fingerprint  string // of the public key; "unparsed" when unknown
	Comment      string
	Provider     string // PKCS#11 provider (smartcard adds)
	LifetimeSecs uint32
	Confirm      bool
	Constraints  []string // extension constraint names
}

const unparsed = "unparsed"

// rawFingerprint is OpenSSH's SHA256 fingerprint of a public key blob.
func rawFingerprint(blob []byte) string {
	h := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
}

// describeAdd reads SSH_AGENTC_ADD_IDENTITY, ADD_ID_CONSTRAINED,
// ADD_SMARTCARD_KEY or ADD_SMARTCARD_KEY_CONSTRAINED.
func describeAdd(body []byte) addInfo {
	info := addInfo{Fingerprint: unparsed}
	r := reader{b: body[1:]}
	switch body[0] {
	case msgAddSmartcardKey, msgAddSmartcardConstraint:
		info.Fingerprint = ""
		info.Provider = string(r.str())
		r.str() // the PIN: skipped, never recorded
	default:
		typ := string(r.str())
		pub, ok := readPrivateKey(&r, typ)
		if !ok {
			return info
		}
		info.Fingerprint = pub
		info.Comment = string(r.str())
	}
	if r.bad {
		return info
	}
	readConstraints(&r, &info)
	return info
}

// readPrivateKey skips the key fields of an add request of type typ and
// returns the public key's fingerprint (OpenSSH's sshkey_private_deserialize
// layouts).
func readPrivateKey(r *reader, typ string) (string, bool) {
	if strings.HasSuffix(typ, "-cert-v01@openssh.com") {
		blob := r.str()
		base := strings.TrimSuffix(typ, "-cert-v01@openssh.com")
		switch {
		case base == ssh.KeyAlgoED25519:
			r.str()
			r.str()
		case base == ssh.KeyAlgoRSA:
			r.skip(4)
		case strings.HasPrefix(base, "ecdsa-sha2-"):
			r.skip(1)
		default:
			return "", false
		}
		if r.bad {
			return "", false
		}
		key, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return "", false
		}
		return signer.KeyFingerprint(key), true
	}
	var pub []byte
	switch {
	case typ == ssh.KeyAlgoED25519:
		pk := r.str()
		r.str()
		pub = ssh.Marshal(struct{ T, K string }{typ, string(pk)})
	case typ == ssh.KeyAlgoRSA:
		n, e := r.str(), r.str()
		r.skip(4) // d, iqmp, p, q
		pub = appendString(appendString(appendString(nil, []byte(typ)), e), n)
	case strings.HasPrefix(typ, "ecdsa-sha2-"):
		curve, q := r.str(), r.str()
		r.skip(1) // d
		pub = appendString(appendString(appendString(nil, []byte(typ)), curve), q)
	case typ == ssh.KeyAlgoSKED25519:
		pk, app := r.str(), r.str()
		r.byte1()
		r.skip(2) // key handle, reserved
		pub = appendString(appendString(appendString(nil, []byte(typ)), pk), app)
	case typ == ssh.KeyAlgoSKECDSA256:
		curve, q, app := r.str(), r.str(), r.str()
		r.byte1()
		r.skip(2)
		pub = appendString(appendString(appendString(appendString(nil, []byte(typ)), curve), q), app)
	default:
		return "", false
	}
	if r.bad {
		return "", false
	}
	return rawFingerprint(pub), true
}

// Constraint types (PROTOCOL.agent §3.2.7).
const (
	constrainLifetime  = 1
	constrainConfirm   = 2
	constrainMaxSign   = 3
	constrainExtension = 255
)

// readConstraints reads the constraints it knows the length of; an
// unknown one ends the reading (its name is recorded when it has one).
func readConstraints(r *reader, info *addInfo) {
	for len(r.b) > 0 && !r.bad {
		switch r.byte1() {
		case constrainLifetime:
			info.LifetimeSecs = r.u32()
		case constrainConfirm:
			info.Confirm = true
		case constrainMaxSign:
			r.u32()
		case constrainExtension:
			name := string(r.str())
			if r.bad || len(info.Constraints) >= 16 {
				return
			}
			info.Constraints = append(info.Constraints, name)
			switch name {
			case "restrict-destination-v00@openssh.com", "sk-provider@openssh.com":
				r.str()
			case "associated-certs-v00@openssh.com":
				r.byte1()
				r.str()
			default:
				return
			}
		default:
			return
		}
	}
}

// reader reads SSH wire fields; any short read sets bad and every later
// read returns zero values.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) str() []byte {
	s, rest, ok := parseString(r.b)
	if !ok {
		r.bad, r.b = true, nil
		return nil
	}
	r.b = rest
	return s
}

func (r *reader) skip(n int) {
	for i := 0; i < n; i++ {
		r.str()
	}
}

func (r *reader) byte1() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}
