package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// Renderable is a string argument whose value depends on the build, made by
// interpolate(...), prop(...), secret(...) or given as a Starlark function
// of the build. Plain strings stay plain: a Step field that holds a
// Renderable has a companion plain field that is used when it is nil.
type Renderable interface {
	// Render returns the value for the build described by env.
	Render(env *BuildEnv) (string, error)
	// String returns how master.star wrote it, e.g. `interpolate("%(prop:x)s")`.
	String() string
}

// DefaultRenderSteps is the Starlark step budget of one build-time function
// call (a renderer, do_step_if, hide_step_if or a steps function) when
// BuildEnv.MaxSteps is 0.
const DefaultRenderSteps = 1_000_000

// SourceStamp is what a build knows of one codebase, for %(src:…)s.
type SourceStamp struct {
	Codebase, Branch, Revision, Repository, Project string
}

// BuildEnv is what build-time rendering sees of one build. The build runner
// fills it in; the fields must not change while a render runs. It is used
// by one goroutine at a time.
type BuildEnv struct {
	Properties  map[string]any // JSON-like values as in Worker.Properties
	BuilderName string
	Number      int64
	WorkerName  string
	WorkerInfo  map[string]any // the worker's get_worker_info answer
	Sources     []SourceStamp

	// Secret looks a secret up; nil means no secret can be found.
	Secret func(name string) (string, error)
	// UsedSecret is told of every secret value rendered, so that the runner
	// can redact it from logs. May be nil.
	UsedSecret func(name, value string)
	// Print receives the output of print() in build-time functions. May be nil.
	Print func(msg string)
	// MaxSteps bounds each build-time function call; 0 means DefaultRenderSteps.
	MaxSteps uint64

	value starlark.Value // the frozen `build` value, made on first use
}

// thread returns a fresh thread for one build-time call.
func (env *BuildEnv) thread() *starlark.Thread {
	t := &starlark.Thread{
		Name: "build",
		Print: func(_ *starlark.Thread, msg string) {
			if env.Print != nil {
				env.Print(msg)
			}
		},
	}
	n := env.MaxSteps
	if n == 0 {
		n = DefaultRenderSteps
	}
	t.SetMaxExecutionSteps(n)
	return t
}

// call calls fn(build) on a fresh thread.
func (env *BuildEnv) call(fn starlark.Callable) (starlark.Value, error) {
	return starlark.Call(env.thread(), fn, starlark.Tuple{env.buildValue()}, nil)
}

func (env *BuildEnv) property(name string) (any, bool) {
	v, ok := env.Properties[name]
	return v, ok
}

func (env *BuildEnv) source(codebase, attr string) (string, bool) {
	for _, ss := range env.Sources {
		if ss.Codebase != codebase {
			continue
		}
		switch attr {
		case "branch":
			return ss.Branch, true
		case "revision":
			return ss.Revision, true
		case "repository":
			return ss.Repository, true
		case "project":
			return ss.Project, true
		case "codebase":
			return ss.Codebase, true
		}
	}
	return "", false
}

func (env *BuildEnv) secret(name string) (string, error) {
	if env.Secret == nil {
		return "", fmt.Errorf("secret %s not found in any provider", name)
	}
	v, err := env.Secret(name)
	if err != nil {
		return "", err
	}
	if env.UsedSecret != nil {
		env.UsedSecret(name, v)
	}
	return v, nil
}

// Backtrace returns the Starlark traceback of a build-time error, or "" if
// it did not happen in Starlark code.
func Backtrace(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Backtrace()
	}
	return ""
}

// --- the Starlark side ---

// renderValue is the Starlark value of interpolate(...), prop(...) and
// secret(...). It is immutable.
type renderValue struct {
	typ string
	r   Renderable
}

func (v *renderValue) String() string        { return v.r.String() }
func (v *renderValue) Type() string          { return v.typ }
func (v *renderValue) Freeze()               {}
func (v *renderValue) Truth() starlark.Bool  { return starlark.True }
func (v *renderValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", v.typ) }

// asRenderable returns the Renderable that v stands for: a value made by
// interpolate/prop/secret, or a function of the build.
func asRenderable(v starlark.Value, pos Pos) (Renderable, bool) {
	switch v := v.(type) {
	case *renderValue:
		return v.r, true
	case starlark.Callable:
		return &funcRenderer{fn: v, pos: pos}, true
	}
	return nil, false
}

// funcRenderer is a Starlark function of the build used as a string.
type funcRenderer struct {
	fn  starlark.Callable
	pos Pos
}

func (f *funcRenderer) String() string { return f.fn.Name() }

func (f *funcRenderer) Render(env *BuildEnv) (string, error) {
	v, err := env.call(f.fn)
	if err != nil {
		return "", err
	}
	return renderedString(f.fn.Name(), v)
}

// renderedString converts what a renderer function returned to a string.
func renderedString(who string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case starlark.String:
		return string(v), nil
	case starlark.Int, starlark.Float, starlark.Bool:
		return v.String(), nil
	}
	return "", fmt.Errorf("renderer %s returned %s; want string", who, v.Type())
}

