package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"golang.org/x/crypto/bcrypt"
)

// This file holds what the web UI's logins add to master(), user() and
// role(): an htpasswd file, API tokens, anonymous read, session
// lifetime, and roles limited to some builders.

// WebAuth is how the web UI authenticates users and what anonymous
// visitors may do, given with master(web_...). It only matters with
// MasterSettings.WebAuth == "users".
type WebAuth struct {
	// Htpasswd is the absolute path of an htpasswd file of bcrypt
	// hashes (web_htpasswd), "" if none. Load reads it: its users join
	// Config.Users, so a change to the file needs a reconfig.
	Htpasswd string
	// HtpasswdRoles are the roles of the users found only in Htpasswd
	// (default ["viewer"]); a user() of the same name gives its own.
	HtpasswdRoles []string
	// AnonymousRead lets visitors who have not logged in read every page
	// and the API (default true). Without it, everything but the login
	// page, static files and change hooks needs a login with "view".
	AnonymousRead bool
	// SessionLifetime is how long a login lasts (default
	// DefaultSessionLifetime).
	SessionLifetime time.Duration

	htpasswdShown string // Htpasswd as the user wrote it, for errors
	given         []string
}

// DefaultSessionLifetime is how long a web login lasts by default.
const DefaultSessionLifetime = 7 * 24 * time.Hour

// BuilderPermissions are the permissions that apply to one builder at a
// time, and so the only ones a role limited to builders may grant.
var BuilderPermissions = []string{"force", "stop", "rebuild", "cancel"}

func defaultWebAuth() WebAuth {
	return WebAuth{HtpasswdRoles: []string{"viewer"}, AnonymousRead: true, SessionLifetime: DefaultSessionLifetime}
}

// --- master(web_...) ---

var webAuthMasterParams = []param{
	{name: "web_htpasswd"},
	{name: "web_htpasswd_roles"},
	{name: "web_anonymous_read"},
	{name: "web_session_lifetime"},
}

// webAuthMaster parses master()'s web_htpasswd=, web_htpasswd_roles=,
// web_anonymous_read= and web_session_lifetime= into m.Web.
func webAuthMaster(c *call, m *MasterSettings) {
	w := defaultWebAuth()
	for _, p := range webAuthMasterParams {
		if _, ok := c.given(p.name); ok {
			w.given = append(w.given, p.name)
		}
	}
	if p := c.str("web_htpasswd", ""); p != "" {
		shown := p
		if !filepath.IsAbs(p) {
			shown = filepath.Join(filepath.Dir(c.pos.File), p)
		}
		abs, err := filepath.Abs(shown)
		if err != nil {
			abs = shown
		}
		w.Htpasswd, w.htpasswdShown = abs, shown
	} else if _, given := c.given("web_htpasswd"); given {
		c.argErrorf("web_htpasswd", "must not be empty")
	}
	if _, ok := c.given("web_htpasswd_roles"); ok {
		w.HtpasswdRoles = c.nameListOpt("web_htpasswd_roles", "role")
		if w.HtpasswdRoles == nil {
			w.HtpasswdRoles = []string{}
		}
	}
	w.AnonymousRead = c.bool("web_anonymous_read", true)
	if v := c.value("web_session_lifetime"); v != nil {
		d := c.duration("web_session_lifetime", DefaultSessionLifetime)
		switch {
		case v == starlark.None:
			c.argErrorf("web_session_lifetime", "want a duration such as \"12h\"; a login cannot last forever")
			d = DefaultSessionLifetime
		case d > 0 && d < time.Minute:
			c.argErrorf("web_session_lifetime", "%v is too short to log in with; want at least 1m", d)
			d = DefaultSessionLifetime
		}
		w.SessionLifetime = d
	}
	m.Web = w
}

// --- user(tokens=...) ---

var userWebParams = []param{{name: "tokens"}}

// userWebExtras parses user()'s tokens=, a list of secret("NAME"): API
// tokens a script sends as "Authorization: Bearer TOKEN". They are
// secrets so that master.star, often in version control, holds no token.
func userWebExtras(c *call, u *User) {
	v, ok := c.given("tokens")
	if !ok {
		return
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf("tokens", `want a list of secret("NAME"), got %s`, v.Type())
		return
	}
	for i := range seq.Len() {
		e := seq.Index(i)
		arg := fmt.Sprintf("tokens[%d]", i)
		rv, isRender := e.(*renderValue)
		sr, isSecret := (*secretRenderer)(nil), false
		if isRender {
			sr, isSecret = rv.r.(*secretRenderer)
		}
		if !isSecret {
			hint := ""
			if _, isStr := e.(starlark.String); isStr {
				hint = "; a token written in master.star is visible to anyone who can read the file (see secrets_dir and secrets_env)"
			}
			c.argErrorf(arg, `want secret("NAME"), got %s%s`, e.Type(), hint)
			continue
		}
		if sr.name == "" {
			continue // secret() reported it
		}
		if slices.Contains(u.Tokens, sr.name) {
			c.argErrorf(arg, "secret %q listed twice", sr.name)
			continue
		}
		u.Tokens = append(u.Tokens, sr.name)
	}
}

