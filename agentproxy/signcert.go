package agentproxy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/netkingdom/ops-warden/signer"

	"golang.org/x/crypto/ssh"
)

// ExtSignCert asks the agent to issue (or reuse) a certificate for a
// target under the same catalog and policy as a login: the cert command
// of tunnel programs (`warden-agent sign`).
const ExtSignCert = "sign-cert@ops-warden.netkingdom"

// SignCertRequest names the target.
type SignCertRequest struct {
	Principal string `json:"principal"`
	Host      string `json:"host"`
	// TTL caps the lifetime of a newly issued certificate (seconds).
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
	// ExportKey asks for the private key too, for tools that cannot use
	// an agent. It is recorded as cert.exported.
	ExportKey bool `json:"export_key,omitempty"`
}

// SignCertReply carries the certificate (authorized_keys form) and, when
// asked, the private key in OpenSSH PEM form.
type SignCertReply struct {
	Certificate string `json:"certificate"`
	Serial      string `json:"serial"`
	Route       string `json:"route"`
	PrivateKey  string `json:"private_key,omitempty"`
}

const evCertExported = "cert.exported"

func (c *conn) signCert(contents []byte) ([]byte, error) {
	s := c.s
	var req SignCertRequest
	if err := json.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("sign-cert: %w", err)
	}
	fail := func(msg string) ([]byte, error) { return jsonReply(map[string]string{"error": msg}) }
	if req.Principal == "" || req.Host == "" || len(req.Principal) > maxHintUser || len(req.Host) > maxHintHost {
		return fail("sign needs --principal and --host")
	}
	if s.isLocked() {
		return fail("the agent is locked; unlock it with ssh-add -X")
	}
	r := s.cfg.Catalog().RouteForHost(req.Host)
	if r == nil {
		return fail("no route in the catalog matches host " + req.Host)
	}
	p, err := r.PrincipalFor(req.Principal)
	if err != nil {
		return fail(err.Error())
	}
	t := &target{route: r, principal: p, user: req.Principal, host: req.Host, source: "sign-command",
		bound: false, callers: c.peer.Chain, connID: c.id, caller: c.caller()}
	if req.TTLSeconds > 0 {
		t.maxTTL = time.Duration(req.TTLSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ListDeadline)
	defer cancel()
	if req.ExportKey {
		return s.exportCert(ctx, t)
	}
	e, err := s.obtain(ctx, t)
	if err != nil {
		return fail(err.Error())
	}
	return jsonReply(SignCertReply{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.Cert))),
		Serial:      fmt.Sprintf("%x", e.Cert.Serial), Route: r.Name,
	})
}

// exportCert mints a key and certificate for files on disk (sign --out).
// They are made for this export alone and never enter the cache: a key
// that has been on disk is never one the agent signs logins with. The
// export is recorded before the key leaves memory.
func (s *Server) exportCert(ctx context.Context, t *target) ([]byte, error) {
	fail := func(msg string) ([]byte, error) { return jsonReply(map[string]string{"error": msg}) }
	if err := s.decide(ctx, t); err != nil {
		return fail(err.Error())
	}
	eph, err := signer.NewEphemeralKey()
	if err != nil {
		return nil, err
	}
	iss, err := s.issue(ctx, t, ttlFor(t), eph)
	if err != nil {
		return fail(err.Error())
	}
	reply := SignCertReply{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(iss.Cert))),
		Serial:      fmt.Sprintf("%x", iss.Cert.Serial), Route: t.route.Name,
	}
	f := t.fields()
	f["serial"], f["serial_dec"] = reply.Serial, strconv.FormatUint(iss.Cert.Serial, 10)
	f["exported_only"] = true
	if err := s.record(ctx, evCertExported, f); err != nil {
		return fail("audit log unavailable: the key is not exported")
	}
	block, err := ssh.MarshalPrivateKey(ed25519.PrivateKey(eph.Private), "warden:"+t.route.Name+":"+t.principal)
	if err != nil {
		return nil, err
	}
	reply.PrivateKey = string(pem.EncodeToMemory(block))
	return jsonReply(reply)
}
