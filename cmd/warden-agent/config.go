package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/internal/yamlfile"
	"github.com/netkingdom/ops-warden/signer"
)

// Config is agent.yaml. Every field is optional: with no file at all the
// agent runs on the local CA with one default route.
type Config struct {
	// Socket is where the agent listens.
	Socket string `yaml:"socket"`
	// Upstream is the user's own agent: a socket path or "none". Default:
	// the SSH_AUTH_SOCK the agent was started with.
	Upstream string `yaml:"upstream"`
	// ListDeadline bounds how long ssh waits for the key list.
	ListDeadline catalog.Duration `yaml:"list_deadline"`
	Signer       SignerConfig     `yaml:"signer"`
	// Routes are inline routes. They exclude a catalog file: with both
	// (catalog.path, or a default catalog.yaml) the config is refused.
	Routes  []catalog.Route `yaml:"routes"`
	Catalog struct {
		Path string `yaml:"path"`
	} `yaml:"catalog"`
	Policy struct {
		Path string `yaml:"path"`
	} `yaml:"policy"`
	Audit AuditConfig `yaml:"audit"`
	// KnownHosts are the files that map a host key to a host name when ssh
	// sent no hint. Default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
	KnownHosts []string `yaml:"known_hosts"`
	Log        struct {
		Level string `yaml:"level"`
	} `yaml:"log"`

	// path is the file this came from; empty when none was read.
	path string
}

// SignerConfig chooses the issuer.
type SignerConfig struct {
	// Kind is "local" (default) or "openbao".
	Kind  string `yaml:"kind"`
	Local struct {
		// CAKey is the local CA's private key file.
		CAKey string `yaml:"ca_key"`
	} `yaml:"local"`
	// OpenBao is decoded by the OpenBao issuer (see docs/openbao.md).
	OpenBao yaml.Node `yaml:"openbao"`
}

// AuditConfig places the audit log.
type AuditConfig struct {
	Path    string `yaml:"path"`
	MaxSize int64  `yaml:"max_size"`
	Keep    int    `yaml:"keep"`
	// MinAge: rotation never deletes a file younger than this (default
	// 168h); see docs/audit.md.
	MinAge catalog.Duration `yaml:"min_age"`
}

// maxConfigSize bounds agent.yaml.
const maxConfigSize = 1 << 20

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "agent configuration `FILE`", EnvVars: []string{"WARDEN_CONFIG"},
			DefaultText: "$XDG_CONFIG_HOME/warden/agent.yaml"},
		&cli.StringFlag{Name: "socket", Usage: "agent socket `PATH`", EnvVars: []string{"WARDEN_SOCKET"},
			DefaultText: "$XDG_RUNTIME_DIR/warden/agent.sock"},
	}
}

// globalString reads a global flag (--config, --socket) wherever it was
// given: before the command name (the app's flag set) or after it (the
// command's own copy). c.String alone would stop at the command's unset
// copy.
func globalString(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	return ""
}

