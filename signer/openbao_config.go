package signer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for OpenBaoConfig.
const (
	DefaultOpenBaoMount        = "ssh"
	DefaultOpenBaoTimeout      = 5 * time.Second
	DefaultTokenCommandTimeout = 10 * time.Second
	DefaultAppRoleMount        = "approle"
	DefaultJWTMount            = "jwt"
)

// OpenBaoConfig is the `signer: {kind: openbao, openbao: {...}}` block of
// agent.yaml. Empty fields fall back to the BAO_*/VAULT_* environment and
// then to the defaults above; see docs/openbao.md.
type OpenBaoConfig struct {
	// Address is the server's URL; BAO_ADDR or VAULT_ADDR when empty.
	Address string `yaml:"address"`
	// Addresses lists the nodes of an HA cluster. Every node's sys/health
	// is sampled; requests go to the active node, else a standby, and move
	// on only when an answer proves nothing was processed (docs/openbao.md).
	// BAO_ADDRS, or a comma-separated BAO_ADDR/VAULT_ADDR, when empty.
	Addresses []string `yaml:"addresses"`
	// Namespace is sent as X-Vault-Namespace; BAO_NAMESPACE when empty.
	Namespace string `yaml:"namespace"`
	// Mount is the SSH secrets engine used when a route names none, and
	// whose CA CAPublicKey returns; default "ssh".
	Mount string `yaml:"mount"`
	// CACert is a PEM file of CAs that sign the server's TLS certificate;
	// BAO_CACERT or VAULT_CACERT when empty; the system roots otherwise.
	CACert string `yaml:"ca_cert"`
	// ClientCert and ClientKey are PEM files for mutual TLS.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// TLSSkipVerify turns off TLS certificate verification. It is refused
	// unless TLSSkipVerifyIUnderstand is also set: anyone on the path could
	// then mint certificates in the agent's name or hand it a false CA.
	TLSSkipVerify            bool `yaml:"tls_skip_verify"`
	TLSSkipVerifyIUnderstand bool `yaml:"tls_skip_verify_i_understand"`
	// Timeout bounds every request; default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// InsecureHTTP allows http:// addresses that are not loopback. Without
	// it they are refused: the token and every certificate would cross the
	// network readable and changeable by anyone on the path.
	InsecureHTTP bool `yaml:"insecure_http"`

	// CAPublicKey pins the CA keys (authorized_keys lines) a certificate
	// may be signed by, whatever <mount>/public_key says. CAPublicKeyFile
	// reads them from a file. With neither, the first key each mount
	// serves is trusted and recorded in the state directory, and a later
	// change is refused.
	CAPublicKey     string `yaml:"ca_public_key"`
	CAPublicKeyFile string `yaml:"ca_public_key_file"`
	// MaxBackdate bounds how far in the past a certificate's valid-after
	// may lie; default DefaultMaxBackdate (the role's 30s not_before_duration
	// plus 2m skew).
	MaxBackdate time.Duration `yaml:"max_backdate"`

	// Token is a token written in the config file (least preferred place
	// for a secret; prefer the token file or a broker).
	Token string `yaml:"token"`
	// TokenFile is read when no token is in the config or environment;
	// BAO_TOKEN_PATH, else ~/.vault-token, when empty.
	TokenFile string `yaml:"token_file"`
	// AppRole logs in with a role id and a secret id file (tunnel hosts).
	AppRole *AppRoleConfig `yaml:"approle"`
	// JWT logs in with a workload's JWT.
	JWT *JWTConfig `yaml:"jwt"`
	// TokenCommand is an argv whose stdout is a token, e.g. a credential
	// broker: ["credential", "exec", "ops-warden-warden-sign-token", "--",
	// "printenv", "BAO_TOKEN"].
	TokenCommand []string `yaml:"token_command"`
	// TokenCommandTimeout bounds TokenCommand; default 10s.
	TokenCommandTimeout time.Duration `yaml:"token_command_timeout"`
}