// --- role(builders=...) ---

var roleWebParams = []param{{name: "builders"}}

// roleWebExtras parses role()'s builders=: glob patterns (path.Match:
// *, ?, [a-z]) of the builders the role's permissions apply to.
func roleWebExtras(c *call, r *Role) {
	if _, ok := c.given("builders"); !ok {
		return
	}
	pats := c.nameListOpt("builders", "builder pattern")
	if len(pats) == 0 {
		c.argErrorf("builders", "empty: the role would grant nothing; leave builders out to grant its permissions on every builder")
		return
	}
	for i, p := range pats {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			c.argErrorf(fmt.Sprintf("builders[%d]", i), "invalid pattern %q: want a builder name or a glob such as \"linux-*\"", p)
			continue
		}
		r.Builders = append(r.Builders, p)
	}
	for _, p := range r.Can {
		if !slices.Contains(BuilderPermissions, p) {
			c.argErrorf("can", "%q applies to the whole master, not to some builders; grant it in a role without builders (a role with builders may grant %s)", p, strings.Join(BuilderPermissions, ", "))
		}
	}
	if r.Builders == nil {
		r.Builders = []string{} // all invalid: still limited, to nothing
	}
}

// Covers reports whether r's permissions apply to builder: r has no
// builders= or one of its patterns matches.
func (r *Role) Covers(builder string) bool {
	if r.Builders == nil {
		return true
	}
	for _, p := range r.Builders {
		if ok, _ := path.Match(p, builder); ok {
			return true
		}
	}
	return false
}

// AllowedOn reports whether the user called user may do what permission
// names on builder: a role of theirs grants it (or "admin") and covers
// builder (see Role.Covers). builder "" asks for every builder at once,
// as Allowed does.
func (c *Config) AllowedOn(user, permission, builder string) bool {
	if builder == "" {
		return c.Allowed(user, permission)
	}
	return c.allowedWhere(user, permission, func(r *Role) bool { return r.Covers(builder) })
}

// AllowedAny reports whether the user called user may do what permission
// names on at least one builder (or everywhere): whether to show the
// button at all.
func (c *Config) AllowedAny(user, permission string) bool {
	return c.allowedWhere(user, permission, func(*Role) bool { return true })
}

func (c *Config) allowedWhere(user, permission string, covers func(*Role) bool) bool {
	u := c.User(user)
	if u == nil || !contains(permissions, permission) {
		return false
	}
	for _, rn := range u.Roles {
		r := c.Role(rn)
		if r == nil || !covers(r) {
			continue
		}
		if contains(r.Can, permission) || contains(r.Can, "admin") {
			return true
		}
	}
	return false
}

// --- validation ---

