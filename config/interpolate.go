package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// interpolation is interpolate(fmt, **kw): Buildbot's Interpolate.
//
// Substitutions are %(SOURCE:KEY)s or %(SOURCE:KEY:MODIFIER)s, with SOURCE
// one of prop, src (KEY is CODEBASE:ATTR), secret, worker and kw; %% is a
// literal %. The modifiers are Buildbot's, as its documentation of
// Interpolate defines them:
//
//	:-repl      "If propname exists, substitute its value; otherwise,
//	            substitute replacement." (an empty value counts as existing)
//	:~repl      "Like :- but substitutes the replacement also if propname
//	            exists but evaluates to False."
//	:+repl      "If propname exists, substitute replacement; otherwise,
//	            substitute an empty string."
//	:?|yes|no   "If propname exists, substitute sub_if_exists; otherwise,
//	            substitute sub_if_missing." (any delimiter may replace |)
//	:#?|yes|no  "If propname is true, substitute sub_if_true; otherwise,
//	            substitute sub_if_false."
//
// A missing key without a modifier gives "", except a secret, which must
// exist, and a kw, which must be given to interpolate().
type interpolation struct {
	parts []ipart
	kw    map[string]starlark.Value // frozen; strings, numbers, bools, None or renderables
	repr  string
}

// ipart is a literal (src == "") or one substitution.
type ipart struct {
	lit string

	src, key string // key is "codebase:attr" for src
	mod      string // "", "-", "~", "+", "?", "#?"
	repl     string // for - ~ +
	yes, no  string // for ? #?
}

var interpolateSources = []string{"prop", "src", "secret", "worker", "kw"}

var srcAttrs = []string{"branch", "revision", "repository", "project", "codebase"}

// parseInterpolation parses a format string; kw names the keywords given.
func parseInterpolation(format string, kw map[string]starlark.Value) ([]ipart, error) {
	var parts []ipart
	var lit strings.Builder
	for i := 0; i < len(format); i++ {
		ch := format[i]
		if ch != '%' {
			lit.WriteByte(ch)
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		if i+1 >= len(format) || format[i+1] != '(' {
			return nil, fmt.Errorf("at offset %d: lone %%; write %%%% for a literal %% or %%(source:key)s", i)
		}
		// Find the matching parenthesis, as Python's % does.
		depth, j := 0, i+1
		for ; j < len(format); j++ {
			if format[j] == '(' {
				depth++
			} else if format[j] == ')' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if j >= len(format) {
			return nil, fmt.Errorf("at offset %d: unterminated %%(", i)
		}
		if j+1 >= len(format) || format[j+1] != 's' {
			return nil, fmt.Errorf("%s: want s after ), as in %%(prop:name)s", format[i:min(j+2, len(format))])
		}
		p, err := parseSubst(format[i+2:j], kw)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", format[i:j+2], err)
		}
		if lit.Len() > 0 {
			parts = append(parts, ipart{lit: lit.String()})
			lit.Reset()
		}
		parts = append(parts, p)
		i = j + 1
	}
	if lit.Len() > 0 {
		parts = append(parts, ipart{lit: lit.String()})
	}
	return parts, nil
}

func parseSubst(s string, kw map[string]starlark.Value) (ipart, error) {
	src, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ipart{}, fmt.Errorf("want SOURCE:KEY with SOURCE one of %s, as in prop:name", strings.Join(interpolateSources, ", "))
	}
	var p ipart
	switch src {
	case "prop", "secret", "worker", "kw":
	case "src":
		cb, r, ok := strings.Cut(rest, ":")
		if !ok {
			return ipart{}, fmt.Errorf("want src:CODEBASE:ATTR with ATTR one of %s (the codebase may be empty)", strings.Join(srcAttrs, ", "))
		}
		src, rest = "src", r
		p.key = cb + ":"
	default:
		return ipart{}, fmt.Errorf("unknown source %q; want one of %s%s", src, strings.Join(interpolateSources, ", "), didYouMean(src, interpolateSources))
	}
	p.src = src
	key, mod, hasMod := strings.Cut(rest, ":")
	if key == "" {
		return ipart{}, fmt.Errorf("empty key")
	}
	p.key += key
	if src == "src" && !containsStr(srcAttrs, key) {
		return ipart{}, fmt.Errorf("unknown source stamp attribute %q; want one of %s", key, strings.Join(srcAttrs, ", "))
	}
	if src == "secret" {
		if err := checkSecretName(key); err != nil {
			return ipart{}, err
		}
	}
	if hasMod {
		switch {
		case mod == "":
			return ipart{}, fmt.Errorf("empty modifier; want :-, :~, :+, :?|yes|no or :#?|yes|no")
		case mod[0] == '-' || mod[0] == '~' || mod[0] == '+':
			p.mod, p.repl = mod[:1], mod[1:]
		case strings.HasPrefix(mod, "?") || strings.HasPrefix(mod, "#?"):
			p.mod = "?"
			if mod[0] == '#' {
				p.mod = "#?"
			}
			alt := mod[len(p.mod):]
			if alt == "" {
				return ipart{}, fmt.Errorf("modifier :%s needs alternatives, as in :%s|yes|no", p.mod, p.mod)
			}
			delim := alt[:1]
			fields := strings.Split(alt[1:], delim)
			if len(fields) != 2 {
				return ipart{}, fmt.Errorf("modifier :%s wants exactly two alternatives, as in :%s%syes%sno", p.mod, p.mod, delim, delim)
			}
			p.yes, p.no = fields[0], fields[1]
		default:
			return ipart{}, fmt.Errorf("unknown modifier :%s; want :-, :~, :+, :?|yes|no or :#?|yes|no", mod)
		}
	}
	if src == "kw" && p.mod == "" {
		if _, ok := kw[key]; !ok {
			names := make([]string, 0, len(kw))
			for k := range kw {
				names = append(names, k)
			}
			sort.Strings(names)
			return ipart{}, fmt.Errorf("keyword %s not given to interpolate()%s", key, didYouMean(key, names))
		}
	}
	return p, nil
}

