package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// This file holds the step kinds beyond shell, upload, download, mkdir and
// rmdir: compile, test, shell_sequence, set_property, set_properties,
// set_property_from_command, file_exists, cpdir, download_string,
// upload_dir, upload_many, master_shell and http_request. They are
// appended to stepKinds, so they get the common step options, the builtin
// and the Starlark value like the others.

// DefaultWarningPattern is compile()'s default warning_pattern, Buildbot's.
const DefaultWarningPattern = `^.*warning[: ].*`

var moreStepKinds = []*stepKind{
	{
		name: "compile",
		params: []param{
			{name: "command", required: true, positional: true},
			{name: "warning_pattern"},
			{name: "max_warnings"},
			{name: "suppress"},
		},
		action: compileAction,
	},
	{
		name:   "test",
		params: []param{{name: "command", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			sh, repr := shellAction(c)
			return &TestAction{Command: *sh.(*ShellAction)}, repr
		},
	},
	{
		name:   "shell_sequence",
		params: []param{{name: "commands", required: true, positional: true}},
		action: shellSequenceAction,
	},
	{
		name: "set_property",
		params: []param{
			{name: "property", required: true, positional: true},
			{name: "value", required: true, positional: true},
		},
		action: setPropertyAction,
	},
	{
		name:   "set_properties",
		params: []param{{name: "properties", required: true, positional: true}},
		action: setPropertiesAction,
	},
	{
		name: "set_property_from_command",
		params: []param{
			{name: "command", required: true, positional: true},
			{name: "property"},
			{name: "extract_fn"},
			{name: "strip"},
		},
		action: setPropertyFromCommandAction,
	},
	{
		name:   "file_exists",
		params: []param{{name: "file", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &FileExistsAction{}
			a.File, a.FileR = c.strR("file", "", true)
			return a, []starlark.Value{reprArg(a.File, a.FileR)}
		},
	},
	{
		name: "cpdir",
		params: []param{
			{name: "src", required: true, positional: true},
			{name: "dest", required: true, positional: true},
		},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &CpdirAction{}
			a.Src, a.SrcR = c.strR("src", "", true)
			a.Dest, a.DestR = c.strR("dest", "", true)
			return a, []starlark.Value{reprArg(a.Src, a.SrcR), reprArg(a.Dest, a.DestR)}
		},
	},
	{
		name: "download_string",
		params: []param{
			{name: "s", required: true, positional: true},
			{name: "workerdest", required: true, positional: true},
			{name: "mode"},
		},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &DownloadStringAction{Mode: c.fileMode("mode")}
			a.S, a.SR = c.strR("s", "", false)
			a.WorkerDest, a.WorkerDestR = c.strR("workerdest", "", true)
			return a, []starlark.Value{reprArg(a.S, a.SR), reprArg(a.WorkerDest, a.WorkerDestR)}
		},
	},
	{
		name: "upload_dir",
		params: []param{
			{name: "workersrc", required: true, positional: true},
			{name: "masterdest", required: true, positional: true},
			{name: "compress"},
		},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &UploadDirAction{Compress: c.str("compress", "")}
			switch a.Compress {
			case "", "gz", "bz2":
			default:
				c.argErrorf("compress", "want None, \"gz\" or \"bz2\", got %q", a.Compress)
			}
			a.WorkerSrc, a.WorkerSrcR = c.strR("workersrc", "", true)
			a.MasterDest, a.MasterDestR = c.strR("masterdest", "", true)
			return a, []starlark.Value{reprArg(a.WorkerSrc, a.WorkerSrcR), reprArg(a.MasterDest, a.MasterDestR)}
		},
	},
	{
		name: "upload_many",
		params: []param{
			{name: "glob", required: true, positional: true},
			{name: "masterdest_dir", required: true, positional: true},
		},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &UploadManyAction{}
			a.Glob, a.GlobR = c.strR("glob", "", true)
			a.MasterDestDir, a.MasterDestDirR = c.strR("masterdest_dir", "", true)
			return a, []starlark.Value{reprArg(a.Glob, a.GlobR), reprArg(a.MasterDestDir, a.MasterDestDirR)}
		},
	},
	{
		name:   "master_shell",
		params: []param{{name: "command", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			sh, repr := shellAction(c)
			return &MasterShellAction{Command: *sh.(*ShellAction)}, repr
		},
	},
	{
		name: "http_request",
		params: []param{
			{name: "url", required: true, positional: true},
			{name: "method"},
			{name: "headers"},
			{name: "body"},
			{name: "expect_status"},
		},
		action: httpRequestAction,
	},
	gitStepKind,     // git.go
	triggerStepKind, // trigger.go
}

