// Package openbaotest runs an OpenBao-compatible HTTP server for tests, in
// the manner of net/http/httptest. It answers the paths the warden agent
// uses (sys/health, <mount>/public_key, <mount>/roles/<role>,
// <mount>/sign/<role>, auth/token/lookup-self, auth/token/renew-self,
// auth/approle/login, auth/jwt/login) with the status codes, JSON shapes and
// error strings that a real OpenBao 2.6.2 returns (recorded in
// shared/openbao/transcript-2.6.2.md), and it signs with a real CA key so
// that a real sshd trusts what it issues.
//
// Failure knobs (Seal, SetDelay, FailNext, SetTamper) let tests drive the
// client through every error path; Requests and SignHeaders let them check
// what reached the server.
//
// Real returns the same kind of handle (a Target) for a real OpenBao server
// when WARDEN_TEST_BAO_ADDR and WARDEN_TEST_BAO_TOKEN are set.
package openbaotest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxBody bounds request bodies, as OpenBao's max_request_size does.
const maxBody = 1 << 20

// Role is an SSH secrets engine role (key_type=ca, user certificates).
type Role struct {
	// AllowedUsers are the principals the role may certify; "*" allows any.
	AllowedUsers []string
	// DefaultUser is certified when the request names no principal.
	DefaultUser string
	// TTL is the default certificate lifetime; MaxTTL caps a requested one.
	TTL, MaxTTL time.Duration
	// AllowedExtensions may be requested; "*" allows any, empty allows none.
	AllowedExtensions []string
	// DefaultExtensions are used when the request carries no extensions.
	DefaultExtensions map[string]string
	// NotBeforeDuration back-dates ValidAfter; zero means OpenBao's 30s.
	NotBeforeDuration time.Duration
	// AllowUserKeyIDs lets the request set key_id.
	AllowUserKeyIDs bool
}

// EngRole is the role "eng" of shared/openbao/README.md.
func EngRole() Role {
	return Role{
		AllowedUsers:      []string{"deploy", "alice", "root"},
		DefaultUser:       "deploy",
		TTL:               5 * time.Minute,
		MaxTTL:            time.Hour,
		AllowedExtensions: []string{"permit-pty", "permit-port-forwarding"},
		DefaultExtensions: map[string]string{"permit-pty": ""},
	}
}

// Policy maps API paths (without /v1/) to capabilities ("read", "update",
// "create"). A path ending in "*" is a prefix match, as in HCL policies.
type Policy map[string][]string

// Options configure a Server. The zero value is the setup of
// shared/openbao/README.md with an ed25519 CA.
type Options struct {
	// Mount is the SSH secrets engine mount; default "ssh".
	Mount string
	// Roles default to {"eng": EngRole()}.
	Roles map[string]Role
	// Policies are added to "default" and "warden-eng" (README's policy).
	Policies map[string]Policy
	// Now is the server's clock for token TTLs and certificate validity;
	// default time.Now. Share it with the client to drive renewal.
	Now func() time.Time
	// CAKey signs certificates; default a fresh ed25519 key. An
	// *rsa.PrivateKey signs with rsa-sha2-256, as OpenBao's default does.
	CAKey crypto.Signer
	// TLS serves HTTPS with a self-signed certificate (see CACertPEM).
	TLS bool
	// AppRoleMount and JWTMount name the auth mounts; default "approle", "jwt".
	AppRoleMount, JWTMount string
	// Bare starts with no SSH mount, CA, role or warden-eng policy: an
	// operator sets them up through the API as docs/openbao.md does
	// (see admin.go).
	Bare bool
}

// Tamper makes the server return a certificate that a careful client must
// refuse.
type Tamper int

const (
	// TamperNone returns honest certificates.
	TamperNone Tamper = iota
	// TamperOtherKey certifies a different public key than the one sent.
	TamperOtherKey
	// TamperExtraPrincipal adds the principal "root" to the certificate.
	TamperExtraPrincipal
	// TamperOtherCA signs with a CA key other than the one public_key serves.
	TamperOtherCA
	// TamperSerial reports a serial_number other than the certificate's.
	TamperSerial
	// TamperLongTTL issues a certificate valid for 24 hours.
	TamperLongTTL
)

