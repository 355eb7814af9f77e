package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// A param describes one parameter of a builtin.
type param struct {
	name       string
	required   bool // the call must give it
	positional bool // it may be given by position; positional params come first
}

// signature is the parameter list of a builtin.
//
// Builtins bind their arguments with a signature rather than with
// starlark.UnpackArgs so that every problem, from an unknown keyword to a
// bad value, is reported in the same "fn: param: problem" form and recorded
// instead of stopping execution: one run of master.star then reports all of
// its mistakes, as Buildbot's checkconfig does.
type signature struct {
	fn     string
	params []param
	npos   int            // number of leading positional params
	index  map[string]int // param name → index in params
	varKw  bool           // unknown keywords are allowed (kept in call.kwargs)
}

// newSignature returns the signature of builtin fn with the concatenation
// of the given parameter lists. It panics on a malformed list, which is a
// programming error caught by any test that loads a config.
func newSignature(fn string, lists ...[]param) *signature {
	s := &signature{fn: fn, index: make(map[string]int)}
	for _, l := range lists {
		for _, p := range l {
			if _, dup := s.index[p.name]; dup {
				panic(fmt.Sprintf("config: %s: duplicate parameter %s", fn, p.name))
			}
			if p.positional {
				if s.npos != len(s.params) {
					panic(fmt.Sprintf("config: %s: positional parameter %s after keyword-only ones", fn, p.name))
				}
				s.npos++
			}
			s.index[p.name] = len(s.params)
			s.params = append(s.params, p)
		}
	}
	return s
}

// names returns the parameter names, for "did you mean" hints.
func (s *signature) names() []string {
	names := make([]string, len(s.params))
	for i, p := range s.params {
		names[i] = p.name
	}
	return names
}

// call is one call of a builtin: where it was made and its bound arguments.
// Its methods convert arguments to Go values; each reports a problem at the
// call's position and returns a zero or default value, so a builtin can go
// on checking its other arguments.
type call struct {
	l      *loader
	thread *starlark.Thread
	sig    *signature
	pos    Pos              // the call site in master.star
	args   []starlark.Value // by parameter index; nil if not given
	nerr   int              // problems reported for this call
	trace  *string          // backtrace of the call, computed on first use
	kwargs []starlark.Tuple // the keyword arguments as given
}

// errorf reports a problem with the call as a whole.
func (c *call) errorf(format string, args ...any) {
	c.report(c.sig.fn + ": " + fmt.Sprintf(format, args...))
}

// argErrorf reports a problem with the argument for parameter name (which
// may carry a suffix such as `[2]` or `["key"]` to point inside it).
func (c *call) argErrorf(name, format string, args ...any) {
	c.report(c.sig.fn + ": " + name + ": " + fmt.Sprintf(format, args...))
}

// report records msg at the call's position. A call made inside a Starlark
// function gets a backtrace: a helper function that declares builders in a
// loop makes every call share one position, and the backtrace tells them
// apart.
func (c *call) report(msg string) {
	c.nerr++
	if c.trace == nil {
		t := ""
		if c.thread != nil {
			t = backtrace(starlarkFrames(c.thread.CallStack()))
		}
		c.trace = &t
	}
	c.l.errs.add(&Error{Pos: c.pos, Msg: msg, Backtrace: *c.trace})
}

// ok reports whether no problem has been reported for this call so far.
func (c *call) ok() bool { return c.nerr == 0 }

