package main

import (
	"context"
	"log/slog"

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
	l, err := audit.Open(audit.Options{Path: cfg.Audit.Path, MaxSize: cfg.Audit.MaxSize, Keep: cfg.Audit.Keep, Logger: logger})
	if err != nil {
		return auditRecorder{}, nil, err
	}
	return auditRecorder{l}, func() { l.Close() }, nil
}