type token struct {
	id          string
	accessor    string
	displayName string
	policies    []string
	creationTTL time.Duration // 0: never expires (root)
	issued      time.Time
	expires     time.Time
	maxExpires  time.Time // zero: renewals are not capped (see token.go)
	renewable   bool
	revoked     bool
	path        string
	meta        map[string]string
}

type appRole struct {
	name      string
	roleID    string
	secretID  string
	policies  []string
	ttl       time.Duration
	renewable bool
}

type jwtRole struct {
	jwt      string
	policies []string
	ttl      time.Duration
}

type failure struct {
	path   string // "" matches any sign path
	status int
	body   string
}

// Server is an OpenBao-compatible test server. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base address, e.g. http://127.0.0.1:41234.
	URL string

	ts       *httptest.Server
	now      func() time.Time
	mount    string
	caSigner ssh.Signer
	issuerID string
	approle  string
	jwtMount string

	// mu guards the fields below.
	mu          sync.Mutex
	roles       map[string]Role
	policies    map[string]Policy
	tokens      map[string]*token
	approles    map[string]*appRole // by role_id
	jwtRoles    map[string]*jwtRole
	root        string
	defaultRole *appRole
	sealed      bool
	standby     bool
	delay       time.Duration
	fails       []failure
	signFail    *failure // every sign request fails while set
	tamper      Tamper
	counts      map[string]int
	signHeaders []http.Header
	signed      int // certificates minted
	adm         *adminState
}

// NewServer starts a server and stops it with t.Cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("openbaotest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server; the caller must Close it.
func New(opts Options) (*Server, error) {
	if opts.Mount == "" {
		opts.Mount = "ssh"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AppRoleMount == "" {
		opts.AppRoleMount = "approle"
	}
	if opts.JWTMount == "" {
		opts.JWTMount = "jwt"
	}
	if opts.CAKey == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		opts.CAKey = k
	}
	signer, err := caSigner(opts.CAKey)
	if err != nil {
		return nil, err
	}
	s := &Server{
		now:      opts.Now,
		mount:    opts.Mount,
		caSigner: signer,
		issuerID: uuid(),
		approle:  opts.AppRoleMount,
		jwtMount: opts.JWTMount,
		roles:    map[string]Role{},
		policies: map[string]Policy{},
		tokens:   map[string]*token{},
		approles: map[string]*appRole{},
		jwtRoles: map[string]*jwtRole{},
		counts:   map[string]int{},
	}
	s.adm = newAdmin(opts.Bare)
	if opts.Roles == nil && !opts.Bare {
		opts.Roles = map[string]Role{"eng": EngRole()}
	}
	for name, r := range opts.Roles {
		s.roles[name] = r
	}
	s.policies["default"] = Policy{
		"auth/token/lookup-self": {"read"},
		"auth/token/renew-self":  {"update"},
	}
	if !opts.Bare {
		s.policies["warden-eng"] = Policy{
			s.mount + "/sign/eng":    {"update"},
			s.mount + "/public_key":  {"read"},
			"auth/token/lookup-self": {"read"},
			"auth/token/renew-self":  {"update"},
		}
	}
	for name, p := range opts.Policies {
		s.policies[name] = p
	}
	s.root = s.addToken(token{displayName: "root", policies: []string{"root"}, path: "auth/token/root"})
	rid, sid := s.AddAppRole("warden", []string{"default", "warden-eng"}, 20*time.Minute)
	s.defaultRole = s.approles[rid]
	_ = sid

	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if opts.TLS {
		s.ts.StartTLS()
	} else {
		s.ts.Start()
	}
	s.URL = s.ts.URL
	return s, nil
}

func caSigner(k crypto.Signer) (ssh.Signer, error) {
	sg, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	if sg.PublicKey().Type() == ssh.KeyAlgoRSA {
		// OpenBao's algorithm_signer "default" is rsa-sha2-256 for RSA CAs.
		return ssh.NewSignerWithAlgorithms(sg.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA256})
	}
	return sg, nil
}

// Close stops the server. In-flight delayed requests end when their
// clients go away.
func (s *Server) Close() { s.ts.Close() }

// Client returns an HTTP client that trusts the server (needed with TLS).
func (s *Server) Client() *http.Client { return s.ts.Client() }