// --- actions ---

// CompileAction is compile(command, ...): a shell command whose output is
// scanned for warnings.
type CompileAction struct {
	Command        ShellAction
	WarningPattern string           // a Go regexp; default DefaultWarningPattern
	WarningRE      *regexp.Regexp   // WarningPattern compiled
	MaxWarnings    int              // more warnings than this give FAILURE; -1: no limit
	Suppress       []*regexp.Regexp // warning lines matching one of these are not counted
}

// TestAction is test(command): a shell command whose output is scanned for
// counts of passed and failed tests.
type TestAction struct{ Command ShellAction }

// ShellSequenceAction is shell_sequence(commands): commands run one after
// the other in the one step, stopping at the first that fails.
type ShellSequenceAction struct{ Commands []ShellAction }

// SetPropertiesAction is set_property(name, value) and
// set_properties({...}): build properties set by the master, without any
// worker command.
type SetPropertiesAction struct {
	Properties  map[string]any        // JSON-like values
	PropertiesR map[string]Renderable // build-time values; keys not in Properties
	kind        string
}

// SetPropertyFromCommandAction is set_property_from_command(command, ...).
// Exactly one of Property and ExtractFn is set.
type SetPropertyFromCommandAction struct {
	Command   ShellAction
	Property  string // stores the command's stdout in this property
	ExtractFn *Func  // extract_fn(rc, stdout, stderr) -> dict of properties
	Strip     bool   // strip whitespace around stdout (default true)
}

// FileExistsAction is file_exists(file): SUCCESS if the worker has a
// regular file there.
type FileExistsAction struct {
	File  string // relative to the step's workdir unless absolute
	FileR Renderable
}

// CpdirAction is cpdir(src, dest): copies a directory tree on the worker.
type CpdirAction struct {
	Src, Dest   string // relative to the builder's directory unless absolute
	SrcR, DestR Renderable
}

// DownloadStringAction is download_string(s, workerdest, mode=None).
type DownloadStringAction struct {
	S          string
	WorkerDest string // relative to the step's workdir unless absolute
	Mode       int    // -1 keeps the worker's default

	SR, WorkerDestR Renderable
}

// UploadDirAction is upload_dir(workersrc, masterdest, compress=None).
type UploadDirAction struct {
	WorkerSrc  string // relative to the step's workdir unless absolute
	MasterDest string // relative to the master's basedir unless absolute
	Compress   string // "", "gz" or "bz2"

	WorkerSrcR, MasterDestR Renderable
}

// UploadManyAction is upload_many(glob, masterdest_dir).
type UploadManyAction struct {
	Glob          string // relative to the step's workdir unless absolute
	MasterDestDir string // relative to the master's basedir unless absolute

	GlobR, MasterDestDirR Renderable
}

// MasterShellAction is master_shell(command): runs on the master.
type MasterShellAction struct{ Command ShellAction }

// HTTPRequestAction is http_request(url, ...), made by the master.
type HTTPRequestAction struct {
	URL          string
	Method       string            // default "GET"
	Headers      map[string]string // nil when none
	Body         string
	HasBody      bool
	ExpectStatus int // 0: any 2xx

	URLR, BodyR Renderable
	HeadersR    map[string]Renderable
}

// Kind implements StepAction.
func (*CompileAction) Kind() string { return "compile" }

// Kind implements StepAction.
func (*TestAction) Kind() string { return "test" }

// Kind implements StepAction.
func (*ShellSequenceAction) Kind() string { return "shell_sequence" }

// Kind implements StepAction.
func (a *SetPropertiesAction) Kind() string {
	if a.kind == "" {
		return "set_properties"
	}
	return a.kind
}

// Kind implements StepAction.
func (*SetPropertyFromCommandAction) Kind() string { return "set_property_from_command" }

// Kind implements StepAction.
func (*FileExistsAction) Kind() string { return "file_exists" }

// Kind implements StepAction.
func (*CpdirAction) Kind() string { return "cpdir" }

// Kind implements StepAction.
func (*DownloadStringAction) Kind() string { return "download_string" }