// propRenderer is prop(name, default=None).
type propRenderer struct {
	name string
	def  starlark.Value // None, string, int, float or bool
	repr string
}

func (p *propRenderer) String() string { return p.repr }

func (p *propRenderer) Render(env *BuildEnv) (string, error) {
	if v, ok := env.property(p.name); ok {
		return propString(v), nil
	}
	if p.def == starlark.None {
		return "", nil
	}
	if s, ok := p.def.(starlark.String); ok {
		return string(s), nil
	}
	return p.def.String(), nil
}

// secretRenderer is secret(name).
type secretRenderer struct{ name string }

func (s *secretRenderer) String() string { return "secret(" + strconv.Quote(s.name) + ")" }

func (s *secretRenderer) Render(env *BuildEnv) (string, error) { return env.secret(s.name) }

// propString formats a property value as Python's str() would (Buildbot's
// Interpolate uses %s).
func propString(v any) string {
	sv := toStarlark(v)
	if s, ok := sv.(starlark.String); ok {
		return string(s)
	}
	if b, ok := sv.(starlark.Bool); ok {
		if b {
			return "True"
		}
		return "False"
	}
	return sv.String()
}

// toStarlark converts a JSON-like Go value to a frozen Starlark value.
func toStarlark(v any) starlark.Value {
	switch v := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(v)
	case string:
		return starlark.String(v)
	case int:
		return starlark.MakeInt(v)
	case int64:
		return starlark.MakeInt64(v)
	case int8:
		return starlark.MakeInt64(int64(v))
	case int16:
		return starlark.MakeInt64(int64(v))
	case int32:
		return starlark.MakeInt64(int64(v))
	case uint:
		return starlark.MakeUint64(uint64(v))
	case uint8:
		return starlark.MakeUint64(uint64(v))
	case uint16:
		return starlark.MakeUint64(uint64(v))
	case uint32:
		return starlark.MakeUint64(uint64(v))
	case uint64:
		return starlark.MakeUint64(v)
	case float32:
		return starlark.Float(v)
	case float64:
		return starlark.Float(v)
	case []byte:
		return starlark.String(v)
	case []any:
		l := make([]starlark.Value, len(v))
		for i, e := range v {
			l[i] = toStarlark(e)
		}
		list := starlark.NewList(l)
		list.Freeze()
		return list
	case map[string]any:
		d := toStarlarkDict(v)
		d.Freeze()
		return d
	}
	return starlark.String(fmt.Sprint(v))
}

func toStarlarkDict(m map[string]any) *starlark.Dict {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := starlark.NewDict(len(m))
	for _, k := range keys {
		_ = d.SetKey(starlark.String(k), toStarlark(m[k]))
	}
	d.Freeze()
	return d
}

// --- the build value ---

// buildValue returns the frozen Starlark value that build-time functions
// receive as their argument.
func (env *BuildEnv) buildValue() starlark.Value {
	if env.value != nil {
		return env.value
	}
	props := toStarlarkDict(env.Properties)
	getProperty := starlark.NewBuiltin("getProperty", func(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		var def starlark.Value = starlark.None
		if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "name", &name, "default?", &def); err != nil {
			return nil, err
		}
		v, found, _ := props.Get(starlark.String(name))
		if !found {
			return def, nil
		}
		return v, nil
	})
	hasProperty := starlark.NewBuiltin("hasProperty", func(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "name", &name); err != nil {
			return nil, err
		}
		_, found, _ := props.Get(starlark.String(name))
		return starlark.Bool(found), nil
	})
	env.value = &object{
		typ:  "build",
		repr: fmt.Sprintf("<build %s #%d>", env.BuilderName, env.Number),
		attrs: starlark.StringDict{
			"properties":  props,
			"getProperty": getProperty,
			"hasProperty": hasProperty,
			"buildername": starlark.String(env.BuilderName),
			"number":      starlark.MakeInt64(env.Number),
			"workername":  starlark.String(env.WorkerName),
			"worker_info": toStarlarkDict(env.WorkerInfo),
		},
		ok: true,
	}
	return env.value
}

// --- conditions and dynamic steps ---