// CACertPEM returns the PEM of the server's TLS certificate (TLS only).
func (s *Server) CACertPEM() []byte {
	if s.ts.Certificate() == nil {
		return nil
	}
	return pemCert(s.ts.Certificate().Raw)
}

// Mount is the SSH secrets engine mount.
func (s *Server) Mount() string { return s.mount }

// CAPublicKey is the key that signs certificates (what <mount>/public_key
// serves), for sshd's TrustedUserCAKeys.
func (s *Server) CAPublicKey() ssh.PublicKey { return s.caSigner.PublicKey() }

// RootToken returns a token that may do anything.
func (s *Server) RootToken() string { return s.root }

// AppRole returns the role_id and secret_id of the default AppRole
// "warden" (policies default, warden-eng; token TTL 20m).
func (s *Server) AppRole() (roleID, secretID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.defaultRole.roleID, s.defaultRole.secretID
}

// AddAppRole creates an AppRole whose logins get renewable tokens with the
// given policies and TTL, and returns its credentials.
func (s *Server) AddAppRole(name string, policies []string, ttl time.Duration) (roleID, secretID string) {
	r := &appRole{name: name, roleID: uuid(), secretID: uuid(), policies: policies, ttl: ttl, renewable: true}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.approles[r.roleID] = r
	return r.roleID, r.secretID
}

// AddJWTRole makes auth/<jwt mount>/login accept jwt for role, issuing
// tokens with the given policies and TTL.
func (s *Server) AddJWTRole(role, jwt string, policies []string, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwtRoles[role] = &jwtRole{jwt: jwt, policies: policies, ttl: ttl}
}

// CreateToken returns a new service token with the given policies and TTL
// (0: never expires), renewable or not.
func (s *Server) CreateToken(policies []string, ttl time.Duration, renewable bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTokenLocked(token{displayName: "token", policies: policies, creationTTL: ttl, renewable: renewable, path: "auth/token/create"})
}

// RevokeToken makes every later request with tok fail with 403.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tok]; ok {
		t.revoked = true
	}
}

// RevokeAll revokes every token except the root token, as if the tokens had
// expired while the client slept.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if id != s.root {
			t.revoked = true
		}
	}
}

func (s *Server) revokeByPath(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if strings.HasPrefix(t.path, prefix) {
			t.revoked = true
		}
	}
}

// TokenExpiry reports when tok expires (zero for a token without TTL) and
// whether the server knows it.
func (s *Server) TokenExpiry(tok string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok {
		return time.Time{}, false
	}
	return t.expires, true
}

// Seal makes every request answer 503 "Vault is sealed".
func (s *Server) Seal() { s.mu.Lock(); s.sealed = true; s.mu.Unlock() }

// Unseal undoes Seal.
func (s *Server) Unseal() { s.mu.Lock(); s.sealed = false; s.mu.Unlock() }

// SetStandby makes sys/health answer 429 as a standby node does.
func (s *Server) SetStandby(b bool) { s.mu.Lock(); s.standby = b; s.mu.Unlock() }

// SetDelay delays every answer by d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// FailNext makes the next sign request answer status with body (raw JSON).
func (s *Server) FailNext(status int, body string) { s.FailNextPath("", status, body) }

// FailNextPath makes the next request to path (without /v1/) answer status
// with body.
func (s *Server) FailNextPath(path string, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, failure{path: path, status: status, body: body})
}

// FailSigns makes every sign request answer status with body (raw JSON)
// until FailSigns(0, "") ends the fault.
func (s *Server) FailSigns(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		s.signFail = nil
		return
	}
	s.signFail = &failure{status: status, body: body}
}

// SetTamper makes later sign answers lie in the given way.
func (s *Server) SetTamper(t Tamper) { s.mu.Lock(); s.tamper = t; s.mu.Unlock() }

// SetRole creates or replaces a role.
func (s *Server) SetRole(name string, r Role) { s.mu.Lock(); s.roles[name] = r; s.mu.Unlock() }

// Requests returns how many requests reached path (without /v1/, e.g.
// "ssh/sign/eng"), whatever their outcome.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// Signed returns how many certificates the server minted.
func (s *Server) Signed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signed
}

// SignHeaders returns the headers of every sign request, oldest first.
func (s *Server) SignHeaders() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]http.Header, len(s.signHeaders))
	for i, h := range s.signHeaders {
		out[i] = h.Clone()
	}
	return out
}

