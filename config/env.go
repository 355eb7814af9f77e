package config

import (
	"os"

	"go.starlark.net/starlark"
)

var envParams = []param{
	{name: "name", required: true, positional: true},
	{name: "default", positional: true},
}

// builtinEnv implements env(name, default=None): the value of the master's
// environment variable name when the configuration is loaded, or default
// when it is not set. With load() and secret(), the only window of
// master.star onto the outside world. Unlike secret(), its value is an
// ordinary string: it may end up in logs and pages, so do not pass
// passwords through it.
func builtinEnv(c *call) (starlark.Value, error) {
	name := c.nonEmptyStr("name", "")
	def := starlark.Value(starlark.None)
	if v, ok := c.given("default"); ok {
		switch v.(type) {
		case starlark.String, starlark.NoneType:
			def = v
		default:
			c.argErrorf("default", "want string or None, got %s", v.Type())
		}
	}
	lookup := c.l.opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if v, ok := lookup(name); ok {
		return starlark.String(v), nil
	}
	return def, nil
}
