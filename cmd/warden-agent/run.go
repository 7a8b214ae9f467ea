package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/netkingdom/ops-warden/agentproxy"
	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/internal/harden"
	"github.com/netkingdom/ops-warden/signer"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the agent in the foreground",
		UsageText: "warden-agent run [--socket PATH] [--upstream PATH|none]\n\n" +
			"Example:\n   warden-agent run &\n   warden-agent ssh-config >> ~/.ssh/config   # once; SSH_AUTH_SOCK stays on your own agent",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "upstream", Usage: "the user's own agent `SOCKET`, or none", DefaultText: "$SSH_AUTH_SOCK at start"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
		},
		Action: runAgent,
	}
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runAgent(c *cli.Context) error {
	// Before any key or token is in memory: no debugger, no core file.
	if err := harden.Process(); err != nil {
		return fmt.Errorf("%w; the agent does not run without this protection", err)
	}
	// Catch signals before the socket exists: a SIGTERM sent as soon as the
	// banner appears must still stop the agent cleanly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	level := c.String("log-level")
	if !c.IsSet("log-level") && cfg.Log.Level != "" {
		level = cfg.Log.Level
	}
	logger, err := newLogger(level, os.Stderr)
	if err != nil {
		return err
	}
	// x/crypto's agent server reports malformed messages through the
	// standard logger; send those to ours at debug level.
	log.SetFlags(0)
	log.SetOutput(slogWriter{logger})

	upstream := cfg.Upstream
	if c.IsSet("upstream") {
		upstream = c.String("upstream")
	}
	if upstream == "" {
		upstream = os.Getenv("SSH_AUTH_SOCK")
	}
	if upstream == "none" {
		upstream = ""
	}
	if upstream != "" && agentproxy.IsWarden(upstream, 2*time.Second) {
		return fmt.Errorf("upstream agent %s is a warden-agent, not your own agent; start warden-agent with the SSH_AUTH_SOCK of your real agent, or --upstream none", upstream)
	}
	unlockState, err := lockStateDir()
	if err != nil {
		return err
	}
	defer unlockState()

	iss, closeIssuer, err := newIssuer(cfg, logger)
	if err != nil {
		return err
	}
	defer closeIssuer()
	if ob, ok := iss.(*signer.OpenBao); ok {
		ob.StartTokenLifecycle() // the agent keeps its token alive; one-shot commands do not
	}

	known, err := catalog.LoadKnownHosts(cfg.KnownHosts...)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	rec, closeAudit, err := openAudit(cfg, logger)
	if err != nil {
		return err
	}
	defer closeAudit()
	hooks := &reloadHooks{record: func(event string, fields map[string]any) {
		logger.Info(event, "path", fields["path"], "error", fields["error"])
		if err := rec.Record(context.Background(), event, fields); err != nil {
			logger.Error("reload not recorded in the audit log", "event", event, "err", err)
		}
	}}
	src, err := openSources(cfg, logger, hooks)
	if err != nil {
		return err
	}
	defer src.close()
	health := &healthSampler{}
	if hc, ok := iss.(healthChecker); ok {
		hctx, stopHealth := context.WithCancel(context.Background())
		defer stopHealth()
		go health.sample(hctx, hc, 30*time.Second)
	}

	// Under socket activation the socket served is systemd's (or, on
	// macOS, the one of the plist's Sockets key), whatever the config
	// says: status must report that one.
	ln, err := agentproxy.SystemdListener()
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = agentproxy.LaunchdListener(launchdSocketName); err != nil {
			return err
		}
	}
	if ln != nil {
		cfg.Socket = ln.Addr().String()
	}
	obs := observe(iss)
	srv, err := agentproxy.New(agentproxy.Config{
		Issuer:       obs,
		Catalog:      src.catalog,
		Authorize:    src.authorizer(),
		KnownHosts:   func() *catalog.KnownHosts { return known },
		Recorder:     rec,
		Logger:       logger,
		Upstream:     upstream,
		SocketPath:   cfg.Socket,
		ListDeadline: time.Duration(cfg.ListDeadline),
		LocalUser:    localUser(),
		HintProgram:  hintProgram(),
		Version:      version,
		StatusExtra:  statusExtra(iss, obs, health, src, rec),
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	hooks.cache.Store(srv.Cache())

	if ln == nil {
		if ln, err = agentproxy.Listen(cfg.Socket); err != nil {
			return err
		}
	}

	if err := printBanner(c.App.Writer, cfg, iss, upstream); err != nil {
		ln.Close()
		return err
	}
	catHash, polHash := src.hashes()
	_ = rec.Record(context.Background(), "agent.start", map[string]any{
		"version": version, "pid": os.Getpid(), "socket": cfg.Socket, "issuer": iss.Kind(),
		"issuer_address": iss.Address(), "config": cfg.path, "upstream": upstream,
		"catalog": cfg.Catalog.Path, "catalog_hash": catHash, "policy": cfg.Policy.Path, "policy_hash": polHash,
	})

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	for {
		select {
		case err := <-served:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				logger.Info("SIGHUP: reopening the audit log, reloading catalog and policy")
				rec.Reopen()
				if err := src.reload(); err != nil {
					logger.Warn("reload refused; the last good version stays in force", "err", err)
				}
				continue
			}
			logger.Info("stopping", "signal", sig.String())
			ln.Close() // stop accepting; removes the socket file
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			srv.Shutdown(ctx)
			cancel()
			<-served
			_ = rec.Record(context.Background(), "agent.stop", map[string]any{"pid": os.Getpid(), "signal": sig.String()})
			return nil
		}
	}
}