// bind matches positional and keyword arguments to parameters.
func (c *call) bind(args starlark.Tuple, kwargs []starlark.Tuple) {
	s := c.sig
	c.args = make([]starlark.Value, len(s.params))
	if len(args) > s.npos {
		got := plural(len(args), "positional argument")
		if s.npos == 0 {
			c.errorf("got %s, want none (use keyword arguments such as %s=...)", got, s.params[0].name)
		} else {
			c.errorf("got %s, want at most %d (%s)", got, s.npos, strings.Join(s.names()[:s.npos], ", "))
		}
		args = args[:s.npos]
	}
	copy(c.args, args)
	c.kwargs = kwargs
	for _, kv := range kwargs {
		name := string(kv[0].(starlark.String)) // Starlark guarantees string keys
		i, ok := s.index[name]
		switch {
		case !ok && s.varKw:
			continue
		case !ok:
			hint := ""
			if n := nearest(name, s.names()); n != "" {
				hint = " (did you mean " + n + "?)"
			}
			c.errorf("unexpected keyword argument %s%s", name, hint)
		case c.args[i] != nil:
			c.errorf("got multiple values for argument %s", name)
		default:
			c.args[i] = kv[1]
		}
	}
	for i, p := range s.params {
		if p.required && c.args[i] == nil {
			c.errorf("missing required argument %s", p.name)
		}
	}
}

// value returns the argument for parameter name, or nil if none was given.
func (c *call) value(name string) starlark.Value {
	i, ok := c.sig.index[name]
	if !ok {
		panic("config: " + c.sig.fn + " has no parameter " + name)
	}
	return c.args[i]
}

// given returns the argument for name and whether it was given. For an
// optional parameter None counts as not given: it means "the default", as in
// Python. For a required one None is a value, of the wrong type.
func (c *call) given(name string) (starlark.Value, bool) {
	i, ok := c.sig.index[name]
	if !ok {
		panic("config: " + c.sig.fn + " has no parameter " + name)
	}
	v := c.args[i]
	if v == nil || (v == starlark.None && !c.sig.params[i].required) {
		return nil, false
	}
	return v, true
}

// str returns the string argument for name, or def if it is absent or None.
func (c *call) str(name, def string) string {
	v, ok := c.given(name)
	if !ok {
		return def
	}
	s, ok := starlark.AsString(v)
	if !ok {
		c.argErrorf(name, "want string, got %s", v.Type())
		return def
	}
	return s
}

// nonEmptyStr is str for parameters whose value must not be "".
func (c *call) nonEmptyStr(name, def string) string {
	v, given := c.given(name)
	s := c.str(name, def)
	if given && s == "" {
		if _, isStr := v.(starlark.String); isStr {
			c.argErrorf(name, "must not be empty")
		}
	}
	return s
}

// bool returns the bool argument for name, or def if it is absent or None.
// Only True and False are accepted: a typo such as halt_on_failure="no"
// must not silently mean True.
func (c *call) bool(name string, def bool) bool {
	v, ok := c.given(name)
	if !ok {
		return def
	}
	b, ok := v.(starlark.Bool)
	if !ok {
		c.argErrorf(name, "want bool (True or False), got %s", v.Type())
		return def
	}
	return bool(b)
}

// int returns the int argument for name, or def if it is absent or None.
func (c *call) int(name string, def int) int {
	v, ok := c.given(name)
	if !ok {
		return def
	}
	if _, isInt := v.(starlark.Int); !isInt {
		c.argErrorf(name, "want int, got %s", v.Type())
		return def
	}
	i, err := starlark.AsInt32(v)
	if err != nil {
		c.argErrorf(name, "%s is out of range", v)
		return def
	}
	return i
}

// strList returns the list-of-strings argument for name, or nil if it is
// absent, None or empty. A tuple is accepted as well as a list.
func (c *call) strList(name string) []string {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf(name, "want list of strings, got %s", v.Type())
		return nil
	}
	var out []string
	for i := range seq.Len() {
		e := seq.Index(i)
		s, ok := starlark.AsString(e)
		if !ok {
			c.argErrorf(fmt.Sprintf("%s[%d]", name, i), "want string, got %s", e.Type())
			continue
		}
		out = append(out, s)
	}
	return out
}

// asSequence returns v if it is a list or a tuple. Other iterables (dicts,
// strings, sets) are refused: their order or element type is rarely what the
// user meant.
func asSequence(v starlark.Value) (starlark.Indexable, bool) {
	switch v := v.(type) {
	case *starlark.List:
		return v, true
	case starlark.Tuple:
		return v, true
	}
	return nil, false
}

