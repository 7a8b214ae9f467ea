package agentproxy

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"
)

// ExtStatus asks the agent for its state (`warden-agent status`). This
// package answers from memory; Config.StatusExtra may ask the issuer,
// within a deadline.
const ExtStatus = "status@ops-warden.netkingdom"

// Status is the agent's state as `warden-agent status` prints it.
type Status struct {
	Version   string    `json:"version"`
	Pid       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	UptimeSec int64     `json:"uptime_seconds"`
	Socket    string    `json:"socket"`
	Locked    bool      `json:"locked"`
	// PeerIdentity names where this platform's peer facts come from and
	// which it cannot give (docs/platforms.md); rules needing a missing
	// fact fail closed.
	PeerIdentity string `json:"peer_identity"`

	Upstream     UpstreamStatus `json:"upstream"`
	Certificates []CertStatus   `json:"certificates"`
	Counters     Counters       `json:"counters"`
	// IssueLatency covers every issuance attempt, failed ones included.
	IssueLatency Histogram `json:"issue_latency"`
	// Routes that let clients without session-bind sign (tunnels).
	UnboundRoutes []string `json:"unbound_routes,omitempty"`

	// Extra is what the command wiring adds: issuer, catalog, policy,
	// audit (see cmd/warden-agent/status.go).
	Extra any `json:"extra,omitempty"`
}

// UpstreamStatus says whether the user's own agent answers.
type UpstreamStatus struct {
	Path      string `json:"path,omitempty"`
	Reachable bool   `json:"reachable"`
	Keys      int    `json:"keys"`
	Error     string `json:"error,omitempty"`
}

// CertStatus is one cached certificate.
type CertStatus struct {
	Route        string    `json:"route"`
	Principal    string    `json:"principal"`
	Serial       string    `json:"serial"`
	ValidBefore  time.Time `json:"valid_before"`
	ExpiresInSec int64     `json:"expires_in_seconds"`
}

// Counters are totals since start.
type Counters struct {
	Issued         uint64 `json:"issued"`
	IssueFailed    uint64 `json:"issue_failed"`
	Used           uint64 `json:"used"`
	Denied         uint64 `json:"denied"`
	UpstreamSigned uint64 `json:"upstream_signed"`
	RefusedPeers   uint64 `json:"refused_peers"`
}

// status answers ExtStatus.
// Only the warden-agent program on an unbound connection gets here
// (permit, actExtension): a remote host never reads it.
func (c *conn) status() ([]byte, error) {
	s := c.s
	now := s.cfg.Now()
	st := Status{
		Version: s.cfg.Version, Pid: os.Getpid(), StartedAt: s.started, UptimeSec: int64(now.Sub(s.started).Seconds()),
		Socket: s.cfg.SocketPath, Locked: s.isLocked(), PeerIdentity: peerIdentitySource,
		Counters: Counters{
			Issued: s.stats.Issued.Load(), IssueFailed: s.stats.IssueFailed.Load(), Used: s.stats.Used.Load(),
			Denied: s.stats.Denied.Load(), UpstreamSigned: s.stats.UpstreamSigned.Load(), RefusedPeers: s.stats.Refused.Load(),
		},
	}
	st.IssueLatency = s.latency.snapshot()
	for _, e := range s.cache.Valid() {
		st.Certificates = append(st.Certificates, CertStatus{
			Route: e.Key.Route, Principal: e.Key.Principal, Serial: fmt.Sprintf("%x", e.Cert.Serial), // as OpenBao writes it
			ValidBefore: e.ValidBefore().UTC(), ExpiresInSec: int64(e.ValidBefore().Sub(now).Seconds()),
		})
	}
	sort.Slice(st.Certificates, func(i, j int) bool {
		return st.Certificates[i].Route+st.Certificates[i].Principal < st.Certificates[j].Route+st.Certificates[j].Principal
	})
	for _, r := range s.cfg.Catalog().Routes {
		if !r.BindRequired() {
			st.UnboundRoutes = append(st.UnboundRoutes, r.Name)
		}
	}
	st.Upstream.Path = s.cfg.Upstream
	if s.cfg.Upstream != "" {
		if up, err := c.upstreamAgent(); err != nil {
			st.Upstream.Error = err.Error()
		} else if keys, err := up.List(); err != nil {
			st.Upstream.Error = err.Error()
		} else {
			st.Upstream.Reachable, st.Upstream.Keys = true, len(keys)
		}
	}
	if s.cfg.StatusExtra != nil {
		// The wiring asks the issuer now (health, token); the CLI waits 5s.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st.Extra = s.cfg.StatusExtra(ctx)
	}
	return jsonReply(st)
}