// Kind implements StepAction.
func (*UploadDirAction) Kind() string { return "upload_dir" }

// Kind implements StepAction.
func (*UploadManyAction) Kind() string { return "upload_many" }

// Kind implements StepAction.
func (*MasterShellAction) Kind() string { return "master_shell" }

// Kind implements StepAction.
func (*HTTPRequestAction) Kind() string { return "http_request" }

// --- constructors ---

func compileAction(c *call) (StepAction, []starlark.Value) {
	sh, repr := shellAction(c)
	a := &CompileAction{Command: *sh.(*ShellAction), WarningPattern: DefaultWarningPattern, MaxWarnings: -1}
	if _, ok := c.given("warning_pattern"); ok {
		a.WarningPattern = c.nonEmptyStr("warning_pattern", DefaultWarningPattern)
	}
	re, err := regexp.Compile(a.WarningPattern)
	if err != nil {
		c.argErrorf("warning_pattern", "invalid regular expression: %v", stripRegexpPrefix(err))
		re = regexp.MustCompile(DefaultWarningPattern)
	}
	a.WarningRE = re
	if _, ok := c.given("max_warnings"); ok {
		before := c.nerr
		n := c.int("max_warnings", -1)
		if c.nerr == before && n < 0 {
			c.argErrorf("max_warnings", "must not be negative, got %d (use None for no limit)", n)
		} else if c.nerr == before {
			a.MaxWarnings = n
		}
	}
	for i, p := range c.strList("suppress") {
		re, err := regexp.Compile(p)
		if err != nil {
			c.argErrorf("suppress["+strconv.Itoa(i)+"]", "invalid regular expression: %v", stripRegexpPrefix(err))
			continue
		}
		a.Suppress = append(a.Suppress, re)
	}
	return a, repr
}

// stripRegexpPrefix drops the "error parsing regexp: " that every regexp
// error starts with.
func stripRegexpPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func shellSequenceAction(c *call) (StepAction, []starlark.Value) {
	a := &ShellSequenceAction{}
	v, ok := c.given("commands")
	if !ok {
		return a, nil
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf("commands", "want list of commands, got %s", v.Type())
		return a, []starlark.Value{v}
	}
	if seq.Len() == 0 {
		c.argErrorf("commands", "empty list; want at least one command")
	}
	for i := range seq.Len() {
		sh, ok := c.shellOf("commands["+strconv.Itoa(i)+"]", seq.Index(i))
		if ok {
			a.Commands = append(a.Commands, sh)
		}
	}
	return a, []starlark.Value{v}
}

// shellOf parses one command given as a value, as shell(command) does.
func (c *call) shellOf(name string, v starlark.Value) (ShellAction, bool) {
	var a ShellAction
	switch cmd := v.(type) {
	case starlark.String:
		a.Script = string(cmd)
		if strings.TrimSpace(a.Script) == "" {
			c.argErrorf(name, "empty command")
			return a, false
		}
	case *starlark.List, starlark.Tuple:
		seq := cmd.(starlark.Indexable)
		if seq.Len() == 0 {
			c.argErrorf(name, "empty command")
			return a, false
		}
		a.Argv = make([]string, seq.Len())
		for i := range seq.Len() {
			e := seq.Index(i)
			if r, ok := asRenderable(e, c.pos); ok {
				if a.ArgvR == nil {
					a.ArgvR = make([]Renderable, seq.Len())
				}
				a.ArgvR[i] = r
				continue
			}
			s, ok := starlark.AsString(e)
			if !ok {
				c.argErrorf(fmt.Sprintf("%s[%d]", name, i), "want string, got %s", e.Type())
				return a, false
			}
			a.Argv[i] = s
		}
		if a.Argv[0] == "" && (a.ArgvR == nil || a.ArgvR[0] == nil) {
			c.argErrorf(name+"[0]", "empty program name")
			return a, false
		}
	case *renderValue, starlark.Callable:
		a.ScriptR, _ = asRenderable(v, c.pos)
	default:
		c.argErrorf(name, "want string or list of strings, got %s", v.Type())
		return a, false
	}
	return a, true
}

// propertyName checks a property name given to a step.
func (c *call) propertyName(arg, name string) bool {
	if name == "" {
		c.argErrorf(arg, "must not be empty")
		return false
	}
	return true
}

