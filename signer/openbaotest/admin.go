package openbaotest

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// adminState is what an operator's setup (docs/openbao.md's "Server side",
// run with the bao CLI) configures on a server started with Options.Bare.
type adminState struct {
	mu       sync.Mutex // guards the fields below; taken before Server.mu, never after
	mounted  bool       // `bao secrets enable ssh`
	caReady  bool       // `bao write ssh/config/ca generate_signing_key=true`
	auths    map[string]bool
	tuned    map[string][]string // mount → audit_non_hmac_response_keys
	headers  map[string]bool     // sys/config/auditing/request-headers
	jwtRoles map[string]map[string]any
}

// Admin reports what the operator set up: whether the SSH engine is
// mounted and has a CA, the auth methods enabled, the audit request
// headers and the response keys exempt from HMAC per mount.
func (s *Server) Admin() (mounted, caReady bool, auths, headers []string, nonHMAC map[string][]string) {
	a := s.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.auths {
		auths = append(auths, k)
	}
	for k := range a.headers {
		headers = append(headers, k)
	}
	nonHMAC = map[string][]string{}
	for k, v := range a.tuned {
		nonHMAC[k] = v
	}
	return a.mounted, a.caReady, auths, headers, nonHMAC
}

// PolicyOf returns the named policy (nil if none).
func (s *Server) PolicyOf(name string) Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policies[name]
}

// RoleOf returns the named SSH role.
func (s *Server) RoleOf(name string) (Role, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.roles[name]
	return r, ok
}

// AppRoleOf returns the policies and token TTL of the named AppRole.
func (s *Server) AppRoleOf(name string) (policies []string, ttl time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ar := range s.approles {
		if ar.name == name {
			return ar.policies, ar.ttl, true
		}
	}
	return nil, 0, false
}

// serveAdmin answers the operator's setup requests (root token only) and,
// on a bare server, refuses the SSH engine's paths until it is mounted and
// has a CA, as OpenBao does. It reports whether it answered.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request, path string) bool {
	a := s.adm
	a.mu.Lock()
	mounted, caReady := a.mounted, a.caReady
	a.mu.Unlock()
	if strings.HasPrefix(path, s.mount+"/") && path != s.mount+"/config/ca" {
		switch {
		case !mounted:
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
			return true
		case !caReady && (path == s.mount+"/public_key" || strings.HasPrefix(path, s.mount+"/sign/")):
			writeErr(w, http.StatusBadRequest, "keys haven't been configured yet")
			return true
		}
	}
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	admin := strings.HasPrefix(path, "sys/mounts/") || strings.HasPrefix(path, "sys/auth/") ||
		strings.HasPrefix(path, "sys/policies/acl/") || strings.HasPrefix(path, "sys/config/auditing/request-headers/") ||
		path == s.mount+"/config/ca" || (write && strings.HasPrefix(path, s.mount+"/roles/")) ||
		strings.HasPrefix(path, "auth/"+s.approle+"/role/") || strings.HasPrefix(path, "auth/"+s.jwtMount+"/")
	if !admin || strings.HasSuffix(path, "/login") {
		return false
	}
	if r.Header.Get("X-Vault-Token") != s.root {
		writeErr(w, http.StatusForbidden, "permission denied")
		return true
	}
	var in map[string]any
	if err := decodeBody(r, &in); err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return true
	}
	str := func(k string) string { v, _ := in[k].(string); return v }
	ok := func() { w.WriteHeader(http.StatusNoContent) }
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case strings.HasPrefix(path, "sys/mounts/") && strings.HasSuffix(path, "/tune"):
		mount := strings.TrimSuffix(strings.TrimPrefix(path, "sys/mounts/"), "/tune")
		a.tuned[mount] = strings.Split(anyList(in["audit_non_hmac_response_keys"]), ",")
		ok()
	case strings.HasPrefix(path, "sys/mounts/"):
		mount := strings.TrimPrefix(path, "sys/mounts/")
		switch {
		case str("type") != "ssh" || mount != s.mount:
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("this test server serves one ssh mount, %q", s.mount))
		case a.mounted:
			writeErr(w, http.StatusBadRequest, "path is already in use at "+mount+"/")
		default:
			a.mounted = true
			ok()
		}
	case strings.HasPrefix(path, "sys/auth/"):
		a.auths[strings.TrimPrefix(path, "sys/auth/")] = true
		ok()
	case strings.HasPrefix(path, "sys/config/auditing/request-headers/"):
		a.headers[strings.TrimPrefix(path, "sys/config/auditing/request-headers/")] = true
		ok()
	case strings.HasPrefix(path, "sys/policies/acl/"):
		pol, err := parsePolicy(str("policy"))
		if err != nil {
			writeErr(w, http.StatusBadRequest, "failed to parse policy: "+err.Error())
			return true
		}
		s.mu.Lock()
		s.policies[strings.TrimPrefix(path, "sys/policies/acl/")] = pol
		s.mu.Unlock()
		ok()
	case path == s.mount+"/config/ca" && write:
		if !a.mounted {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
			return true
		}
		// The key was made at start (so reads need no lock); generating
		// it reveals it.
		if a.caReady {
			writeErr(w, http.StatusBadRequest, "keys are already configured; delete them before reconfiguring")
			return true
		}
		a.caReady = true
		writeJSON(w, http.StatusOK, envelope{RequestID: uuid(), Data: map[string]any{"public_key": string(marshalKey(s))}})
	case path == s.mount+"/config/ca":
		if !a.caReady {
			writeErr(w, http.StatusBadRequest, "keys haven't been configured yet")
			return true
		}
		writeJSON(w, http.StatusOK, envelope{RequestID: uuid(), Data: map[string]any{"public_key": string(marshalKey(s))}})
	case strings.HasPrefix(path, s.mount+"/roles/"):
		role, err := roleFromJSON(in)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return true
		}
		s.SetRole(strings.TrimPrefix(path, s.mount+"/roles/"), role)
		ok()
	case strings.HasPrefix(path, "auth/"+s.approle+"/role/"):
		s.approleAdmin(w, r, strings.TrimPrefix(path, "auth/"+s.approle+"/role/"), in)
	case path == "auth/"+s.jwtMount+"/config":
		ok()
	case strings.HasPrefix(path, "auth/"+s.jwtMount+"/role/"):
		a.jwtRoles[strings.TrimPrefix(path, "auth/"+s.jwtMount+"/role/")] = in
		ok()
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
	}
	return true
}