func (s *Server) addToken(t token) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTokenLocked(t)
}

func (s *Server) addTokenLocked(t token) string {
	t.id = "s." + randString(24)
	t.accessor = randString(24)
	t.issued = s.now()
	if t.creationTTL > 0 {
		t.expires = t.issued.Add(t.creationTTL)
	}
	s.tokens[t.id] = &t
	return t.id
}

// validTokenLocked returns the live token for id, or nil.
func (s *Server) validTokenLocked(id string) *token {
	t, ok := s.tokens[id]
	if !ok || t.revoked {
		return nil
	}
	if !t.expires.IsZero() && !s.now().Before(t.expires) {
		return nil
	}
	return t
}

// allowedLocked reports whether t's policies grant capability on path.
func (s *Server) allowedLocked(t *token, path, capability string) bool {
	for _, name := range t.policies {
		if name == "root" {
			return true
		}
		for p, caps := range s.policies[name] {
			match := p == path || (strings.HasSuffix(p, "*") && strings.HasPrefix(path, strings.TrimSuffix(p, "*")))
			if !match {
				continue
			}
			for _, c := range caps {
				if c == capability || (capability == "update" && c == "create") {
					return true
				}
			}
		}
	}
	return false
}

// envelope is OpenBao's response shape.
type envelope struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          any            `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      any            `json:"warnings"`
	Auth          map[string]any `json:"auth"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

// deniedPolicy is what OpenBao says when a valid token lacks the capability
// (the transcript's "policy token denied other path").
const deniedPolicy = "1 error occurred:\n\t* permission denied\n\n"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.counts[path]++
	delay := s.delay
	sealed := s.sealed
	isSign := strings.HasPrefix(path, s.mount+"/sign/")
	if isSign {
		s.signHeaders = append(s.signHeaders, r.Header.Clone())
	}
	var fail *failure
	for i, f := range s.fails {
		if (f.path == "" && isSign) || f.path == path {
			fail = &f
			s.fails = slices.Delete(s.fails, i, i+1)
			break
		}
	}
	if fail == nil && isSign && s.signFail != nil {
		f := *s.signFail
		fail = &f
	}
	s.mu.Unlock()

	// Read the body before any delay: net/http notices a client that went
	// away (and cancels r.Context) only once the body has been consumed.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "http: request body too large")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fail != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fail.status)
		_, _ = io.WriteString(w, fail.body)
		return
	}
	if path == "sys/health" {
		s.health(w, r, sealed)
		return
	}
	if sealed {
		writeErr(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}

	switch {
	case s.serveAdmin(w, r, path):
	case path == s.mount+"/public_key":
		if r.Method != http.MethodGet {
			writeErr(w, http.StatusMethodNotAllowed, "1 error occurred:\n\t* unsupported operation\n\n")
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(ssh.MarshalAuthorizedKey(s.caSigner.PublicKey()))
	case path == "auth/"+s.approle+"/login":
		s.approleLogin(w, r)
	case path == "auth/"+s.jwtMount+"/login":
		s.jwtLogin(w, r)
	case path == "auth/token/lookup-self":
		s.withToken(w, r, path, "read", s.lookupSelf)
	case path == "auth/token/renew-self":
		s.withToken(w, r, path, "update", s.renewSelf)
	case strings.HasPrefix(path, s.mount+"/roles/"):
		s.withToken(w, r, path, "read", func(w http.ResponseWriter, r *http.Request, t *token) {
			s.readRole(w, strings.TrimPrefix(path, s.mount+"/roles/"))
		})
	case isSign:
		s.withToken(w, r, path, "update", func(w http.ResponseWriter, r *http.Request, t *token) {
			s.sign(w, r, strings.TrimPrefix(path, s.mount+"/sign/"), t)
		})
	default:
		if !s.serveTokenAPI(w, r, path) {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
		}
	}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request, sealed bool) {
	s.mu.Lock()
	standby := s.standby
	s.mu.Unlock()
	body := map[string]any{
		"initialized":                  true,
		"sealed":                       sealed,
		"standby":                      standby || sealed,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              s.now().Unix(),
		"version":                      "2.6.2",
	}
	status := http.StatusOK
	switch {
	case sealed:
		status = http.StatusServiceUnavailable
		body["replication_performance_mode"] = "unknown"
		body["replication_dr_mode"] = "unknown"
	case standby:
		status = http.StatusTooManyRequests
	default:
		body["cluster_name"] = "vault-cluster-openbaotest"
		body["cluster_id"] = s.issuerID
	}
	writeJSON(w, status, body)
}

func (s *Server) withToken(w http.ResponseWriter, r *http.Request, path, capability string, h func(http.ResponseWriter, *http.Request, *token)) {
	if capability == "update" && r.Method != http.MethodPost && r.Method != http.MethodPut {
		writeErr(w, http.StatusMethodNotAllowed, "1 error occurred:\n\t* unsupported operation\n\n")
		return
	}
	if capability == "read" && r.Method != http.MethodGet {
		writeErr(w, http.StatusMethodNotAllowed, "1 error occurred:\n\t* unsupported operation\n\n")
		return
	}
	id := r.Header.Get("X-Vault-Token")
	if id == "" {
		if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			id = a
		}
	}
	s.mu.Lock()
	t := s.validTokenLocked(id)
	var allowed bool
	if t != nil {
		allowed = s.allowedLocked(t, path, capability)
	}
	var copyTok token
	if t != nil {
		copyTok = *t
	}
	s.mu.Unlock()
	if t == nil {
		writeErr(w, http.StatusForbidden, "permission denied")
		return
	}
	if !allowed {
		writeErr(w, http.StatusForbidden, deniedPolicy)
		return
	}
	h(w, r, &copyTok)
}