// Cond is a bool step option that may be a function of the build, such as
// do_step_if.
type Cond struct {
	Const bool
	Fn    starlark.Callable // if non-nil, called with the build; Const is unused
}

// Eval returns the condition's value for the build.
func (c *Cond) Eval(env *BuildEnv) (bool, error) {
	if c.Fn == nil {
		return c.Const, nil
	}
	v, err := env.call(c.Fn)
	if err != nil {
		return false, err
	}
	return bool(v.Truth()), nil
}

// cond returns the bool-or-function argument for name, or nil if it is
// absent or None.
func (c *call) cond(name string) *Cond {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	switch v := v.(type) {
	case starlark.Bool:
		return &Cond{Const: bool(v)}
	case starlark.Callable:
		return &Cond{Fn: v}
	}
	c.argErrorf(name, "want bool or a function of the build, got %s", v.Type())
	return nil
}

// StepsFunc is builder(steps=fn): fn(build) returns the build's steps.
type StepsFunc struct {
	Fn  starlark.Callable
	Pos Pos // position of the builder(...) call
}

// Plan calls the function and returns the steps it chose, with names made
// unique as for a list given to builder().
func (f *StepsFunc) Plan(env *BuildEnv) ([]*Step, error) {
	v, err := env.call(f.Fn)
	if err != nil {
		return nil, err
	}
	steps, problems := stepsOf(v)
	if len(problems) > 0 {
		return nil, fmt.Errorf("steps function %s: %s", f.Fn.Name(), strings.Join(problems, "; "))
	}
	return steps, nil
}

// --- rendering a step ---