// approleAdmin writes an AppRole role and reads its role_id or makes a
// secret_id.
func (s *Server) approleAdmin(w http.ResponseWriter, r *http.Request, rest string, in map[string]any) {
	name, sub, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	var ar *appRole
	for _, x := range s.approles {
		if x.name == name {
			ar = x
		}
	}
	switch sub {
	case "":
		if ar == nil {
			ar = &appRole{name: name, roleID: uuid(), secretID: uuid(), renewable: true}
			s.approles[ar.roleID] = ar
		}
		if p := anyList(in["token_policies"]); p != "" {
			ar.policies = append([]string{"default"}, strings.Split(p, ",")...)
		}
		if d, err := parseDuration(in["token_ttl"]); err == nil && d > 0 {
			ar.ttl = d
		}
		w.WriteHeader(http.StatusNoContent)
	case "role-id":
		if ar == nil {
			writeErr(w, http.StatusBadRequest, "role "+name+" does not exist")
			return
		}
		writeJSON(w, http.StatusOK, envelope{RequestID: uuid(), Data: map[string]any{"role_id": ar.roleID}})
	case "secret-id":
		if ar == nil {
			writeErr(w, http.StatusBadRequest, "role "+name+" does not exist")
			return
		}
		ar.secretID = uuid()
		writeJSON(w, http.StatusOK, envelope{RequestID: uuid(), Data: map[string]any{
			"secret_id": ar.secretID, "secret_id_accessor": uuid(), "secret_id_ttl": 0, "secret_id_num_uses": 0,
		}})
	default:
		writeErr(w, http.StatusNotFound, "no handler for route")
	}
}

// anyList joins a JSON list or passes a comma-separated string through.
func anyList(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, e := range x {
			parts = append(parts, fmt.Sprint(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// roleFromJSON reads the role fields this server enforces.
func roleFromJSON(in map[string]any) (Role, error) {
	var r Role
	if kt, _ := in["key_type"].(string); kt != "ca" {
		return r, fmt.Errorf("this test server knows only key_type ca, not %q", kt)
	}
	split := func(k string) []string {
		if s := anyList(in[k]); s != "" {
			return strings.Split(s, ",")
		}
		return nil
	}
	r.AllowedUsers, r.AllowedExtensions = split("allowed_users"), split("allowed_extensions")
	r.DefaultUser, _ = in["default_user"].(string)
	r.AllowUserKeyIDs, _ = in["allow_user_key_ids"].(bool)
	var err error
	if r.TTL, err = parseDuration(in["ttl"]); err != nil {
		return r, err
	}
	if r.MaxTTL, err = parseDuration(in["max_ttl"]); err != nil {
		return r, err
	}
	if d, ok := in["default_extensions"].(map[string]any); ok {
		r.DefaultExtensions = map[string]string{}
		for k, v := range d {
			r.DefaultExtensions[k] = fmt.Sprint(v)
		}
	}
	return r, nil
}

var policyRule = regexp.MustCompile(`(?m)^\s*path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}\s*$`)

// parsePolicy reads the one-line HCL rules docs/openbao.md writes:
// path "P" { capabilities = ["read", ...] }.
func parsePolicy(hcl string) (Policy, error) {
	p := Policy{}
	for _, line := range strings.Split(hcl, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		m := policyRule.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("this test server reads only one-line path rules, not %q", line)
		}
		for _, c := range strings.Split(m[2], ",") {
			if c = strings.Trim(strings.TrimSpace(c), `"`); c != "" {
				p[m[1]] = append(p[m[1]], c)
			}
		}
	}
	return p, nil
}

func marshalKey(s *Server) []byte { return ssh.MarshalAuthorizedKey(s.caSigner.PublicKey()) }

// newAdmin is the operator's state: all set up, unless bare.
func newAdmin(bare bool) *adminState {
	return &adminState{mounted: !bare, caReady: !bare, auths: map[string]bool{}, tuned: map[string][]string{},
		headers: map[string]bool{}, jwtRoles: map[string]map[string]any{}}
}
