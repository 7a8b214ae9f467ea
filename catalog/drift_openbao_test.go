package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/signer/openbaotest"
)

// httpRoles reads roles over OpenBao's HTTP API (GET /v1/<mount>/roles/<role>),
// as the agent's adapter over its OpenBao client does; kept in test code so
// the catalog package itself never talks to OpenBao.
type httpRoles struct {
	addr, token string
	client      *http.Client
}

func (h httpRoles) ReadRole(ctx context.Context, mount, role string) (catalog.RoleInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.addr+"/v1/"+mount+"/roles/"+role, nil)
	if err != nil {
		return catalog.RoleInfo{}, err
	}
	req.Header.Set("X-Vault-Token", h.token)
	resp, err := h.client.Do(req)
	if err != nil {
		return catalog.RoleInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return catalog.RoleInfo{}, fmt.Errorf("status %s", resp.Status)
	}
	var body struct {
		Data struct {
			AllowedUsers string `json:"allowed_users"`
			DefaultUser  string `json:"default_user"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return catalog.RoleInfo{}, err
	}
	var users []string
	for _, u := range strings.Split(body.Data.AllowedUsers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			users = append(users, u)
		}
	}
	return catalog.RoleInfo{AllowedUsers: users, DefaultUser: body.Data.DefaultUser}, nil
}

// TestDriftAgainstOpenBaoTestServer runs drift against the OpenBao-compatible
// test server: role "eng" allows deploy, alice, root (the recorded setup);
// role "ops" matches its route exactly; role "gone" does not exist.
func TestDriftAgainstOpenBaoTestServer(t *testing.T) {
	srv := openbaotest.NewServer(t, openbaotest.Options{})
	srv.SetRole("ops", openbaotest.Role{AllowedUsers: []string{"ops", "deploy"}, DefaultUser: "ops", TTL: 5 * time.Minute, MaxTTL: time.Hour})
	cat, err := catalog.Parse("catalog.yaml", []byte(`routes:
  - name: eng
    hosts: ["*.eng.example.com"]
    mount: ssh
    role: eng
    principals: [deploy, dba]
  - name: ops
    hosts: ["*.ops.example.com"]
    mount: ssh
    role: ops
    principals: [deploy, ops]
  - name: gone
    hosts: ["*.old.example.com"]
    mount: ssh
    role: gone
    principals: [deploy]
`))
	if err != nil {
		t.Fatal(err)
	}
	reader := httpRoles{addr: srv.URL, token: srv.RootToken(), client: srv.Client()}
	rep, err := catalog.Drift(context.Background(), cat, reader)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift {
		t.Fatal("no drift reported")
	}
	eng, ops, gone := rep.Routes[0], rep.Routes[1], rep.Routes[2]
	if !slices.Equal(eng.CatalogOnly, []string{"dba"}) || !slices.Equal(eng.RoleOnly, []string{"alice", "root"}) || eng.DefaultUser != "deploy" {
		t.Errorf("eng: %+v", eng)
	}
	if ops.Drifted() {
		t.Errorf("ops: %+v", ops)
	}
	if gone.Error == "" || gone.Drifted() || !rep.Errors {
		t.Errorf("gone: %+v (report errors %v)", gone, rep.Errors)
	}
}