// Render returns a copy of s with every renderable argument rendered into
// its plain field (and the renderable fields cleared). A step without
// renderables is returned as is.
func (s *Step) Render(env *BuildEnv) (*Step, error) {
	if !s.hasRenderables() {
		return s, nil
	}
	out := *s
	var err error
	r := func(plain string, rr Renderable, what string) string {
		if rr == nil || err != nil {
			return plain
		}
		v, e := rr.Render(env)
		if e != nil {
			err = fmt.Errorf("%s: %w", what, e)
		}
		return v
	}
	out.Description = r(s.Description, s.DescriptionR, "description")
	out.DescriptionR = nil
	out.Workdir = r(s.Workdir, s.WorkdirR, "workdir")
	out.WorkdirR = nil
	if s.EnvR != nil {
		out.Env = renderDict(s.Env, s.EnvR, "env", r)
		out.EnvR = nil
	}
	switch a := s.Action.(type) {
	case *ShellAction:
		na := *a
		if a.ScriptR != nil && err == nil {
			if f, ok := a.ScriptR.(*funcRenderer); ok {
				// A function may return a whole command: a string or a list.
				na.Script, na.Argv, err = renderCommand(env, f)
			} else {
				na.Script = r("", a.ScriptR, "command")
			}
			na.ScriptR = nil
		}
		if a.ArgvR != nil {
			na.Argv = make([]string, len(a.Argv))
			for i := range a.Argv {
				na.Argv[i] = r(a.Argv[i], a.ArgvR[i], "command["+strconv.Itoa(i)+"]")
			}
			na.ArgvR = nil
		}
		out.Action = &na
	case *UploadAction:
		na := *a
		na.WorkerSrc = r(a.WorkerSrc, a.WorkerSrcR, "workersrc")
		na.MasterDest = r(a.MasterDest, a.MasterDestR, "masterdest")
		na.WorkerSrcR, na.MasterDestR = nil, nil
		out.Action = &na
	case *DownloadAction:
		na := *a
		na.MasterSrc = r(a.MasterSrc, a.MasterSrcR, "mastersrc")
		na.WorkerDest = r(a.WorkerDest, a.WorkerDestR, "workerdest")
		na.MasterSrcR, na.WorkerDestR = nil, nil
		out.Action = &na
	case *MkdirAction:
		out.Action = &MkdirAction{Dir: r(a.Dir, a.DirR, "dir")}
	case *RmdirAction:
		out.Action = &RmdirAction{Dir: r(a.Dir, a.DirR, "dir")}
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func renderCommand(env *BuildEnv, f *funcRenderer) (script string, argv []string, err error) {
	v, err := env.call(f.fn)
	if err != nil {
		return "", nil, fmt.Errorf("command: %w", err)
	}
	if seq, ok := asSequence(v); ok {
		argv = make([]string, seq.Len())
		for i := range argv {
			s, ok := starlark.AsString(seq.Index(i))
			if !ok {
				return "", nil, fmt.Errorf("command: renderer %s returned a list with a %s at [%d]; want strings", f.fn.Name(), seq.Index(i).Type(), i)
			}
			argv[i] = s
		}
		if len(argv) == 0 {
			return "", nil, fmt.Errorf("command: renderer %s returned an empty list", f.fn.Name())
		}
		return "", argv, nil
	}
	s, err := renderedString(f.fn.Name(), v)
	if err != nil {
		return "", nil, fmt.Errorf("command: %w", err)
	}
	return s, nil, nil
}

func (s *Step) hasRenderables() bool {
	if s.DescriptionR != nil || s.WorkdirR != nil || s.EnvR != nil {
		return true
	}
	switch a := s.Action.(type) {
	case *ShellAction:
		return a.ScriptR != nil || a.ArgvR != nil
	case *UploadAction:
		return a.WorkerSrcR != nil || a.MasterDestR != nil
	case *DownloadAction:
		return a.MasterSrcR != nil || a.WorkerDestR != nil
	case *MkdirAction:
		return a.DirR != nil
	case *RmdirAction:
		return a.DirR != nil
	}
	return false
}

// --- arguments that may be renderable ---

// strR returns the argument for name as a plain string or a Renderable
// (exactly one is set when it was given), or def if it is absent or None.
func (c *call) strR(name, def string, nonEmpty bool) (string, Renderable) {
	v, ok := c.given(name)
	if !ok {
		return def, nil
	}
	if r, ok := asRenderable(v, c.pos); ok {
		return "", r
	}
	if nonEmpty {
		return c.nonEmptyStr(name, def), nil
	}
	return c.str(name, def), nil
}

// reprArg returns what a step's repr shows for a string-or-renderable.
func reprArg(s string, r Renderable) starlark.Value {
	if r != nil {
		return rawRepr(r.String())
	}
	return starlark.String(s)
}

// rawRepr is a value whose String is given, for reprCall.
type rawRepr string

func (r rawRepr) String() string        { return string(r) }
func (r rawRepr) Type() string          { return "repr" }
func (r rawRepr) Freeze()               {}
func (r rawRepr) Truth() starlark.Bool  { return starlark.True }
func (r rawRepr) Hash() (uint32, error) { return 0, errors.New("unhashable") }

// strListR is strList where elements may also be renderables. ArgvR is nil
// when every element is a plain string; otherwise it has one entry per
// element, nil for the plain ones.
func (c *call) strListR(name string) ([]string, []Renderable) {
	v, ok := c.given(name)
	if !ok {
		return nil, nil
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf(name, "want list of strings, got %s", v.Type())
		return nil, nil
	}
	out := make([]string, seq.Len())
	var rs []Renderable
	for i := range seq.Len() {
		e := seq.Index(i)
		if r, ok := asRenderable(e, c.pos); ok {
			if rs == nil {
				rs = make([]Renderable, seq.Len())
			}
			rs[i] = r
			continue
		}
		s, ok := starlark.AsString(e)
		if !ok {
			c.argErrorf(fmt.Sprintf("%s[%d]", name, i), "want string, got %s", e.Type())
			continue
		}
		out[i] = s
	}
	return out, rs
}

// strDictR is strDict where values may also be renderables, returned in
// a second map (nil if there are none).
func (c *call) strDictR(name string) (map[string]string, map[string]Renderable) {
	v, ok := c.given(name)
	if !ok {
		return nil, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf(name, "want dict of strings, got %s", v.Type())
		return nil, nil
	}
	var plain map[string]string
	var rs map[string]Renderable
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
		if r, ok := asRenderable(kv[1], c.pos); ok {
			if rs == nil {
				rs = map[string]Renderable{}
			}
			rs[k] = r
			continue
		}
		s, ok := starlark.AsString(kv[1])
		if !ok {
			c.argErrorf(fmt.Sprintf("%s[%q]", name, k), "want string, got %s", kv[1].Type())
			continue
		}
		if plain == nil {
			plain = map[string]string{}
		}
		plain[k] = s
	}
	return plain, rs
}

// renderDict merges a dict argument's plain values with its rendered
// ones, rendering in key order so the first error is always the same.
// Errors name the value arg["key"], or just "key" when arg is "".
func renderDict[V any](plain map[string]V, rs map[string]Renderable, arg string, r func(string, Renderable, string) string) map[string]V {
	out := make(map[string]V, len(plain)+len(rs))
	for k, v := range plain {
		out[k] = v
	}
	keys := make([]string, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		what := strconv.Quote(k)
		if arg != "" {
			what = arg + "[" + what + "]"
		}
		// V is string or any: a rendered value is always a string.
		out[k] = any(r("", rs[k], what)).(V)
	}
	return out
}
