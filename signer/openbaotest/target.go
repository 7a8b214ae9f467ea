package openbaotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"
	"golang.org/x/crypto/ssh"
)

// Environment variables that select a real OpenBao server for the tests.
const (
	EnvAddr  = "WARDEN_TEST_BAO_ADDR"
	EnvToken = "WARDEN_TEST_BAO_TOKEN"
	// EnvAddrs names the nodes of a real HA cluster, comma-separated (with
	// EnvToken); see RealCluster.
	EnvAddrs = "WARDEN_TEST_BAO_ADDRS"
)

// Target is what a test needs to talk to an OpenBao server, whether it is
// this package's Server or a real one prepared by Real. On both the SSH
// mount has a role "eng" like shared/openbao/README.md's, a policy granting
// <mount>/sign/eng, and an AppRole with that policy.
type Target struct {
	// Address is the server's base URL.
	Address string
	// Addresses are a cluster's nodes (Cluster, RealCluster); nil otherwise.
	Addresses []string
	// Mount is the SSH secrets engine mount (random on a real server).
	Mount string
	// Role is the role every test signs with ("eng").
	Role string
	// Policy is the name of the policy that allows <mount>/sign/eng.
	Policy string
	// RoleID and SecretID are the AppRole's credentials.
	RoleID, SecretID string
	// AppRoleMount is the AppRole auth mount (random on a real server).
	AppRoleMount string
	// CAPublicKey is the key <mount>/public_key serves.
	CAPublicKey ssh.PublicKey
	// HTTPClient trusts the server's TLS certificate, if any.
	HTTPClient *http.Client
	// Fake is the test server, nil on a real server; tests that need its
	// knobs skip when it is nil.
	Fake *Server
	// Cluster is the test cluster, nil otherwise; tests that need its
	// switches skip when it is nil.
	Cluster *Cluster

	newToken      func(t testing.TB, ttl time.Duration) string
	revoke        func(t testing.TB, token string)
	revokeAppRole func(t testing.TB)
}

// Target describes s as a Target.
func (s *Server) Target() *Target {
	rid, sid := s.AppRole()
	return &Target{
		Address:      s.URL,
		Mount:        s.mount,
		Role:         "eng",
		Policy:       "warden-eng",
		RoleID:       rid,
		SecretID:     sid,
		AppRoleMount: s.approle,
		CAPublicKey:  s.CAPublicKey(),
		HTTPClient:   s.Client(),
		Fake:         s,
		newToken: func(t testing.TB, ttl time.Duration) string {
			return s.CreateToken([]string{"default", "warden-eng"}, ttl, true)
		},
		revoke:        func(t testing.TB, tok string) { s.RevokeToken(tok) },
		revokeAppRole: func(t testing.TB) { s.revokeByPath("auth/" + s.approle + "/") },
	}
}

// RevokeAppRoleTokens revokes every token issued by the target's AppRole,
// as if the agent's token had been revoked behind its back.
func (tg *Target) RevokeAppRoleTokens(t testing.TB) {
	t.Helper()
	tg.revokeAppRole(t)
}

// NewToken returns a fresh renewable token with the target's policy.
func (tg *Target) NewToken(t testing.TB, ttl time.Duration) string {
	t.Helper()
	return tg.newToken(t, ttl)
}

// RevokeToken revokes tok.
func (tg *Target) RevokeToken(t testing.TB, tok string) {
	t.Helper()
	tg.revoke(t, tok)
}

// Real prepares a real OpenBao server named by WARDEN_TEST_BAO_ADDR, using
// the root token in WARDEN_TEST_BAO_TOKEN (use a throw-away dev server):
// it enables an SSH mount and an AppRole mount with random names, generates
// a CA (ed25519 where the server supports it), writes the role "eng", a
// policy and an AppRole, and removes all of it with t.Cleanup. It returns
// nil when the variables are not set.
func Real(t testing.TB) *Target {
	t.Helper()
	addr, root := os.Getenv(EnvAddr), os.Getenv(EnvToken)
	if addr == "" || root == "" {
		return nil
	}
	return prepareReal(t, addr, root)
}

// RealCluster prepares a real OpenBao cluster whose nodes
// WARDEN_TEST_BAO_ADDRS lists (comma-separated), as Real does through its
// first node, and returns a Target with Addresses set. It returns nil when
// the variables are not set.
func RealCluster(t testing.TB) *Target {
	t.Helper()
	list, root := os.Getenv(EnvAddrs), os.Getenv(EnvToken)
	if list == "" || root == "" {
		return nil
	}
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	tg := prepareReal(t, addrs[0], root)
	tg.Addresses = addrs
	return tg
}