// loadConfig reads --config (an error if it is missing) or the default
// agent.yaml (optional), then fills in defaults.
func loadConfig(c *cli.Context) (*Config, error) {
	path := globalString(c, "config")
	explicit := path != ""
	if !explicit {
		path = filepath.Join(configDir(), "agent.yaml")
	}
	cfg := &Config{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return nil, fmt.Errorf("config: %w", err)
	default:
		if len(data) > maxConfigSize {
			return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigSize)
		}
		if err := decodeConfig(path, data, cfg); err != nil {
			return nil, err
		}
		cfg.path = path
	}
	if s := globalString(c, "socket"); s != "" {
		cfg.Socket = s
	}
	if cfg.Socket == "" {
		cfg.Socket = defaultSocketPath()
	}
	if cfg.Audit.Path == "" {
		cfg.Audit.Path = filepath.Join(stateDir(), "audit.log")
	}
	if cfg.Signer.Kind == "" {
		cfg.Signer.Kind = "local"
	}
	if cfg.Signer.Local.CAKey == "" {
		cfg.Signer.Local.CAKey = filepath.Join(stateDir(), "ca_ed25519")
	}
	if cfg.ListDeadline <= 0 {
		cfg.ListDeadline = catalog.Duration(10 * time.Second)
	}
	if cfg.KnownHosts == nil {
		cfg.KnownHosts = []string{filepath.Join(homeDir(), ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"}
	}
	// Inline routes and a catalog file cannot both be in force; a catalog
	// file that silently replaced the routes in front of the user would
	// route logins where agent.yaml does not say.
	explicitCatalog := cfg.Catalog.Path != ""
	if cfg.Catalog.Path == "" {
		if p := filepath.Join(configDir(), "catalog.yaml"); fileExists(p) {
			cfg.Catalog.Path = p
		}
	}
	if len(cfg.Routes) > 0 && cfg.Catalog.Path != "" {
		return nil, routesConflict(cfg, explicitCatalog)
	}
	if cfg.Policy.Path == "" {
		if p := defaultPolicyPath(); fileExists(p) {
			cfg.Policy.Path = p
		}
	}
	return cfg, nil
}

// decodeConfig decodes agent.yaml strictly. Every problem is reported
// with file:line:col and its key path in the file (signer.openbao.timeout),
// never a Go type name; the inline routes are checked where they stand,
// and signer.openbao is checked here too so that an unknown key in it is
// reported at its own line.
func decodeConfig(path string, data []byte, cfg *Config) error {
	opts := yamlfile.Options{KeyPaths: true}
	root, errs := yamlfile.DecodeWith(path, data, cfg, opts)
	if len(errs) == 1 && errs[0].Msg == yamlfile.ErrEmpty.Error() {
		*cfg = Config{} // an empty agent.yaml is the default configuration
		return nil
	}
	if root != nil {
		if n := yamlfile.Find(root, "signer", "openbao"); n != nil && n.Tag != "!!null" {
			var ob signer.OpenBaoConfig
			opts.Prefix = "signer.openbao"
			errs = append(errs, yamlfile.DecodeNode(path, n, &ob, opts)...)
		}
		seen := map[string]int{}
		for i := range cfg.Routes {
			r := &cfg.Routes[i]
			at := yamlfile.Find(root, "routes", i)
			if err := r.Prepare(); err != nil {
				errs = append(errs, yamlfile.At(path, at, "routes[%d]: %v", i, err))
				continue
			}
			if first, dup := seen[r.Name]; dup {
				errs = append(errs, yamlfile.At(path, at, "routes[%d]: route %s: duplicate name (first at routes[%d])", i, r.Name, first))
			}
			seen[r.Name] = i
		}
	}
	slices.SortStableFunc(errs, func(a, b *yamlfile.Error) int { return cmp.Or(a.Line-b.Line, a.Col-b.Col) })
	return errs.Err()
}

// routesConflict names both places that define routes and the fixes.
func routesConflict(cfg *Config, explicit bool) error {
	where := "the default catalog file " + cfg.Catalog.Path + " exists"
	if explicit {
		where = "catalog.path names " + cfg.Catalog.Path
	}
	return fmt.Errorf("config %s: routes: defines %d inline route(s) and %s; only one set of routes can be in force. "+
		"Move the routes into %s and delete routes: from %s, or remove or rename %s (or unset catalog.path) to keep the inline routes",
		cfg.path, len(cfg.Routes), where, cfg.Catalog.Path, cfg.path, cfg.Catalog.Path)
}

// defaultPolicyPath is where a policy is read from when agent.yaml names
// none; the agent follows it even while it does not exist.
func defaultPolicyPath() string { return filepath.Join(configDir(), "policy.yaml") }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// decodeStrict decodes YAML and refuses unknown fields, so a misspelt
// option is an error instead of a silent default.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file is an empty config.
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// socketFor is the agent socket a client command talks to: --socket, or
// agent.yaml's, or the default.
func socketFor(c *cli.Context) (string, error) {
	if s := globalString(c, "socket"); s != "" {
		return s, nil
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return "", err
	}
	return cfg.Socket, nil
}

// auditPathFor resolves the audit log path for commands that read it.
func auditPathFor(c *cli.Context) (string, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return "", err
	}
	return cfg.Audit.Path, nil
}
