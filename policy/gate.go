package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// What the gate's on_error does when the gate cannot answer.
const (
	OnErrorDeny  = "deny"
	OnErrorAllow = "allow"
)

// DefaultGateTimeout bounds a gate request when the file names no timeout.
const DefaultGateTimeout = 2 * time.Second

// maxGateResponse bounds the gate's answer; a decision is a few bytes.
const maxGateResponse = 64 << 10

// Gate is the organisation's external decision service. After the rules
// allow (and any confirmation), the agent POSTs the request to URL and
// follows the answer.
type Gate struct {
	// Enabled turns the gate on; false keeps it configured but off.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// URL receives the POST.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one request; DefaultGateTimeout when unset.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// OnError is deny (default) or allow: what an unanswered, failed,
	// non-2xx or malformed request decides.
	OnError string `yaml:"on_error,omitempty" json:"on_error,omitempty"`

	// Client sends the request; nil means http.DefaultClient. Decide
	// sets it from DecideDeps on a copy, so a shared Policy is never
	// written to.
	Client *http.Client `yaml:"-" json:"-"`
}

// GateRequest is the JSON body POSTed to the gate.
type GateRequest struct {
	Subject   string `json:"subject"`
	Principal string `json:"principal"`
	Host      string `json:"host"`
	// Hosts are the names of the bound host key when ssh sent no hint.
	Hosts []string `json:"hosts,omitempty"`
	Route string   `json:"route"`
	// Caller is the executable of the nearest caller.
	Caller    string `json:"caller"`
	Forwarded bool   `json:"forwarded"`
}

// GateResult is the gate's JSON answer.
type GateResult struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason"`
}

// GateRequestFor builds the gate's request from an Input.
func GateRequestFor(in Input) GateRequest {
	req := GateRequest{Subject: in.Subject, Principal: in.Principal, Host: in.Host, Hosts: in.Hosts, Route: in.Route, Forwarded: in.Forwarded}
	if len(in.Callers) > 0 {
		req.Caller = in.Callers[0].Exe
		if req.Caller == "" {
			req.Caller = in.Callers[0].Name
		}
	}
	return req
}

func (g *Gate) timeout() time.Duration {
	if g.Timeout <= 0 {
		return DefaultGateTimeout
	}
	return time.Duration(g.Timeout)
}

func (g *Gate) onError() string {
	if g.OnError == "" {
		return OnErrorDeny
	}
	return g.OnError
}

// Check asks the gate. Any failure (network, timeout, non-2xx status,
// an answer that is not {"allow": bool, ...}) is an error; the caller
// applies on_error (Decide does). The request is bounded by the gate's
// timeout as well as by ctx.
func (g *Gate) Check(ctx context.Context, req GateRequest) (GateResult, error) {
	client := g.Client
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout())
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return GateResult{}, fmt.Errorf("gate request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(body))
	if err != nil {
		return GateResult{}, fmt.Errorf("gate request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return GateResult{}, fmt.Errorf("gate %s: %w", g.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxGateResponse+1))
	if err != nil {
		return GateResult{}, fmt.Errorf("gate %s: read answer: %w", g.URL, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return GateResult{}, fmt.Errorf("gate %s: status %s", g.URL, resp.Status)
	}
	if len(data) > maxGateResponse {
		return GateResult{}, fmt.Errorf("gate %s: answer larger than %d bytes", g.URL, maxGateResponse)
	}
	// allow must be present: a missing field must not read as "deny" or,
	// worse, be taken for a decision at all.
	var raw struct {
		Allow  *bool  `json:"allow"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return GateResult{}, fmt.Errorf("gate %s: malformed answer: %w", g.URL, err)
	}
	if raw.Allow == nil {
		return GateResult{}, fmt.Errorf("gate %s: malformed answer: no \"allow\" field", g.URL)
	}
	return GateResult{Allow: *raw.Allow, Reason: raw.Reason}, nil
}