// AppRoleConfig is an AppRole login (auth/<mount>/login).
type AppRoleConfig struct {
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
	// Mount defaults to "approle".
	Mount string `yaml:"mount"`
}

// JWTConfig is a JWT login (auth/<mount>/login).
type JWTConfig struct {
	JWTFile string `yaml:"jwt_file"`
	Role    string `yaml:"role"`
	// Mount defaults to "jwt".
	Mount string `yaml:"mount"`
}

// String describes the configuration without its token.
func (c OpenBaoConfig) String() string {
	tok := ""
	if c.Token != "" {
		tok = " token=<redacted>"
	}
	return fmt.Sprintf("openbao{address=%s addresses=%v namespace=%q mount=%s%s}", c.Address, c.Addresses, c.Namespace, c.Mount, tok)
}

// LogValue keeps the token out of structured logs.
func (c OpenBaoConfig) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// resolved is an OpenBaoConfig with environment fallbacks and defaults
// applied and checked.
type resolved struct {
	addresses    []string
	namespace    string
	mount        string
	timeout      time.Duration
	tls          *tls.Config
	tokenFile    string
	cfg          OpenBaoConfig
	getenv       func(string) string
	cmdTimeout   time.Duration
	approleMount string
	jwtMount     string
	maxBackdate  time.Duration
	// pinned are the CA keys of ca_public_key(_file); nil means trust on
	// first use. pinnedFrom names the setting, for errors.
	pinned     []ssh.PublicKey
	pinnedFrom string
}

func firstEnv(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func resolveConfig(cfg OpenBaoConfig, getenv func(string) string, home string) (*resolved, error) {
	r := &resolved{cfg: cfg, getenv: getenv}
	if cfg.Address != "" {
		r.addresses = append(r.addresses, cfg.Address)
	}
	for _, a := range cfg.Addresses {
		if a != "" && !slices.Contains(r.addresses, a) {
			r.addresses = append(r.addresses, a)
		}
	}
	if len(r.addresses) == 0 {
		// BAO_ADDRS, or BAO_ADDR/VAULT_ADDR, may list an HA cluster's
		// nodes separated by commas.
		for _, a := range strings.Split(firstEnv(getenv, "BAO_ADDRS", "BAO_ADDR", "VAULT_ADDR"), ",") {
			if a = strings.TrimSpace(a); a != "" && !slices.Contains(r.addresses, a) {
				r.addresses = append(r.addresses, a)
			}
		}
	}
	if len(r.addresses) == 0 {
		return nil, errors.New("openbao: no server address: set signer.openbao.address (or addresses) in agent.yaml, or BAO_ADDR")
	}
	for i, a := range r.addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("openbao: address %q is not an http(s) URL such as https://bao.example.com:8200", a)
		}
		if u.Scheme == "http" && !cfg.InsecureHTTP && !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("openbao: address %s is plain http: the token and every certificate would cross the network readable and changeable by anyone on the path; use https:// (with ca_cert for a private CA), or, on a network you trust, set signer.openbao.insecure_http: true in agent.yaml", a)
		}
		r.addresses[i] = strings.TrimRight(a, "/")
	}
	r.namespace = cfg.Namespace
	if r.namespace == "" {
		r.namespace = firstEnv(getenv, "BAO_NAMESPACE", "VAULT_NAMESPACE")
	}
	r.mount = strings.Trim(cfg.Mount, "/")
	if r.mount == "" {
		r.mount = DefaultOpenBaoMount
	}
	r.timeout = cfg.Timeout
	if r.timeout <= 0 {
		r.timeout = DefaultOpenBaoTimeout
	}
	r.maxBackdate = cfg.MaxBackdate
	if r.maxBackdate <= 0 {
		r.maxBackdate = DefaultMaxBackdate
	}
	if err := r.loadPins(cfg); err != nil {
		return nil, err
	}
	r.cmdTimeout = cfg.TokenCommandTimeout
	if r.cmdTimeout <= 0 {
		r.cmdTimeout = DefaultTokenCommandTimeout
	}
	r.tokenFile = cfg.TokenFile
	if r.tokenFile == "" {
		r.tokenFile = getenv("BAO_TOKEN_PATH")
	}
	if r.tokenFile == "" && home != "" {
		r.tokenFile = filepath.Join(home, ".vault-token")
	}
	if cfg.AppRole != nil {
		if cfg.AppRole.RoleID == "" || cfg.AppRole.SecretIDFile == "" {
			return nil, errors.New("openbao: approle needs both role_id and secret_id_file")
		}
		r.approleMount = strings.Trim(cfg.AppRole.Mount, "/")
		if r.approleMount == "" {
			r.approleMount = DefaultAppRoleMount
		}
	}
	if cfg.JWT != nil {
		if cfg.JWT.JWTFile == "" || cfg.JWT.Role == "" {
			return nil, errors.New("openbao: jwt needs both jwt_file and role")
		}
		r.jwtMount = strings.Trim(cfg.JWT.Mount, "/")
		if r.jwtMount == "" {
			r.jwtMount = DefaultJWTMount
		}
	}
	if cfg.TokenCommand != nil && (len(cfg.TokenCommand) == 0 || cfg.TokenCommand[0] == "") {
		return nil, errors.New("openbao: token_command is empty: give an argv such as [credential, exec, <lane>, --, printenv, BAO_TOKEN]")
	}
	t, err := tlsConfig(cfg, getenv)
	if err != nil {
		return nil, err
	}
	r.tls = t
	return r, nil
}