// validateWebAuth reads the htpasswd file into cfg.Users and checks what
// the web settings refer to. It runs before validateUsers, which then
// sees the file's users too.
func (l *loader) validateWebAuth(cfg *Config) {
	w := &cfg.Master.Web
	if cfg.Master.WebAuth != "users" {
		for _, p := range w.given {
			l.errs.addf(cfg.Master.Pos, "master: %s: has no effect without web_auth = \"users\"", p)
		}
		for _, u := range cfg.Users {
			if len(u.Tokens) > 0 {
				l.errs.addf(u.Pos, "user %q: tokens: API tokens are only checked with master(web_auth = \"users\")", u.Name)
			}
		}
	}
	roleNames := make([]string, 0, len(BuiltinRoles)+len(cfg.Roles))
	for _, r := range BuiltinRoles {
		roleNames = append(roleNames, r.Name)
	}
	for _, r := range cfg.Roles {
		roleNames = append(roleNames, r.Name)
	}
	known := w.HtpasswdRoles[:0:0] // the file's users get these: one report of a bad role is enough
	for _, rn := range w.HtpasswdRoles {
		if !slices.Contains(roleNames, rn) {
			l.errs.addf(cfg.Master.Pos, "master: web_htpasswd_roles: unknown role %q%s", rn, didYouMean(rn, roleNames))
			continue
		}
		known = append(known, rn)
	}
	if w.Htpasswd != "" && cfg.Master.WebAuth == "users" {
		l.readHtpasswd(cfg, known)
	}

	builderNames := make([]string, len(cfg.Builders))
	for i, b := range cfg.Builders {
		builderNames[i] = b.Name
	}
	for _, r := range cfg.Roles {
		for _, p := range r.Builders {
			if !slices.ContainsFunc(builderNames, func(b string) bool { ok, _ := path.Match(p, b); return ok }) {
				hint := ""
				if !strings.ContainsAny(p, `*?[\`) {
					hint = didYouMean(p, builderNames)
				}
				l.errs.addf(r.Pos, "role %q: builders: %q matches no builder%s", r.Name, p, hint)
			}
		}
	}

	tokens := map[string]*User{}
	for _, u := range cfg.Users {
		for _, t := range u.Tokens {
			if first := tokens[t]; first != nil && first != u {
				l.errs.addf(u.Pos, "user %q: tokens: secret %q is also a token of user %q (%s); a token must name one user", u.Name, t, first.Name, first.Pos)
				continue
			}
			tokens[t] = u
		}
	}
}

// maxHtpasswd bounds the htpasswd file.
const maxHtpasswd = 4 << 20

// readHtpasswd adds the users of the web_htpasswd file to cfg.Users: a
// user() of the same name without password_hash takes the file's hash,
// other names become users with web_htpasswd_roles.
func (l *loader) readHtpasswd(cfg *Config, roles []string) {
	w := &cfg.Master.Web
	b, err := os.ReadFile(w.Htpasswd)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*os.PathError); ok {
			msg = fmt.Sprintf("read %s: %v", w.htpasswdShown, pe.Err)
		}
		l.errs.addf(cfg.Master.Pos, "master: web_htpasswd: %s", msg)
		return
	}
	if len(b) > maxHtpasswd {
		l.errs.addf(cfg.Master.Pos, "master: web_htpasswd: %s is %d bytes; the limit is %d", w.htpasswdShown, len(b), maxHtpasswd)
		return
	}
	cfg.Files = append(cfg.Files, w.Htpasswd)
	declared := make(map[string]*User, len(cfg.Users))
	for _, u := range cfg.Users {
		if _, dup := declared[u.Name]; !dup {
			declared[u.Name] = u
		}
	}
	seen := map[string]int{} // name -> line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxHtpasswd)
	for n := 1; sc.Scan(); n++ {
		pos := Pos{File: w.htpasswdShown, Line: n}
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			// Not echoed: it may be a password typed in the wrong place.
			l.errs.addf(pos, "web_htpasswd: want \"name:bcrypt-hash\" lines; this line has no ':'")
			continue
		}
		if name == "" {
			l.errs.addf(pos, "web_htpasswd: empty user name")
			continue
		}
		if err := checkWorkerName(name); err != nil {
			l.errs.addf(pos, "web_htpasswd: %s", strings.ReplaceAll(err.Error(), "worker names", "user names"))
			continue
		}
		if first, dup := seen[name]; dup {
			l.errs.addf(pos, "web_htpasswd: duplicate user %q (first at line %d)", name, first)
			continue
		}
		seen[name] = n
		if err := checkBcrypt(hash); err != nil {
			l.errs.addf(pos, "web_htpasswd: user %q: %v", name, err)
			continue
		}
		if u := declared[name]; u != nil {
			if u.PasswordHash != "" {
				l.errs.addf(u.Pos, "user %q: has a password_hash and a line in web_htpasswd (%s); keep one", name, pos)
				continue
			}
			u.PasswordHash = hash
			continue
		}
		cfg.Users = append(cfg.Users, &User{Name: name, PasswordHash: hash, Roles: slices.Clone(roles), Pos: pos})
	}
	if err := sc.Err(); err != nil {
		l.errs.addf(cfg.Master.Pos, "master: web_htpasswd: %s: %v", w.htpasswdShown, err)
	}
}

// checkBcrypt accepts bcrypt hashes only, and says what other schemes
// are: htpasswd makes MD5 hashes unless told -B.
func checkBcrypt(h string) error {
	const redo = "recreate it with `htpasswd -B FILE NAME`"
	scheme := ""
	switch {
	case bcryptHash.MatchString(h):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return fmt.Errorf("invalid bcrypt hash: %v; %s", err, redo)
		}
		return nil
	case strings.HasPrefix(h, "$apr1$"):
		scheme = "an Apache MD5 ($apr1$) hash"
	case strings.HasPrefix(h, "{SHA}"):
		scheme = "a SHA-1 ({SHA}) hash"
	case strings.HasPrefix(h, "$1$"):
		scheme = "an MD5-crypt ($1$) hash"
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		scheme = "a SHA-crypt (" + h[:3] + ") hash"
	case strings.HasPrefix(h, "$2"):
		scheme = "a malformed bcrypt hash"
	case len(h) == 13:
		scheme = "a DES crypt hash"
	default:
		scheme = "not a hash htpasswd makes (a password in clear?)"
	}
	return fmt.Errorf("only bcrypt hashes are accepted, and this is %s; %s", scheme, redo)
}