func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

func (s *Server) approleLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	if in.RoleID == "" {
		writeErr(w, http.StatusBadRequest, "missing role_id")
		return
	}
	s.mu.Lock()
	ar, ok := s.approles[in.RoleID]
	if !ok || ar.secretID != in.SecretID {
		s.mu.Unlock()
		writeErr(w, http.StatusBadRequest, "invalid role or secret ID")
		return
	}
	id := s.addTokenLocked(token{displayName: "approle", policies: ar.policies, creationTTL: ar.ttl, renewable: ar.renewable,
		path: "auth/" + s.approle + "/login", meta: map[string]string{"role_name": ar.name}})
	t := *s.tokens[id]
	s.mu.Unlock()
	s.writeAuth(w, &t, map[string]string{"role_name": ar.name})
}

func (s *Server) jwtLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Role string `json:"role"`
		JWT  string `json:"jwt"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	if in.JWT == "" {
		writeErr(w, http.StatusBadRequest, "missing token")
		return
	}
	s.mu.Lock()
	jr, ok := s.jwtRoles[in.Role]
	if !ok {
		s.mu.Unlock()
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("role %q could not be found", in.Role))
		return
	}
	if jr.jwt != in.JWT {
		s.mu.Unlock()
		writeErr(w, http.StatusBadRequest, "error validating token: invalid signature")
		return
	}
	id := s.addTokenLocked(token{displayName: "jwt", policies: jr.policies, creationTTL: jr.ttl, renewable: true,
		path: "auth/" + s.jwtMount + "/login", meta: map[string]string{"role": in.Role}})
	t := *s.tokens[id]
	s.mu.Unlock()
	s.writeAuth(w, &t, map[string]string{"role": in.Role})
}

func (s *Server) writeAuth(w http.ResponseWriter, t *token, meta map[string]string) {
	var metaV any
	if meta != nil {
		metaV = meta
	}
	writeJSON(w, http.StatusOK, envelope{
		RequestID: uuid(),
		Auth: map[string]any{
			"client_token":    t.id,
			"accessor":        t.accessor,
			"policies":        t.policies,
			"token_policies":  t.policies,
			"metadata":        metaV,
			"lease_duration":  int(t.creationTTL / time.Second),
			"renewable":       t.renewable,
			"entity_id":       "",
			"token_type":      "service",
			"orphan":          true,
			"mfa_requirement": nil,
			"num_uses":        0,
		},
	})
}

func (s *Server) lookupSelf(w http.ResponseWriter, r *http.Request, t *token) {
	var expire any
	ttl := 0
	if !t.expires.IsZero() {
		expire = t.expires.UTC().Format(time.RFC3339Nano)
		ttl = int(t.expires.Sub(s.now()) / time.Second)
	}
	var meta any
	if t.meta != nil {
		meta = t.meta
	}
	writeJSON(w, http.StatusOK, envelope{
		RequestID: uuid(),
		Data: map[string]any{
			"accessor":         t.accessor,
			"creation_time":    t.issued.Unix(),
			"creation_ttl":     int(t.creationTTL / time.Second),
			"display_name":     t.displayName,
			"entity_id":        "",
			"expire_time":      expire,
			"explicit_max_ttl": 0,
			"id":               t.id,
			"issue_time":       t.issued.UTC().Format(time.RFC3339Nano),
			"meta":             meta,
			"num_uses":         0,
			"orphan":           false,
			"path":             t.path,
			"policies":         t.policies,
			"renewable":        t.renewable,
			"ttl":              ttl,
			"type":             "service",
		},
	})
}

func (s *Server) renewSelf(w http.ResponseWriter, r *http.Request, t *token) {
	var in struct {
		Increment any `json:"increment"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	if !t.renewable || t.expires.IsZero() {
		writeErr(w, http.StatusBadRequest, "lease is not renewable")
		return
	}
	inc, err := parseDuration(in.Increment)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if inc <= 0 {
		inc = t.creationTTL
	}
	s.mu.Lock()
	live := s.tokens[t.id]
	live.expires = capExpiry(live, s.now().Add(inc))
	inc = live.expires.Sub(s.now())
	cp := *live
	s.mu.Unlock()
	cp.creationTTL = inc
	s.writeAuth(w, &cp, cp.meta)
}

