package config

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
)

// Permissions a role can grant.
var permissions = []string{"view", "force", "stop", "rebuild", "cancel", "pause", "reconfig", "admin"}

// Role is a set of permissions, declared with role() or built in.
type Role struct {
	Name string
	Can  []string // permissions, from "view", "force", "stop", "rebuild", "cancel", "pause", "reconfig", "admin"
	Pos  Pos      // zero for a built-in role
	// Builders are glob patterns of the builders Can applies to (role(builders=...),
	// see Covers); nil means every builder.
	Builders []string
}

// BuiltinRoles are the roles every configuration has: viewer, developer
// and admin. role() cannot redefine them.
var BuiltinRoles = []*Role{
	{Name: "viewer", Can: []string{"view"}},
	{Name: "developer", Can: []string{"view", "force", "stop", "rebuild", "cancel"}},
	{Name: "admin", Can: permissions},
}

// Role returns the role called name, declared or built in, or nil.
func (c *Config) Role(name string) *Role {
	for _, r := range c.Roles {
		if r.Name == name {
			return r
		}
	}
	for _, r := range BuiltinRoles {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// User is a person who can log in to the web UI (web_auth="users") or the
// SSH server.
type User struct {
	Name string
	// PasswordHash is a bcrypt hash ("$2a$…", "$2b$…" or "$2y$…"); "" means
	// the user cannot log in with a password.
	PasswordHash string
	Keys         []string // SSH public keys in authorized_keys format; nil when none
	// AuthorizedKeys is the absolute path of an authorized_keys file, read
	// when the user logs in; "" if none.
	AuthorizedKeys string
	Roles          []string // names of declared or built-in roles
	Tokens         []string // names of the secrets that are its API tokens (webauth.go)
	Pos            Pos
}

var roleParams = []param{
	{name: "name", required: true, positional: true},
	{name: "can", required: true},
}

// builtinRole implements role(name, can=[...]).
func builtinRole(c *call) (starlark.Value, error) {
	r := &Role{Pos: c.pos}
	r.Name = c.nonEmptyStr("name", "")
	for _, p := range c.strList("can") {
		if !contains(permissions, p) {
			c.argErrorf("can", "unknown permission %q%s; want one of %s", p, didYouMean(p, permissions), strings.Join(permissions, ", "))
			continue
		}
		r.Can = append(r.Can, p)
	}
	roleWebExtras(c, r) // webauth.go
	if r.Name != "" {
		d := c.l.decls()
		d.roles = append(d.roles, r)
	}
	return c.named("role", r.Name, r), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var userParams = []param{
	{name: "name", required: true, positional: true},
	{name: "password_hash"},
	{name: "keys"},
	{name: "authorized_keys"},
	{name: "roles"},
}

var bcryptHash = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// builtinUser implements user(name, password_hash=None, keys=[],
// authorized_keys=None, roles=[]).
func builtinUser(c *call) (starlark.Value, error) {
	u := &User{Pos: c.pos}
	u.Name = c.nonEmptyStr("name", "")
	if err := checkWorkerName(u.Name); err != nil {
		c.argErrorf("name", "%v", strings.ReplaceAll(err.Error(), "worker names", "user names"))
	}
	u.PasswordHash = c.str("password_hash", "")
	if _, given := c.given("password_hash"); given && !bcryptHash.MatchString(u.PasswordHash) {
		c.argErrorf("password_hash", "want a bcrypt hash such as \"$2b$12$…\" (60 characters), not a password; make one with `htpasswd -nbBC 12 \"\" password | cut -c2-`")
	}
	for i, k := range c.strList("keys") {
		if err := checkSSHKey(k); err != nil {
			c.argErrorf(fmt.Sprintf("keys[%d]", i), "%v", err)
			continue
		}
		u.Keys = append(u.Keys, strings.TrimSpace(k))
	}
	if p := c.str("authorized_keys", ""); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(c.pos.File), p)
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		u.AuthorizedKeys = p
	} else if _, given := c.given("authorized_keys"); given {
		c.argErrorf("authorized_keys", "must not be empty")
	}
	u.Roles = c.nameListOpt("roles", "role")
	userWebExtras(c, u) // webauth.go
	if u.Name != "" {
		d := c.l.decls()
		d.users = append(d.users, u)
	}
	return c.named("user", u.Name, u), nil
}

// nameListOpt is nameList for an optional argument: absent, None and []
// give nil.
func (c *call) nameListOpt(name, kind string) []string {
	names := c.strList(name)
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			c.argErrorf(name, "%s %q listed twice", kind, n)
		}
		seen[n] = true
	}
	return names
}

// sshKeyTypes are the public key types accepted in user(keys=...).
var sshKeyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

// checkSSHKey checks a public key in authorized_keys format: "type base64
// [comment]", where the base64 blob decodes to a key of that type.
func checkSSHKey(k string) error {
	f := strings.Fields(k)
	if len(f) < 2 {
		return fmt.Errorf("want an SSH public key such as \"ssh-ed25519 AAAAC3Nza… me@host\", got %q", abbrev(k))
	}
	if !contains(sshKeyTypes, f[0]) {
		return fmt.Errorf("unknown key type %q%s; want one of %s", f[0], didYouMean(f[0], sshKeyTypes), strings.Join(sshKeyTypes, ", "))
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return fmt.Errorf("%s key: invalid base64 %q", f[0], abbrev(f[1]))
	}
	// The blob starts with the key type as an SSH string: uint32 length, bytes.
	if len(blob) < 4 {
		return fmt.Errorf("%s key: blob too short", f[0])
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || !bytes.Equal(blob[4:4+n], []byte(f[0])) {
		return fmt.Errorf("%s key: the key data is not a %s key", f[0], f[0])
	}
	return nil
}

func abbrev(s string) string {
	if len(s) > 24 {
		return s[:20] + "…"
	}
	return s
}

// validateUsers checks role and user names and the roles users name.
func (l *loader) validateUsers(cfg *Config) {
	roles := make(map[string]*Role, len(BuiltinRoles)+len(cfg.Roles))
	var roleNames []string
	for _, r := range BuiltinRoles {
		roles[r.Name] = r
		roleNames = append(roleNames, r.Name)
	}
	for _, r := range cfg.Roles {
		if first, dup := roles[r.Name]; dup {
			if first.Pos.Line == 0 {
				l.errs.addf(r.Pos, "role: %q is a built-in role (viewer, developer, admin); choose another name", r.Name)
			} else {
				l.errs.addf(r.Pos, "role: duplicate name %q (first declared at %s)", r.Name, first.Pos)
			}
			continue
		}
		roles[r.Name] = r
		roleNames = append(roleNames, r.Name)
	}
	users := make(map[string]*User, len(cfg.Users))
	for _, u := range cfg.Users {
		if first, dup := users[u.Name]; dup {
			l.errs.addf(u.Pos, "user: duplicate name %q (first declared at %s)", u.Name, first.Pos)
		} else {
			users[u.Name] = u
		}
		for _, r := range u.Roles {
			if roles[r] == nil {
				l.errs.addf(u.Pos, "user %q: roles: unknown role %q%s", u.Name, r, didYouMean(r, roleNames))
			}
		}
	}
	if cfg.Master.WebAuth == "users" && len(cfg.Users) == 0 {
		l.errs.addf(cfg.Master.Pos, "master: web_auth: \"users\" but no user() is declared; nobody could log in")
	}
}
