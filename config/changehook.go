package config

import (
	"slices"
	"strings"

	"go.starlark.net/starlark"
)

// ChangeHook is a webhook endpoint declared with change_hook(): the master
// turns the service's payloads posted to /change_hook/DIALECT into changes.
// A dialect that is not declared answers 404, except "poller", which is
// always available.
type ChangeHook struct {
	// Dialect is one of ChangeHookDialects.
	Dialect string
	// Secret names the secret (see Config.Secret) that signs payloads with
	// HMAC-SHA256, for the github, gitea and bitbucket dialects. "" when
	// none was given: payloads are then accepted unsigned.
	Secret string
	// Token names the secret that requests must carry in a header: GitLab's
	// X-Gitlab-Token, or X-Starforge-Token for the base dialect. "" when
	// none was given.
	Token string
	// Codebase, Project and Category, when not empty, are set on every
	// change the hook creates, in place of what the payload says.
	Codebase, Project, Category string

	Pos Pos // position of the change_hook(...) call
}

// ChangeHookDialects are the dialects change_hook() accepts.
var ChangeHookDialects = []string{"github", "gitlab", "gitea", "bitbucket", "base"}

// ChangeHook returns the hook declared for dialect, or nil if there is none.
func (c *Config) ChangeHook(dialect string) *ChangeHook {
	for _, h := range c.ChangeHooks {
		if h.Dialect == dialect {
			return h
		}
	}
	return nil
}

var changeHookParams = []param{
	{name: "dialect", required: true, positional: true},
	{name: "secret"},
	{name: "token"},
	{name: "codebase"},
	{name: "project"},
	{name: "category"},
}

const changeHooksKey = "starforge/config.changehooks"

// changeHooks returns the hooks declared so far in this load.
func (l *loader) changeHooks() []*ChangeHook {
	hs, _ := l.thread.Local(changeHooksKey).([]*ChangeHook)
	return hs
}

// builtinChangeHook implements change_hook(dialect, secret=None,
// token=None, codebase=None, project=None, category=None).
func builtinChangeHook(c *call) (starlark.Value, error) {
	h := &ChangeHook{Pos: c.pos}
	h.Dialect = c.nonEmptyStr("dialect", "")
	signed := false // the dialect signs payloads (secret=) rather than send a token
	switch h.Dialect {
	case "":
	case "github", "gitea", "bitbucket":
		signed = true
	case "gitlab", "base":
	case "poller":
		c.argErrorf("dialect", `"poller" is always available at /change_hook/poller; it needs no change_hook()`)
		h.Dialect = ""
	default:
		c.argErrorf("dialect", "unknown dialect %q; want one of %s%s", h.Dialect,
			strings.Join(ChangeHookDialects, ", "), didYouMean(h.Dialect, ChangeHookDialects))
		h.Dialect = ""
	}
	h.Secret = c.secretName("secret")
	h.Token = c.secretName("token")
	switch {
	case h.Dialect == "":
	case signed && h.Token != "":
		c.argErrorf("token", "%s signs its payloads: give the shared secret as secret=, not token=", h.Dialect)
	case !signed && h.Secret != "":
		c.argErrorf("secret", "%s sends a token, not a signature: give it as token=, not secret=", h.Dialect)
	}
	h.Codebase = c.str("codebase", "")
	h.Project = c.str("project", "")
	h.Category = c.str("category", "")

	if h.Dialect != "" {
		hooks := c.l.changeHooks()
		if i := slices.IndexFunc(hooks, func(o *ChangeHook) bool { return o.Dialect == h.Dialect }); i >= 0 {
			c.errorf("dialect %q declared twice (first at %s)", h.Dialect, hooks[i].Pos)
		} else {
			c.l.thread.SetLocal(changeHooksKey, append(hooks, h))
		}
	}
	return starlark.None, nil
}

// secretName returns the name of the secret("NAME") given for parameter
// name, or "" if none was given. A plain string is refused: a shared
// secret written in master.star would end up in version control.
func (c *call) secretName(name string) string {
	v, ok := c.given(name)
	if !ok {
		return ""
	}
	if rv, isRender := v.(*renderValue); isRender {
		if s, isSecret := rv.r.(*secretRenderer); isSecret {
			return s.name
		}
	}
	hint := ""
	if _, isStr := v.(starlark.String); isStr {
		hint = `; keep the value out of master.star (see secrets_dir and secrets_env)`
	}
	c.argErrorf(name, `want secret("NAME"), got %s%s`, v.Type(), hint)
	return ""
}
