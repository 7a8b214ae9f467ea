package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/netkingdom/ops-warden/agentproxy"
	"github.com/netkingdom/ops-warden/audit"
)

// auditRecorder adapts the audit log to the agent's Recorder.
type auditRecorder struct{ log *audit.Log }

func (a auditRecorder) Record(ctx context.Context, event string, fields map[string]any) error {
	_, err := a.log.Append(ctx, event, fields)
	return err
}

var _ agentproxy.FieldsRecorder = auditRecorder{}

// RecordFields and RecordFieldsLater make it an agentproxy.FieldsRecorder:
// the per-signature records skip the map encoding.
func (a auditRecorder) RecordFields(ctx context.Context, event string, f *audit.Fields) error {
	_, err := a.log.AppendFields(ctx, event, f)
	return err
}

func (a auditRecorder) RecordFieldsLater(event string, f *audit.Fields, done func(error)) bool {
	return a.log.AppendLater(event, f, done)
}

func (a auditRecorder) Head() string {
	_, h := a.log.Head()
	return h
}

func (a auditRecorder) Reopen() error { return a.log.Reopen() }

func openAudit(cfg *Config, logger *slog.Logger) (auditRecorder, func(), error) {
	l, err := audit.Open(audit.Options{Path: cfg.Audit.Path, MaxSize: cfg.Audit.MaxSize, Keep: cfg.Audit.Keep, MinAge: time.Duration(cfg.Audit.MinAge), Logger: logger})
	if err != nil {
		return auditRecorder{}, nil, err
	}
	return auditRecorder{l}, func() { l.Close() }, nil
}

// lockStateDir takes the state directory's lock (agent.lock) for the
// agent's lifetime, so that a second agent on the same directory refuses
// to start instead of writing the same audit log and CA key. The returned
// function releases it.
func lockStateDir() (func(), error) {
	dir := stateDir()
	l, err := audit.LockFile(filepath.Join(dir, "agent.lock"))
	var held *audit.LockedError
	if errors.As(err, &held) {
		who, stop := "another warden-agent", "stop it (`systemctl --user stop warden-agent`)"
		if held.PID > 0 {
			who = fmt.Sprintf("another warden-agent (pid %d)", held.PID)
			stop = fmt.Sprintf("stop it (`kill %d` or `systemctl --user stop warden-agent`)", held.PID)
		}
		return nil, fmt.Errorf("%s is already running on the state directory %s (it holds %s); two agents would write one audit log and break its chain. Use that agent (`warden-agent status`), %s, "+
			"or give this one its own state directory and socket: XDG_STATE_HOME=DIR warden-agent --socket PATH run", who, dir, held.Path, stop)
	}
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	return func() { l.Unlock() }, nil
}
