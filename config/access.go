package config

import "sort"

// User returns the user called name, or nil if there is none.
func (c *Config) User(name string) *User {
	for _, u := range c.Users {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// Allowed reports whether the user called user may do what permission
// names ("view", "force", "stop", "rebuild", "cancel", "pause",
// "reconfig"): one of the user's roles grants it, or grants "admin",
// which implies every permission, on every builder (roles limited to
// some builders count only for AllowedOn). Unknown users, unknown roles
// and unknown permissions are never allowed. The SSH server and the web UI
// both decide with it, so that a user has the same rights in each.
func (c *Config) Allowed(user, permission string) bool {
	u := c.User(user)
	if u == nil || !contains(permissions, permission) {
		return false
	}
	for _, rn := range u.Roles {
		r := c.Role(rn)
		if r == nil || r.Builders != nil {
			continue
		}
		if contains(r.Can, permission) || contains(r.Can, "admin") {
			return true
		}
	}
	return false
}

// Permissions returns, sorted, every permission the user called user
// has through their roles ("admin" expanded to all of them); nil for an
// unknown user or one without roles.
func (c *Config) Permissions(user string) []string {
	var out []string
	for _, p := range permissions {
		if c.Allowed(user, p) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
