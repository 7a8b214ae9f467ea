package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// RoleUsers is what a role allows, as `warden-agent drift` needs it.
type RoleUsers struct {
	// AllowedUsers is the role's allowed_users, split; "*" allows any.
	AllowedUsers []string
	DefaultUser  string
}

// ReadRole reads <mount>/roles/<role> (needs read on that path).
func (o *OpenBao) ReadRole(ctx context.Context, mount, role string) (RoleUsers, error) {
	mount = strings.Trim(mount, "/")
	if mount == "" {
		mount = o.cfg.mount
	}
	tok, err := o.tokens.get(ctx)
	if err != nil {
		return RoleUsers{}, err
	}
	path := mount + "/roles/" + role
	resp, err := o.do(ctx, http.MethodGet, path, nil, tok.value, nil)
	if err != nil {
		return RoleUsers{}, err
	}
	if resp.status != http.StatusOK {
		return RoleUsers{}, fmt.Errorf("openbao: read %s at %s: %d %s (the token needs read on %s)", path, resp.addr, resp.status, errorMessage(resp.body), path)
	}
	var out struct {
		Data struct {
			AllowedUsers string `json:"allowed_users"`
			DefaultUser  string `json:"default_user"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return RoleUsers{}, fmt.Errorf("openbao: read %s: %w", path, err)
	}
	var users []string
	for _, u := range strings.Split(out.Data.AllowedUsers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			users = append(users, u)
		}
	}
	return RoleUsers{AllowedUsers: users, DefaultUser: out.Data.DefaultUser}, nil
}