func (s *Server) readRole(w http.ResponseWriter, name string) {
	s.mu.Lock()
	role, ok := s.roles[name]
	s.mu.Unlock()
	if !ok {
		// OpenBao answers a read of a missing entry with 404 and no message.
		writeErr(w, http.StatusNotFound)
		return
	}
	nb := role.NotBeforeDuration
	if nb == 0 {
		nb = 30 * time.Second
	}
	defExt := role.DefaultExtensions
	if defExt == nil {
		defExt = map[string]string{}
	}
	writeJSON(w, http.StatusOK, envelope{
		RequestID: uuid(),
		Data: map[string]any{
			"algorithm_signer":            "default",
			"allow_bare_domains":          false,
			"allow_empty_principals":      false,
			"allow_host_certificates":     false,
			"allow_subdomains":            false,
			"allow_user_certificates":     true,
			"allow_user_key_ids":          role.AllowUserKeyIDs,
			"allowed_critical_options":    "",
			"allowed_domains":             "",
			"allowed_extensions":          strings.Join(role.AllowedExtensions, ","),
			"allowed_user_key_lengths":    map[string]any{},
			"allowed_users":               strings.Join(role.AllowedUsers, ","),
			"allowed_users_template":      false,
			"default_critical_options":    map[string]any{},
			"default_extensions":          defExt,
			"default_user":                role.DefaultUser,
			"issuer_ref":                  "default",
			"key_id_format":               "",
			"key_type":                    "ca",
			"max_ttl":                     int(role.MaxTTL / time.Second),
			"not_before_duration":         int(nb / time.Second),
			"ttl":                         int(role.TTL / time.Second),
			"default_extensions_template": false,
		},
	})
}

// parsePublicKey follows OpenBao's parsePublicSSHKey: take the second
// space-separated field, base64-decode it, parse the wire form. Its errors
// are therefore base64 errors, as in the transcript.
func parsePublicKey(key string) (ssh.PublicKey, error) {
	if parts := strings.Split(key, " "); len(parts) > 1 {
		key = parts[1]
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePublicKey(raw)
}

// parseDuration accepts what OpenBao's TypeDurationSecond accepts: a number
// of seconds, or a Go-style duration string with an optional unit.
func parseDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case float64:
		return time.Duration(x) * time.Second, nil
	case string:
		if x == "" {
			return 0, nil
		}
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf("time: invalid duration %q", x)
		}
		return d, nil
	}
	return 0, fmt.Errorf("could not parse duration %v", v)
}

