package config

import (
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// Func is a Starlark function given in master.star for the master to call
// later, at build time (file_is_important, next_worker, …). The function is
// frozen with its module, so it may be called from any goroutine, each with
// its own starlark.Thread.
type Func struct {
	Fn  *starlark.Function
	Pos Pos // where the function was defined (its def)
}

// Name returns the function's name, such as "is_important".
func (f *Func) Name() string { return f.Fn.Name() }

// String returns "name (file:line:col)".
func (f *Func) String() string { return f.Fn.Name() + " (" + f.Pos.String() + ")" }

// function returns the argument for name as a Starlark function that can be
// called with nargs positional arguments, or nil if it is absent or None.
// Builtins are refused: they cannot be frozen with the configuration.
func (c *call) function(name string, nargs int) *Func {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	return c.asFunction(name, v, nargs)
}

func (c *call) asFunction(name string, v starlark.Value, nargs int) *Func {
	fn, ok := v.(*starlark.Function)
	if !ok {
		c.argErrorf(name, "want a function defined with def (taking %s), got %s", plural(nargs, "argument"), v.Type())
		return nil
	}
	positional := fn.NumParams() - fn.NumKwonlyParams()
	if fn.HasVarargs() {
		positional--
	}
	if fn.HasKwargs() {
		positional--
	}
	required := 0
	for i := range positional {
		if fn.ParamDefault(i) == nil {
			required++
		}
	}
	if required > nargs || (positional < nargs && !fn.HasVarargs()) {
		c.argErrorf(name, "function %s must take %s, it takes %d", fn.Name(), plural(nargs, "positional argument"), positional)
		return nil
	}
	for i := positional; i < positional+fn.NumKwonlyParams(); i++ {
		if fn.ParamDefault(i) == nil {
			p, _ := fn.Param(i)
			c.argErrorf(name, "function %s must take %s, but its keyword-only parameter %s has no default", fn.Name(), plural(nargs, "positional argument"), p)
			return nil
		}
	}
	return &Func{Fn: fn, Pos: posOf(fn.Position())}
}

// strOrList returns the argument for name as a list: a string gives a list
// of one. Nil if absent, None or empty.
func (c *call) strOrList(name string) []string {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	if s, isStr := v.(starlark.String); isStr {
		return []string{string(s)}
	}
	if _, isSeq := asSequence(v); !isSeq {
		c.argErrorf(name, "want string or list of strings, got %s", v.Type())
		return nil
	}
	return c.strList(name)
}

// objectArg returns the argument for name if it is an object of type typ.
// It reports a wrong type, and returns nil for that and for an object whose
// constructor reported a problem.
func (c *call) objectArg(name, typ string) *object {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	o, isObj := v.(*object)
	if !isObj || o.typ != typ {
		c.argErrorf(name, "want %s(...), got %s", typ, v.Type())
		return nil
	}
	if !o.ok {
		return nil
	}
	return o
}

// --- change_filter ---

// ChangeFilter selects the changes a scheduler acts on. Every non-empty
// field must match (a list matches if any element does); an empty field
// matches everything.
type ChangeFilter struct {
	Project    []string
	Repository []string
	Branch     []string
	BranchRe   []*regexp.Regexp // matched against the branch, unanchored as in Buildbot: use ^…$
	Category   []string
	Codebase   []string
	Files      []string // path.Match patterns; a change matches if one of its files does
	Fn         *Func    // fn(change) -> bool, called last; nil if none
	Pos        Pos
}

var changeFilterParams = []param{
	{name: "project"},
	{name: "repository"},
	{name: "branch"},
	{name: "branch_re"},
	{name: "category"},
	{name: "codebase"},
	{name: "files"},
	{name: "fn"},
}

// builtinChangeFilter implements change_filter(project=, repository=,
// branch=, branch_re=, category=, codebase=, files=, fn=).
func builtinChangeFilter(c *call) (starlark.Value, error) {
	f := &ChangeFilter{Pos: c.pos}
	f.Project = c.strOrList("project")
	f.Repository = c.strOrList("repository")
	f.Branch = c.strOrList("branch")
	f.Category = c.strOrList("category")
	f.Codebase = c.strOrList("codebase")
	for _, re := range c.strOrList("branch_re") {
		rx, err := regexp.Compile(re)
		if err != nil {
			c.argErrorf("branch_re", "invalid regular expression %q: %v", re, unwrapRegexpErr(err))
			continue
		}
		f.BranchRe = append(f.BranchRe, rx)
	}
	for _, p := range c.strOrList("files") {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			c.argErrorf("files", "invalid glob pattern %q", p)
			continue
		}
		f.Files = append(f.Files, p)
	}
	f.Fn = c.function("fn", 1)
	return &object{
		typ:   "change_filter",
		repr:  "change_filter(...)",
		attrs: starlark.StringDict{},
		item:  f,
		ok:    c.ok(),
	}, nil
}

// unwrapRegexpErr returns the problem without the "error parsing regexp"
// prefix, which would repeat what the message already says.
func unwrapRegexpErr(err error) string {
	if se, ok := err.(*syntax.Error); ok {
		return fmt.Sprintf("%s: `%s`", se.Code, se.Expr)
	}
	return err.Error()
}

// changeFilter returns the change_filter argument for name, or nil.
func (c *call) changeFilter(name string) *ChangeFilter {
	if o := c.objectArg(name, "change_filter"); o != nil {
		return o.item.(*ChangeFilter)
	}
	return nil
}