// strDict returns the dict-of-strings argument for name, or nil if it is
// absent, None or empty. Keys must be non-empty and contain no "=" so that
// they are valid environment variable names.
func (c *call) strDict(name string) map[string]string {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf(name, "want dict of strings, got %s", v.Type())
		return nil
	}
	if d.Len() == 0 {
		return nil
	}
	out := make(map[string]string, d.Len())
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok {
			c.argErrorf(name, "want string keys, got %s key %s", kv[0].Type(), kv[0])
			continue
		}
		if k == "" || strings.ContainsAny(k, "=\x00") {
			c.argErrorf(name, "invalid variable name %q", k)
			continue
		}
		s, ok := starlark.AsString(kv[1])
		if !ok {
			c.argErrorf(fmt.Sprintf("%s[%q]", name, k), "want string, got %s", kv[1].Type())
			continue
		}
		out[k] = s
	}
	return out
}

// jsonDict returns the argument for name as a map of JSON-like Go values, or
// nil if it is absent, None or empty.
func (c *call) jsonDict(name string) map[string]any {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	if _, isDict := v.(*starlark.Dict); !isDict {
		c.argErrorf(name, "want dict, got %s", v.Type())
		return nil
	}
	x, err := toJSON(v, 0)
	if err != nil {
		c.argErrorf(name+err.path(), "%s", err.msg)
		return nil
	}
	m := x.(map[string]any)
	if len(m) == 0 {
		return nil
	}
	return m
}

// duration returns the duration argument for name: def if it is absent, 0
// if it is None (meaning "no limit"), else a positive number of seconds or a
// time.ParseDuration string such as "90s" or "1h30m".
func (c *call) duration(name string, def time.Duration) time.Duration {
	v := c.value(name)
	if v == nil {
		return def
	}
	d, err := parseDuration(v)
	if err != nil {
		c.argErrorf(name, "%v", err)
		return def
	}
	return d
}

// maxDuration is the largest number of seconds accepted, so that the
// conversion to time.Duration cannot overflow (about 292 years).
const maxDuration = time.Duration(math.MaxInt64)

func parseDuration(v starlark.Value) (time.Duration, error) {
	const hint = `want seconds (int or float) or a duration string such as "90s", "20m" or "1h30m", or None for no limit`
	var d time.Duration
	switch v := v.(type) {
	case starlark.NoneType:
		return 0, nil
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n > int64(maxDuration/time.Second) || n < 0 {
			if ok && n < 0 {
				return 0, fmt.Errorf("must not be negative, got %s (use None for no limit)", v)
			}
			return 0, fmt.Errorf("%s seconds is too long", v)
		}
		d = time.Duration(n) * time.Second
	case starlark.Float:
		f := float64(v)
		switch {
		case math.IsNaN(f):
			return 0, fmt.Errorf("%s is not a number; %s", v, hint)
		case f < 0:
			return 0, fmt.Errorf("must not be negative, got %s (use None for no limit)", v)
		case f*float64(time.Second) >= float64(maxDuration):
			return 0, fmt.Errorf("%s seconds is too long", v)
		}
		d = time.Duration(f * float64(time.Second))
	case starlark.String:
		var err error
		d, err = time.ParseDuration(string(v))
		if err != nil {
			return 0, fmt.Errorf("invalid duration %s; %s", v, hint)
		}
		if d < 0 {
			return 0, fmt.Errorf("must not be negative, got %s (use None for no limit)", v)
		}
	default:
		return 0, fmt.Errorf("%s, got %s", hint, v.Type())
	}
	// Zero would read as "no limit" to the runner; make the user say so.
	if d == 0 {
		return 0, fmt.Errorf("must be positive, got %s (use None for no limit)", v)
	}
	return d, nil
}