func (s *Server) sign(w http.ResponseWriter, r *http.Request, roleName string, t *token) {
	var in struct {
		PublicKey       string         `json:"public_key"`
		ValidPrincipals string         `json:"valid_principals"`
		TTL             any            `json:"ttl"`
		CertType        string         `json:"cert_type"`
		Extensions      map[string]any `json:"extensions"`
		CriticalOptions map[string]any `json:"critical_options"`
		KeyID           string         `json:"key_id"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	s.mu.Lock()
	role, ok := s.roles[roleName]
	tamper := s.tamper
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusBadRequest, "Unknown role: "+roleName)
		return
	}
	if in.PublicKey == "" {
		writeErr(w, http.StatusBadRequest, "missing public_key")
		return
	}
	pub, err := parsePublicKey(in.PublicKey)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "failed to parse public_key as SSH key: "+err.Error())
		return
	}
	if in.CertType != "" && in.CertType != "user" {
		writeErr(w, http.StatusBadRequest, "host certificate is not allowed")
		return
	}
	var principals []string
	if in.ValidPrincipals == "" {
		if role.DefaultUser == "" {
			writeErr(w, http.StatusBadRequest, "empty valid principals not allowed by role")
			return
		}
		principals = []string{role.DefaultUser}
	} else {
		for _, p := range strings.Split(in.ValidPrincipals, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(role.AllowedUsers, "*") && !slices.Contains(role.AllowedUsers, p) {
				writeErr(w, http.StatusBadRequest, p+" is not a valid value for valid_principals")
				return
			}
			principals = append(principals, p)
		}
	}
	ttl, err := parseDuration(in.TTL)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	maxTTL := role.MaxTTL
	if maxTTL == 0 {
		maxTTL = 768 * time.Hour // OpenBao's system max_lease_ttl
	}
	if ttl == 0 {
		ttl = role.TTL
		if ttl == 0 || ttl > maxTTL {
			ttl = maxTTL
		}
	}
	if ttl > maxTTL {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("ttl is larger than maximum allowed %d", int(maxTTL/time.Second)))
		return
	}
	ext := map[string]string{}
	if len(in.Extensions) > 0 {
		var notAllowed []string
		for k, v := range in.Extensions {
			if !slices.Contains(role.AllowedExtensions, "*") && !slices.Contains(role.AllowedExtensions, k) {
				notAllowed = append(notAllowed, k)
			}
			s, _ := v.(string)
			ext[k] = s
		}
		if len(notAllowed) > 0 {
			sort.Strings(notAllowed)
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("extensions %v are not on allowed list", notAllowed))
			return
		}
	} else {
		for k, v := range role.DefaultExtensions {
			ext[k] = v
		}
	}
	crit := map[string]string{}
	for k, v := range in.CriticalOptions {
		s, _ := v.(string)
		crit[k] = s
	}
	keyID := in.KeyID
	if keyID != "" && !role.AllowUserKeyIDs {
		writeErr(w, http.StatusBadRequest, "setting key_id is not allowed by role")
		return
	}
	if keyID == "" {
		sum := sha256.Sum256([]byte(t.id))
		keyID = "vault-" + t.displayName + "-" + hex.EncodeToString(sum[:])
	}
	nb := role.NotBeforeDuration
	if nb == 0 {
		nb = 30 * time.Second
	}
	now := s.now()
	var sb [8]byte
	_, _ = rand.Read(sb[:])
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(sb[:]),
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-nb).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: crit, Extensions: ext},
	}
	signer := s.caSigner
	serial := cert.Serial
	switch tamper {
	case TamperOtherKey:
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		other, _ := ssh.NewSignerFromSigner(k)
		cert.Key = other.PublicKey()
	case TamperExtraPrincipal:
		cert.ValidPrincipals = append(cert.ValidPrincipals, "root")
	case TamperOtherCA:
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		signer, _ = ssh.NewSignerFromSigner(k)
	case TamperSerial:
		serial++
	case TamperLongTTL:
		cert.ValidBefore = uint64(now.Add(24 * time.Hour).Unix())
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		writeErr(w, http.StatusInternalServerError, "error signing certificate: "+err.Error())
		return
	}
	s.mu.Lock()
	s.signed++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, envelope{
		RequestID: uuid(),
		Data: map[string]any{
			"issuer_id":     s.issuerID,
			"serial_number": strconv.FormatUint(serial, 16),
			"signed_key":    string(ssh.MarshalAuthorizedKey(cert)),
		},
	})
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
