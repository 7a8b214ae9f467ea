package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/netkingdom/ops-warden/agentproxy"
	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/internal/filewatch"
	"github.com/netkingdom/ops-warden/policy"
	"github.com/netkingdom/ops-warden/signer"
)

// sources holds the catalog and the policy in force. Files are watched
// and reloaded; a bad version is refused and the last good one stays.
type sources struct {
	inline   *catalog.Catalog // agent.yaml's routes or the default route
	catStore *catalog.Store   // nil when no catalog file is configured
	polStore *policy.Store    // nil: the catalog alone decides
	log      *slog.Logger
	// ready is closed once both store fields are set: a watcher can fire
	// before NewStore has returned, and its event reads them.
	ready chan struct{}
}

// reloadHooks receive reload events once the agent is up.
type reloadHooks struct {
	record func(event string, fields map[string]any)
	// cache is set once the agent is built, after the watchers started.
	cache atomic.Pointer[signer.Cache]
}

func openSources(cfg *Config, log *slog.Logger, hooks *reloadHooks) (*sources, error) {
	s := &sources{log: log, ready: make(chan struct{})}
	inline, err := initialCatalog(cfg)
	if err != nil {
		return nil, err
	}
	s.inline = inline
	if cfg.Catalog.Path != "" {
		s.catStore, err = catalog.NewStore(cfg.Catalog.Path, log, func(e catalog.Event) { s.onEvent("catalog", e, hooks) })
		if err != nil {
			return nil, err
		}
	}
	onPolicy := func(e policy.Event) { s.onEvent("policy", e, hooks) }
	if cfg.Policy.Path != "" {
		s.polStore, err = policy.NewStore(cfg.Policy.Path, log, onPolicy)
	} else {
		// No policy yet: follow the default path, so a policy.yaml
		// created there after start is in force within a second (or at
		// SIGHUP) instead of being ignored until a restart.
		path := defaultPolicyPath()
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			s.polStore, err = policy.NewOptionalStore(path, log, onPolicy)
		}
		if err != nil {
			err = fmt.Errorf("policy: follow the default path %s: %w", path, err)
		}
	}
	if err != nil {
		close(s.ready) // let a pending event finish so close can wait for its watcher
		s.close()
		return nil, err
	}
	close(s.ready)
	return s, nil
}

// onEvent writes catalog.reloaded / policy.reload_failed and friends, and
// drops cached certificates the new version no longer allows.
func (s *sources) onEvent(kind string, e filewatch.Event, hooks *reloadHooks) {
	<-s.ready
	failed := e.Kind == filewatch.KindReloadFailed
	// "hash" is the audit record's own field; the file's is <kind>_hash.
	fields := map[string]any{"path": e.Path, kind + "_hash": "sha256:" + e.Hash}
	event := kind + ".reloaded"
	if failed {
		event = kind + ".reload_failed"
		if e.Err != nil {
			fields["error"] = e.Err.Error()
		}
	}
	if !failed {
		switch kind {
		case "catalog":
			fields["routes"] = len(s.catalog().Routes)
		case "policy":
			fields["rules"] = len(s.polStore.Current().Rules)
		}
	}
	if !failed {
		if c := hooks.cache.Load(); c != nil {
			fields["dropped_certificates"] = c.Drop(func(en *signer.Entry) bool { return !s.stillAllowed(en) })
		}
	}
	if hooks.record != nil {
		hooks.record(event, fields)
	}
}

// stillAllowed reports whether a cached certificate's route still exists
// and still allows its principal, and the policy does not deny it.
func (s *sources) stillAllowed(e *signer.Entry) bool {
	r := s.catalog().RouteByName(e.Key.Route)
	if r == nil {
		return false
	}
	if r.Principal != "" {
		if r.Principal != e.Key.Principal {
			return false
		}
	} else if !slices.Contains(r.Principals, e.Key.Principal) {
		return false
	}
	if s.polStore != nil {
		d := s.polStore.Current().Evaluate(policy.Input{Subject: localUser(), Principal: e.Key.Principal, Route: r.Name, Bound: true})
		return d.Effect != policy.EffectDeny
	}
	return true
}