// isLoopback reports a host name that never leaves the machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadPins reads ca_public_key and ca_public_key_file.
func (r *resolved) loadPins(cfg OpenBaoConfig) error {
	if cfg.CAPublicKey != "" && cfg.CAPublicKeyFile != "" {
		return errors.New("openbao: set ca_public_key or ca_public_key_file, not both")
	}
	text, from := cfg.CAPublicKey, "signer.openbao.ca_public_key"
	if cfg.CAPublicKeyFile != "" {
		from = "ca_public_key_file " + cfg.CAPublicKeyFile
		b, err := readBounded(cfg.CAPublicKeyFile, maxPinFile)
		if err != nil {
			return fmt.Errorf("openbao: reading ca_public_key_file: %w", err)
		}
		text = string(b)
	}
	if from == "signer.openbao.ca_public_key" && text == "" {
		return nil
	}
	keys, err := parseKeyLines([]byte(text))
	if err != nil {
		return fmt.Errorf("openbao: %s: %w", from, err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("openbao: %s holds no key: give the CA key as printed by bao read -field=public_key <mount>/config/ca", from)
	}
	r.pinned, r.pinnedFrom = keys, from
	return nil
}

func tlsConfig(cfg OpenBaoConfig, getenv func(string) string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSSkipVerify {
		if !cfg.TLSSkipVerifyIUnderstand {
			return nil, errors.New("openbao: tls_skip_verify is refused: without verification anyone between the agent and OpenBao can mint certificates in its name; set ca_cert to the CA of OpenBao's TLS certificate, or, for a throw-away test server only, also set tls_skip_verify_i_understand: true")
		}
		t.InsecureSkipVerify = true
	}
	caFile := cfg.CACert
	if caFile == "" {
		caFile = firstEnv(getenv, "BAO_CACERT", "VAULT_CACERT")
	}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("openbao: reading ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("openbao: ca_cert %s holds no PEM certificate", caFile)
		}
		t.RootCAs = pool
	}
	if (cfg.ClientCert == "") != (cfg.ClientKey == "") {
		return nil, errors.New("openbao: client_cert and client_key go together: set both or neither")
	}
	if cfg.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("openbao: loading client_cert/client_key: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
