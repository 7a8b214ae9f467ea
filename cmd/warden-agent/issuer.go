package main

import (
	"fmt"
	"log/slog"

	"github.com/netkingdom/ops-warden/signer"
)

// newIssuer builds the issuer agent.yaml asks for. close releases it.
func newIssuer(cfg *Config, log *slog.Logger) (iss signer.Issuer, close func(), err error) {
	switch cfg.Signer.Kind {
	case "local":
		ca, err := signer.OpenLocalCA(cfg.Signer.Local.CAKey, nil)
		if err != nil {
			return nil, nil, err
		}
		return ca, func() {}, nil
	case "openbao":
		return newOpenBaoIssuer(cfg, log)
	default:
		return nil, nil, fmt.Errorf("config: signer.kind %q is not one of local, openbao", cfg.Signer.Kind)
	}
}
