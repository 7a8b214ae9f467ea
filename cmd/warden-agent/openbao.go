package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/netkingdom/ops-warden/signer"
)

// newOpenBaoIssuer builds the OpenBao issuer from agent.yaml's
// signer.openbao block and the BAO_*/VAULT_* environment.
func newOpenBaoIssuer(cfg *Config, log *slog.Logger) (signer.Issuer, func(), error) {
	var ob signer.OpenBaoConfig
	if cfg.Signer.OpenBao.Kind != 0 {
		// Node.Decode cannot refuse unknown fields; re-encode and decode
		// strictly so a misspelt option is an error.
		raw, err := yaml.Marshal(&cfg.Signer.OpenBao)
		if err != nil {
			return nil, nil, err
		}
		if err := decodeStrict(raw, &ob); err != nil {
			return nil, nil, fmt.Errorf("config %s: signer.openbao: %w", cfg.path, err)
		}
	}
	// The CA key is trusted on first use and recorded next to the audit log
	// unless agent.yaml pins it.
	b, err := signer.NewOpenBao(ob, signer.OpenBaoDeps{Logger: log, Now: time.Now, Getenv: os.Getenv, HomeDir: homeDir(), StateDir: stateDir()})
	if err != nil {
		return nil, nil, err
	}
	return b, func() { b.Close() }, nil
}