// propValue converts a property value argument: a JSON-like value or a
// build-time value.
func (c *call) propValue(arg string, v starlark.Value) (any, Renderable, bool) {
	if r, ok := asRenderable(v, c.pos); ok {
		return nil, r, true
	}
	x, err := toJSON(v, 0)
	if err != nil {
		c.argErrorf(arg+err.path(), "%s", err.msg)
		return nil, nil, false
	}
	return x, nil, true
}

func setPropertyAction(c *call) (StepAction, []starlark.Value) {
	a := &SetPropertiesAction{kind: "set_property"}
	name := c.str("property", "")
	c.propertyName("property", name)
	v, ok := c.given("value")
	if !ok {
		return a, nil
	}
	x, r, ok := c.propValue("value", v)
	if ok && name != "" {
		if r != nil {
			a.PropertiesR = map[string]Renderable{name: r}
		} else {
			a.Properties = map[string]any{name: x}
		}
	}
	return a, []starlark.Value{starlark.String(name), v}
}

func setPropertiesAction(c *call) (StepAction, []starlark.Value) {
	a := &SetPropertiesAction{kind: "set_properties"}
	v, ok := c.given("properties")
	if !ok {
		return a, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf("properties", "want dict, got %s", v.Type())
		return a, []starlark.Value{v}
	}
	if d.Len() == 0 {
		c.argErrorf("properties", "empty dict; want at least one property")
	}
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok {
			c.argErrorf("properties", "want string keys, got %s key %s", kv[0].Type(), kv[0])
			continue
		}
		if !c.propertyName("properties", k) {
			continue
		}
		x, r, ok := c.propValue("properties["+strconv.Quote(k)+"]", kv[1])
		switch {
		case !ok:
		case r != nil:
			if a.PropertiesR == nil {
				a.PropertiesR = map[string]Renderable{}
			}
			a.PropertiesR[k] = r
		default:
			if a.Properties == nil {
				a.Properties = map[string]any{}
			}
			a.Properties[k] = x
		}
	}
	return a, []starlark.Value{v}
}

func setPropertyFromCommandAction(c *call) (StepAction, []starlark.Value) {
	sh, repr := shellAction(c)
	a := &SetPropertyFromCommandAction{Command: *sh.(*ShellAction), Strip: c.bool("strip", true)}
	if _, ok := c.given("property"); ok {
		a.Property = c.nonEmptyStr("property", "")
	}
	a.ExtractFn = c.function("extract_fn", 3)
	_, hasProp := c.given("property")
	_, hasFn := c.given("extract_fn")
	switch {
	case hasProp && hasFn:
		c.errorf("give property or extract_fn, not both")
	case !hasProp && !hasFn:
		c.errorf("missing property or extract_fn: say where the output goes")
	}
	return a, repr
}