func prepareReal(t testing.TB, addr, root string) *Target {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("openbaotest: client for %s: %v", addr, err)
	}
	c.SetToken(root)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	suffix := randHex(4)
	mount := "warden-test-ssh-" + suffix
	approle := "warden-test-approle-" + suffix
	policy := "warden-test-" + suffix
	fatal := func(what string, err error) {
		t.Helper()
		t.Fatalf("openbaotest: real server %s: %s: %v", addr, what, err)
	}
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	}

	if err := c.Sys().MountWithContext(ctx, mount, &api.MountInput{Type: "ssh"}); err != nil {
		fatal("enable ssh mount", err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		_ = c.Sys().UnmountWithContext(ctx, mount)
	})
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/config/ca", map[string]any{
		"generate_signing_key": true, "key_type": "ssh-ed25519",
	}); err != nil {
		// Older servers know only RSA CAs.
		if _, err := c.Logical().WriteWithContext(ctx, mount+"/config/ca", map[string]any{"generate_signing_key": true}); err != nil {
			fatal("generate CA", err)
		}
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/roles/eng", map[string]any{
		"key_type": "ca", "allow_user_certificates": true, "allowed_users": "deploy,alice,root",
		"default_user": "deploy", "ttl": "5m", "max_ttl": "1h",
		"allowed_extensions": "permit-pty,permit-port-forwarding",
		"default_extensions": map[string]string{"permit-pty": ""},
	}); err != nil {
		fatal("write role eng", err)
	}
	rules := fmt.Sprintf(`
path "%[1]s/sign/eng"          { capabilities = ["update"] }
path "%[1]s/public_key"        { capabilities = ["read"] }
path "auth/token/lookup-self"  { capabilities = ["read"] }
path "auth/token/renew-self"   { capabilities = ["update"] }
`, mount)
	if err := c.Sys().PutPolicyWithContext(ctx, policy, rules); err != nil {
		fatal("write policy", err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		_ = c.Sys().DeletePolicyWithContext(ctx, policy)
	})
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, approle, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		fatal("enable approle", err)
	}
	t.Cleanup(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		_ = c.Sys().DisableAuthWithContext(ctx, approle)
	})
	if _, err := c.Logical().WriteWithContext(ctx, "auth/"+approle+"/role/warden", map[string]any{
		"token_policies": policy, "token_ttl": "20m", "token_max_ttl": "1h",
	}); err != nil {
		fatal("write approle role", err)
	}
	sec, err := c.Logical().ReadWithContext(ctx, "auth/"+approle+"/role/warden/role-id")
	if err != nil || sec == nil {
		fatal("read role-id", err)
	}
	roleID, _ := sec.Data["role_id"].(string)
	sec, err = c.Logical().WriteWithContext(ctx, "auth/"+approle+"/role/warden/secret-id", nil)
	if err != nil || sec == nil {
		fatal("create secret-id", err)
	}
	secretID, _ := sec.Data["secret_id"].(string)

	resp, err := c.Logical().ReadRawWithContext(ctx, mount+"/public_key")
	if err != nil {
		fatal("read public_key", err)
	}
	defer resp.Body.Close()
	pubText, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		fatal("read public_key", err)
	}
	ca, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		fatal("parse public_key", err)
	}

	return &Target{
		Address:      addr,
		Mount:        mount,
		Role:         "eng",
		Policy:       policy,
		RoleID:       roleID,
		SecretID:     secretID,
		AppRoleMount: approle,
		CAPublicKey:  ca,
		newToken: func(t testing.TB, ttl time.Duration) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sec, err := c.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
				Policies: []string{policy}, TTL: ttl.String(), Renewable: ptr(true),
			})
			if err != nil || sec == nil || sec.Auth == nil {
				t.Fatalf("openbaotest: create token: %v", err)
			}
			tok := sec.Auth.ClientToken
			t.Cleanup(func() {
				ctx, cancel := cleanupCtx()
				defer cancel()
				_ = c.Auth().Token().RevokeTreeWithContext(ctx, tok)
			})
			return tok
		},
		revoke: func(t testing.TB, tok string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Auth().Token().RevokeTreeWithContext(ctx, tok); err != nil {
				t.Fatalf("openbaotest: revoke token: %v", err)
			}
		},
		revokeAppRole: func(t testing.TB) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sec, err := c.Logical().ListWithContext(ctx, "auth/token/accessors")
			if err != nil || sec == nil {
				t.Fatalf("openbaotest: list token accessors: %v", err)
			}
			keys, _ := sec.Data["keys"].([]any)
			for _, k := range keys {
				acc, _ := k.(string)
				info, err := c.Logical().WriteWithContext(ctx, "auth/token/lookup-accessor", map[string]any{"accessor": acc})
				if err != nil || info == nil {
					continue
				}
				if p, _ := info.Data["path"].(string); strings.HasPrefix(p, "auth/"+approle+"/") {
					if _, err := c.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": acc}); err != nil {
						t.Fatalf("openbaotest: revoke accessor: %v", err)
					}
				}
			}
		},
	}
}

func ptr[T any](v T) *T { return &v }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