// initialCatalog is the inline routes of agent.yaml, or the default route
// (every host, principal = the local user) when there are none.
func initialCatalog(cfg *Config) (*catalog.Catalog, error) {
	if len(cfg.Routes) == 0 {
		return catalog.Default(localUser()), nil
	}
	cat := &catalog.Catalog{Routes: cfg.Routes}
	if err := cat.Prepare(); err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.path, err)
	}
	return cat, nil
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// printBanner tells the user how to use the agent: the SSH_AUTH_SOCK line
// and, for the local CA, the line a test server's TrustedUserCAKeys file
// needs.
func printBanner(w io.Writer, cfg *Config, iss interface {
	Kind() string
	Address() string
	CAPublicKey(context.Context) (ssh.PublicKey, error)
}, upstream string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up := upstream
	if up == "" {
		up = "none"
	}
	fmt.Fprintf(w, "warden-agent %s listening on %s (issuer: %s %s; upstream agent: %s)\n", version, cfg.Socket, iss.Kind(), iss.Address(), up)
	if iss.Kind() == "local" {
		fmt.Fprintln(w, "local CA: development and single-machine mode; configure signer.kind: openbao for teams")
	}
	fmt.Fprintf(w, "\nNext: send ssh to it for the hosts it serves (keep SSH_AUTH_SOCK on your own agent: ssh uses it whenever warden is down):\n  warden-agent ssh-config >> ~/.ssh/config\n")
	fmt.Fprintf(w, "Programs that do not read ~/.ssh/config: SSH_AUTH_SOCK=%s\n", cfg.Socket)
	key, err := iss.CAPublicKey(ctx)
	if err != nil {
		fmt.Fprintf(w, "\nCA key unavailable (%v); `warden-agent ca` prints it once the issuer answers\n", err)
		return nil
	}
	fmt.Fprintf(w, "\nTrust it on a test server: add this line to the file sshd_config's TrustedUserCAKeys names:\n  %s", ssh.MarshalAuthorizedKey(key))
	fmt.Fprintln(w)
	return nil
}

// slogWriter turns standard-library log output into debug records.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("agent protocol", "msg", string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