// --- worker_filter ---

// WorkerFilter selects workers by their properties: a worker matches if,
// for every key, its property equals the value, or is one of the values
// when the value is a list.
type WorkerFilter struct {
	Properties map[string]any // JSON-like values, as in Worker.Properties
	Pos        Pos
}

// builtinWorkerFilter implements worker_filter(**properties).
func builtinWorkerFilter(c *call) (starlark.Value, error) {
	f := &WorkerFilter{Pos: c.pos, Properties: make(map[string]any, len(c.kwargs))}
	var reprs []string
	for _, kv := range c.kwargs {
		k := string(kv[0].(starlark.String))
		reprs = append(reprs, k+"="+kv[1].String())
		x, err := toJSON(kv[1], 0)
		if err != nil {
			c.argErrorf(k+err.path(), "%s", err.msg)
			continue
		}
		f.Properties[k] = x
	}
	if len(c.kwargs) == 0 {
		c.errorf("want at least one property to match, such as worker_filter(os = \"linux\")")
	}
	return &object{
		typ:   "worker_filter",
		repr:  "worker_filter(" + strings.Join(reprs, ", ") + ")",
		attrs: starlark.StringDict{},
		item:  f,
		ok:    c.ok(),
	}, nil
}

// Match reports whether a worker with the given properties matches f.
func (f *WorkerFilter) Match(props map[string]any) bool {
	for k, want := range f.Properties {
		got, ok := props[k]
		if !ok {
			return false
		}
		if list, isList := want.([]any); isList {
			found := false
			for _, w := range list {
				if reflect.DeepEqual(got, w) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		} else if !reflect.DeepEqual(got, want) {
			return false
		}
	}
	return true
}

// String returns the filter's properties, for messages.
func (f *WorkerFilter) String() string {
	keys := sortedStrings(f.Properties)
	s := "{"
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		v, err := json.Marshal(f.Properties[k])
		if err != nil {
			v = []byte(fmt.Sprint(f.Properties[k]))
		}
		s += strconv.Quote(k) + ": " + string(v)
	}
	return s + "}"
}

// sortedStrings returns the keys of m in order.
func sortedStrings[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// --- arguments added to builder() ---

var builderExtraParams = []param{
	{name: "workdir"},
	{name: "locks"},
	{name: "collapse_requests"},
	{name: "next_worker"},
	{name: "next_build"},
	{name: "can_start"},
	{name: "priority"},
}

// builderWorkers parses builder(workers=): a list of worker names, or a
// worker_filter(...) resolved after execution.
func builderWorkers(c *call, b *Builder) {
	if v, ok := c.given("workers"); ok {
		if o, isObj := v.(*object); isObj && o.typ == "worker_filter" {
			if o.ok {
				b.WorkerFilter = o.item.(*WorkerFilter)
			}
			return
		}
	}
	b.WorkerNames = c.nameList("workers", "worker")
}

// builderExtras parses workdir=, locks=, collapse_requests=, next_worker=,
// next_build=, can_start= and priority= into b, once its steps are parsed.
func builderExtras(c *call, b *Builder) {
	b.Workdir = c.nonEmptyStr("workdir", DefaultWorkdir)
	if b.Workdir != DefaultWorkdir {
		// Steps that kept the default workdir get the builder's.
		for _, s := range b.Steps {
			if s.Workdir == DefaultWorkdir && s.WorkdirR == nil {
				s.Workdir = b.Workdir
			}
		}
	}
	b.Locks = c.lockList("locks")
	if v, ok := c.given("collapse_requests"); ok {
		switch v := v.(type) {
		case starlark.Bool:
			x := bool(v)
			b.CollapseRequests = &x
		case *starlark.Function:
			b.CollapseRequestsFn = c.asFunction("collapse_requests", v, 3)
		default:
			c.argErrorf("collapse_requests", "want bool or a function collapse(builder, req1, req2), got %s", v.Type())
		}
	}
	b.NextWorker = c.function("next_worker", 3)
	b.NextBuild = c.function("next_build", 2)
	b.CanStart = c.function("can_start", 3)
	b.Priority = c.int("priority", 0)
}

// resolveWorkerFilters sets the WorkerNames of builders whose workers= was
// a worker_filter: the matching workers, then the matching latent workers,
// each in declaration order.
func (l *loader) resolveWorkerFilters(cfg *Config) {
	for _, b := range cfg.Builders {
		f := b.WorkerFilter
		if f == nil {
			continue
		}
		seen := make(map[string]bool)
		for _, w := range cfg.Workers {
			if !seen[w.Name] && f.Match(w.Properties) {
				seen[w.Name] = true
				b.WorkerNames = append(b.WorkerNames, w.Name)
			}
		}
		for _, w := range cfg.LatentWorkers {
			if !seen[w.Name] && f.Match(w.Properties) {
				seen[w.Name] = true
				b.WorkerNames = append(b.WorkerNames, w.Name)
			}
		}
		if len(b.WorkerNames) == 0 {
			l.errs.addf(f.Pos, "worker_filter: no worker has properties %s (builder %q at %s)", f, b.Name, b.Pos)
		}
	}
}

// collectDecls moves the declarations kept in the thread local into cfg.
func (l *loader) collectDecls(cfg *Config) {
	d := l.decls()
	cfg.LatentWorkers = d.latent
	cfg.Locks = d.locks
	cfg.Users = d.users
	cfg.Roles = d.roles
}