func httpRequestAction(c *call) (StepAction, []starlark.Value) {
	a := &HTTPRequestAction{Method: strings.ToUpper(c.nonEmptyStr("method", "GET"))}
	a.URL, a.URLR = c.strR("url", "", true)
	if a.URLR == nil && a.URL != "" {
		u, err := url.Parse(a.URL)
		switch {
		case err != nil:
			c.argErrorf("url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			c.argErrorf("url", "want an http:// or https:// URL, got %q", a.URL)
		case u.Host == "":
			c.argErrorf("url", "no host in %q", a.URL)
		}
	}
	for _, r := range a.Method {
		if !(r >= 'A' && r <= 'Z') {
			c.argErrorf("method", "want an HTTP method such as \"GET\" or \"POST\", got %q", a.Method)
			break
		}
	}
	a.Headers, a.HeadersR = c.strDictR("headers")
	if _, ok := c.given("body"); ok {
		a.HasBody = true
		a.Body, a.BodyR = c.strR("body", "", false)
	}
	if _, ok := c.given("expect_status"); ok {
		before := c.nerr
		n := c.int("expect_status", 0)
		if c.nerr == before && (n < 100 || n > 599) {
			c.argErrorf("expect_status", "want an HTTP status from 100 to 599, got %d", n)
		} else {
			a.ExpectStatus = n
		}
	}
	return a, []starlark.Value{reprArg(a.URL, a.URLR)}
}

// --- build time ---

// ExtractProperties calls extract_fn(rc, stdout, stderr) under the
// build-time budget and returns the properties it chose.
func (a *SetPropertyFromCommandAction) ExtractProperties(env *BuildEnv, rc int64, stdout, stderr string) (map[string]any, error) {
	fn := a.ExtractFn.Fn
	v, err := starlark.Call(env.thread(), fn, starlark.Tuple{starlark.MakeInt64(rc), starlark.String(stdout), starlark.String(stderr)}, nil)
	if err != nil {
		return nil, err
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return nil, fmt.Errorf("extract_fn %s returned %s; want a dict of properties", fn.Name(), v.Type())
	}
	x, jerr := toJSON(d, 0)
	if jerr != nil {
		return nil, fmt.Errorf("extract_fn %s returned a bad value at %s: %s", fn.Name(), jerr.path(), jerr.msg)
	}
	m := x.(map[string]any)
	for k := range m {
		if k == "" {
			return nil, fmt.Errorf("extract_fn %s returned an empty property name", fn.Name())
		}
	}
	return m, nil
}

// SetProperty records a property the build set while it runs, so that
// later build-time functions and renderables see it.
func (env *BuildEnv) SetProperty(name string, v any) {
	if env.Properties == nil {
		env.Properties = map[string]any{}
	}
	env.Properties[name] = v
	env.value = nil // the build value shows the properties: remake it
}

// RenderAction renders the build-time values of one of the actions of
// this file (Step.Render handles the common options and the older kinds).
// Other actions are returned as they are.
func RenderAction(a StepAction, env *BuildEnv) (StepAction, error) {
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
	shell := func(sh ShellAction, what string) ShellAction {
		if err != nil || (sh.ScriptR == nil && sh.ArgvR == nil) {
			return sh
		}
		out, e := (&Step{Action: &sh}).Render(env)
		if e != nil {
			if what != "" {
				e = fmt.Errorf("%s: %w", what, e)
			}
			err = e
			return sh
		}
		return *out.Action.(*ShellAction)
	}
	switch a := a.(type) {
	case *CompileAction:
		na := *a
		na.Command = shell(a.Command, "")
		return &na, err
	case *TestAction:
		return &TestAction{Command: shell(a.Command, "")}, err
	case *MasterShellAction:
		return &MasterShellAction{Command: shell(a.Command, "")}, err
	case *SetPropertyFromCommandAction:
		na := *a
		na.Command = shell(a.Command, "")
		return &na, err
	case *ShellSequenceAction:
		na := &ShellSequenceAction{Commands: make([]ShellAction, len(a.Commands))}
		for i, c := range a.Commands {
			na.Commands[i] = shell(c, "commands["+strconv.Itoa(i)+"]")
		}
		return na, err
	case *SetPropertiesAction:
		if a.PropertiesR == nil {
			return a, nil
		}
		return &SetPropertiesAction{kind: a.kind, Properties: renderDict(a.Properties, a.PropertiesR, "", r)}, err
	case *TriggerAction:
		if a.SetPropertiesR == nil {
			return a, nil
		}
		na := *a
		na.SetProperties, na.SetPropertiesR = renderDict(a.SetProperties, a.SetPropertiesR, "", r), nil
		return &na, err
	case *FileExistsAction:
		return &FileExistsAction{File: r(a.File, a.FileR, "file")}, err
	case *CpdirAction:
		return &CpdirAction{Src: r(a.Src, a.SrcR, "src"), Dest: r(a.Dest, a.DestR, "dest")}, err
	case *DownloadStringAction:
		return &DownloadStringAction{S: r(a.S, a.SR, "s"), WorkerDest: r(a.WorkerDest, a.WorkerDestR, "workerdest"), Mode: a.Mode}, err
	case *UploadDirAction:
		return &UploadDirAction{WorkerSrc: r(a.WorkerSrc, a.WorkerSrcR, "workersrc"), MasterDest: r(a.MasterDest, a.MasterDestR, "masterdest"), Compress: a.Compress}, err
	case *UploadManyAction:
		return &UploadManyAction{Glob: r(a.Glob, a.GlobR, "glob"), MasterDestDir: r(a.MasterDestDir, a.MasterDestDirR, "masterdest_dir")}, err
	case *HTTPRequestAction:
		na := *a
		na.URL = r(a.URL, a.URLR, "url")
		na.Body = r(a.Body, a.BodyR, "body")
		na.URLR, na.BodyR = nil, nil
		if a.HeadersR != nil {
			na.Headers = renderDict(a.Headers, a.HeadersR, "headers", r)
			na.HeadersR = nil
		}
		return &na, err
	}
	return a, nil
}
