package catalog

import (
	"context"
	"fmt"
	"slices"
)

// RoleInfo is what drift needs to know of an OpenBao SSH role
// (<mount>/roles/<role>).
type RoleInfo struct {
	// AllowedUsers is the role's allowed_users, split on commas; "*"
	// allows every user.
	AllowedUsers []string
	// DefaultUser is the role's default_user.
	DefaultUser string
}

// RoleReader reads OpenBao SSH roles. The agent adapts its OpenBao client
// to it; the catalog package does not talk to OpenBao itself.
type RoleReader interface {
	ReadRole(ctx context.Context, mount, role string) (RoleInfo, error)
}

// RouteDrift is the comparison of one route with its role.
type RouteDrift struct {
	Route string `json:"route"`
	Mount string `json:"mount,omitempty"`
	Role  string `json:"role,omitempty"`
	// CatalogOnly are principals the catalog issues for that the role
	// does not allow: issuance for them fails at OpenBao.
	CatalogOnly []string `json:"catalog_only,omitempty"`
	// RoleOnly are users the role allows that the catalog does not: a
	// wider door than the catalog says.
	RoleOnly []string `json:"role_only,omitempty"`
	// RoleAllowsAll is set when the role's allowed_users is "*".
	RoleAllowsAll bool `json:"role_allows_all,omitempty"`
	// DefaultUser is the role's default_user, for the report.
	DefaultUser string `json:"default_user,omitempty"`
	// Skipped says why the route was not compared (no mount/role: the
	// local CA).
	Skipped string `json:"skipped,omitempty"`
	// Error is why the role could not be read (permission denied,
	// unreachable, no such role): the route was not compared, which is
	// not drift but an incomplete check.
	Error string `json:"error,omitempty"`
}

// Drifted reports whether this route differs from its role.
func (d RouteDrift) Drifted() bool {
	return len(d.CatalogOnly) > 0 || len(d.RoleOnly) > 0
}

// DriftReport is the result of Drift.
type DriftReport struct {
	Routes []RouteDrift `json:"routes"`
	// Drift is true when any route drifted.
	Drift bool `json:"drift"`
	// Errors is true when a role could not be read: the check is
	// incomplete (warden-agent drift exits 2).
	Errors bool `json:"errors"`
}

// Drift compares each route's principals with its OpenBao role's
// allowed_users. The catalog's principals for a route are its fixed
// principal if it has one (that is what every certificate carries),
// otherwise its principals list. A role whose allowed_users is "*" allows
// every catalog principal. A role that cannot be read is reported on its
// route; Drift returns an error only when ctx ends.
func Drift(ctx context.Context, cat *Catalog, reader RoleReader) (DriftReport, error) {
	var rep DriftReport
	for i := range cat.Routes {
		r := &cat.Routes[i]
		d := RouteDrift{Route: r.Name, Mount: r.Mount, Role: r.Role}
		if r.Mount == "" || r.Role == "" {
			d.Skipped = "no mount/role: certificates come from the local CA"
			rep.Routes = append(rep.Routes, d)
			continue
		}
		info, err := reader.ReadRole(ctx, r.Mount, r.Role)
		if err != nil {
			if ctx.Err() != nil {
				return rep, fmt.Errorf("drift: %w", ctx.Err())
			}
			d.Error = fmt.Sprintf("read role %s/roles/%s: %v", r.Mount, r.Role, err)
			rep.Routes = append(rep.Routes, d)
			rep.Errors = true
			continue
		}
		want := r.Principals
		if r.Principal != "" {
			want = []string{r.Principal}
		}
		d.DefaultUser = info.DefaultUser
		d.RoleAllowsAll = slices.Contains(info.AllowedUsers, "*")
		for _, p := range want {
			if !d.RoleAllowsAll && !slices.Contains(info.AllowedUsers, p) {
				d.CatalogOnly = append(d.CatalogOnly, p)
			}
		}
		for _, u := range info.AllowedUsers {
			if u != "*" && u != "" && !slices.Contains(want, u) {
				d.RoleOnly = append(d.RoleOnly, u)
			}
		}
		slices.Sort(d.CatalogOnly)
		slices.Sort(d.RoleOnly)
		rep.Drift = rep.Drift || d.Drifted()
		rep.Routes = append(rep.Routes, d)
	}
	return rep, nil
}