func (s *sources) catalog() *catalog.Catalog {
	if s.catStore != nil {
		return s.catStore.Current()
	}
	return s.inline
}

// authorizer adapts the policy in force to the agent (the built-in
// allow-all policy while no file exists).
func (s *sources) authorizer() agentproxy.Authorizer {
	if s.polStore == nil {
		return nil
	}
	deps := policy.DecideDeps{Askpass: os.Getenv("SSH_ASKPASS"), Logger: s.log}
	return func(ctx context.Context, req agentproxy.AuthRequest) agentproxy.AuthDecision {
		callers := make([]policy.Caller, len(req.Callers))
		for i, p := range req.Callers {
			callers[i] = policy.Caller{Pid: p.Pid, Exe: p.Exe, Name: p.Name}
		}
		d := s.polStore.Current().Decide(ctx, policy.Input{
			Subject: req.Subject, Principal: req.Principal, Host: req.Host, Hosts: req.Hosts, Route: req.Route,
			Callers: callers, Forwarded: req.Forwarded, Bound: req.Bound,
		}, deps)
		return authDecision(d)
	}
}

// authDecision is the agent's view of a policy decision, with what the
// audit log records of it: the rule, a confirmation, the gate's answer,
// and whether the gate failed open.
func authDecision(d policy.Decision) agentproxy.AuthDecision {
	out := agentproxy.AuthDecision{Allow: d.Effect == policy.EffectAllow, Rule: d.Rule, Reason: d.Reason,
		MaxTTL: time.Duration(d.MaxTTL), Confirmed: d.Confirmed, GateReason: d.GateReason}
	if out.Reason == "" {
		out.Reason = d.GateReason
	}
	if d.GateAllow != nil {
		out.Gate = "deny"
		if *d.GateAllow {
			out.Gate = "allow"
		}
		// Decide writes "gate unavailable (on_error: …)" when the gate
		// could not be asked; an allow then is a fail-open.
		out.FailOpen = *d.GateAllow && strings.HasPrefix(d.GateReason, policy.GateUnavailable)
	}
	return out
}

// hashes are the catalog and policy versions in force, for agent.start.
func (s *sources) hashes() (cat, pol string) {
	if s.catStore != nil {
		cat = "sha256:" + s.catStore.Hash()
	}
	if s.polStore != nil && s.polStore.Hash() != "" {
		pol = "sha256:" + s.polStore.Hash()
	}
	return cat, pol
}

// reload re-reads both files (SIGHUP).
func (s *sources) reload() error {
	var errs []error
	if s.catStore != nil {
		errs = append(errs, s.catStore.Reload())
	}
	if s.polStore != nil {
		errs = append(errs, s.polStore.Reload())
	}
	return errors.Join(errs...)
}

func (s *sources) close() {
	if s.catStore != nil {
		s.catStore.Close()
	}
	if s.polStore != nil {
		s.polStore.Close()
	}
}

// roleReaderFor is the OpenBao client `warden-agent drift` reads roles with.
func roleReaderFor(c *cli.Context) (catalog.RoleReader, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	if cfg.Signer.Kind != "openbao" {
		return nil, errors.New("drift compares routes with OpenBao roles: set signer.kind: openbao in agent.yaml (see docs/openbao.md)")
	}
	iss, _, err := newOpenBaoIssuer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return openBaoRoles{iss.(*signer.OpenBao)}, nil
}

type openBaoRoles struct{ b *signer.OpenBao }

func (o openBaoRoles) ReadRole(ctx context.Context, mount, role string) (catalog.RoleInfo, error) {
	r, err := o.b.ReadRole(ctx, mount, role)
	if err != nil {
		return catalog.RoleInfo{}, err
	}
	return catalog.RoleInfo{AllowedUsers: r.AllowedUsers, DefaultUser: r.DefaultUser}, nil
}