func containsStr(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func (in *interpolation) String() string { return in.repr }

// Render implements Renderable.
func (in *interpolation) Render(env *BuildEnv) (string, error) {
	var b strings.Builder
	for _, p := range in.parts {
		if p.src == "" {
			b.WriteString(p.lit)
			continue
		}
		val, set, truth, err := in.lookup(env, p)
		if err != nil {
			return "", err
		}
		switch p.mod {
		case "":
			b.WriteString(val)
		case "-":
			if set {
				b.WriteString(val)
			} else {
				b.WriteString(p.repl)
			}
		case "~":
			if set && truth {
				b.WriteString(val)
			} else {
				b.WriteString(p.repl)
			}
		case "+":
			if set {
				b.WriteString(p.repl)
			}
		case "?":
			if set {
				b.WriteString(p.yes)
			} else {
				b.WriteString(p.no)
			}
		case "#?":
			if set && truth {
				b.WriteString(p.yes)
			} else {
				b.WriteString(p.no)
			}
		}
	}
	return b.String(), nil
}

// lookup returns one substitution's value, whether it is set, and whether
// it is true in Python's sense.
func (in *interpolation) lookup(env *BuildEnv, p ipart) (val string, set, truth bool, err error) {
	switch p.src {
	case "prop":
		v, ok := env.property(p.key)
		if !ok {
			return "", false, false, nil
		}
		return propString(v), true, bool(toStarlark(v).Truth()), nil
	case "src":
		cb, attr, _ := strings.Cut(p.key, ":")
		v, ok := env.source(cb, attr)
		return v, ok, v != "", nil
	case "worker":
		v, ok := env.WorkerInfo[p.key]
		if !ok {
			return "", false, false, nil
		}
		return propString(v), true, bool(toStarlark(v).Truth()), nil
	case "secret":
		v, err := env.secret(p.key)
		if err != nil {
			return "", false, false, err
		}
		return v, true, v != "", nil
	case "kw":
		v, ok := in.kw[p.key]
		if !ok || v == starlark.None {
			return "", false, false, nil
		}
		if r, ok := asRenderable(v, Pos{}); ok {
			s, err := r.Render(env)
			if err != nil {
				return "", false, false, fmt.Errorf("kw %s: %w", p.key, err)
			}
			return s, true, s != "", nil
		}
		if s, ok := v.(starlark.String); ok {
			return string(s), true, s != "", nil
		}
		return propString(mustJSON(v)), true, bool(v.Truth()), nil
	}
	return "", false, false, fmt.Errorf("unknown source %q", p.src)
}

func mustJSON(v starlark.Value) any {
	x, err := toJSON(v, 0)
	if err != nil {
		return v.String()
	}
	return x
}

// --- builtins ---

var interpolateParams = []param{{name: "fmt", required: true, positional: true}}

// builtinInterpolate implements interpolate(fmt, **kw). Its signature
// takes any keyword (varKw): every one but fmt is a kw source.
func builtinInterpolate(c *call) (starlark.Value, error) {
	kw := make(map[string]starlark.Value, len(c.kwargs))
	for _, kv := range c.kwargs {
		name := string(kv[0].(starlark.String))
		if name == "fmt" {
			continue
		}
		v := kv[1]
		switch v.(type) {
		case starlark.String, starlark.Int, starlark.Float, starlark.Bool, starlark.NoneType, *renderValue, starlark.Callable:
		default:
			c.argErrorf(name, "want string, number, bool, None or a renderable, got %s", v.Type())
		}
		kw[name] = v
	}
	format := c.str("fmt", "")
	in := &interpolation{kw: kw}
	parts, err := parseInterpolation(format, kw)
	if err != nil {
		c.argErrorf("fmt", "%v", err)
	}
	in.parts = parts
	repr := "interpolate(" + starlark.String(format).String()
	names := make([]string, 0, len(kw))
	for k := range kw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		repr += ", " + k + "=" + kw[k].String()
	}
	in.repr = repr + ")"
	return &renderValue{typ: "interpolate", r: in}, nil
}

var propParams = []param{
	{name: "name", required: true, positional: true},
	{name: "default", positional: true},
}

// builtinProp implements prop(name, default=None).
func builtinProp(c *call) (starlark.Value, error) {
	name := c.nonEmptyStr("name", "")
	def := starlark.Value(starlark.None)
	if v, ok := c.given("default"); ok {
		switch v.(type) {
		case starlark.String, starlark.Int, starlark.Float, starlark.Bool:
			def = v
		default:
			c.argErrorf("default", "want string, number, bool or None, got %s", v.Type())
		}
	}
	repr := "prop(" + strconv.Quote(name)
	if def != starlark.None {
		repr += ", " + def.String()
	}
	return &renderValue{typ: "prop", r: &propRenderer{name: name, def: def, repr: repr + ")"}}, nil
}
