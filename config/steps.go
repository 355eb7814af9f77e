package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// stepKind is one step constructor, such as shell(...). Adding a step type
// means adding an entry to stepKinds: the constructor gets the common step
// options, the builtin and the Starlark value for free.
type stepKind struct {
	name   string  // builtin name, Kind() of its actions, and default step name
	params []param // its own parameters; the common step options follow them

	// action builds the step's action from the bound arguments, reporting
	// problems through c. It also returns the leading arguments to show in
	// the step's repr, such as the command of shell(...).
	action func(c *call) (StepAction, []starlark.Value)

	// haltOnFailure is the default of halt_on_failure (True for source
	// steps such as git, as in Buildbot).
	haltOnFailure bool
}

// stepKinds is the registry of step constructors. It is never modified.
var stepKinds = append(append([]*stepKind{
	{
		name:   "shell",
		params: []param{{name: "command", required: true, positional: true}},
		action: shellAction,
	},
	{
		name: "upload",
		params: []param{
			{name: "workersrc", required: true, positional: true},
			{name: "masterdest", required: true, positional: true},
			{name: "mode"},
		},
		action: uploadAction,
	},
	{
		name: "download",
		params: []param{
			{name: "mastersrc", required: true, positional: true},
			{name: "workerdest", required: true, positional: true},
			{name: "mode"},
		},
		action: downloadAction,
	},
	{
		name:   "mkdir",
		params: []param{{name: "dir", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &MkdirAction{}
			a.Dir, a.DirR = c.strR("dir", "", true)
			return a, []starlark.Value{reprArg(a.Dir, a.DirR)}
		},
	},
	{
		name:   "rmdir",
		params: []param{{name: "dir", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &RmdirAction{}
			a.Dir, a.DirR = c.strR("dir", "", true)
			return a, []starlark.Value{reprArg(a.Dir, a.DirR)}
		},
	},
}, moreStepKinds...), jobStepKinds...) // steps_more.go, jobsteps.go

// commonStepParams are the options every step constructor accepts, always
// by keyword. They are parsed by commonStepOptions.
var commonStepParams = []param{
	{name: "name"},
	{name: "description"},
	{name: "halt_on_failure"},
	{name: "flunk_on_failure"},
	{name: "warn_on_failure"},
	{name: "flunk_on_warnings"},
	{name: "warn_on_warnings"},
	{name: "always_run"},
	{name: "timeout"},
	{name: "max_time"},
	{name: "env"},
	{name: "workdir"},
	{name: "log_environ"},
	{name: "do_step_if"},
	{name: "hide_step_if"},
	{name: "locks"},
}

// stepBuiltins returns one builtin per step kind.
func stepBuiltins() []*builtin {
	var bs []*builtin
	for _, k := range stepKinds {
		bs = append(bs, &builtin{
			sig: newSignature(k.name, k.params, commonStepParams),
			fn:  func(c *call) (starlark.Value, error) { return newStep(c, k), nil },
		})
	}
	return bs
}

// newStep implements the constructor of step kind k. Steps are not
// registered anywhere: they take effect by being passed to builder().
func newStep(c *call, k *stepKind) starlark.Value {
	action, reprArgs := k.action(c)
	s := commonStepOptions(c, k.name)
	s.Action = action
	if _, given := c.given("halt_on_failure"); k.haltOnFailure && !given {
		s.HaltOnFailure = true
	}

	repr := reprCall(k.name, reprArgs...)
	if _, named := c.given("name"); named {
		repr = repr[:len(repr)-1] + ", name=" + starlark.String(s.Name).String() + ")"
	}
	return &object{
		typ:  "step",
		repr: repr,
		attrs: starlark.StringDict{
			"name": starlark.String(s.Name),
			"kind": starlark.String(k.name),
		},
		item: s,
		ok:   c.ok(),
	}
}

// commonStepOptions returns a Step with the common step options of c
// parsed and defaulted, for a step of the given kind.
func commonStepOptions(c *call, kind string) *Step {
	s := &Step{
		Name:            c.nonEmptyStr("name", kind),
		HaltOnFailure:   c.bool("halt_on_failure", false),
		FlunkOnFailure:  c.bool("flunk_on_failure", true),
		WarnOnFailure:   c.bool("warn_on_failure", false),
		FlunkOnWarnings: c.bool("flunk_on_warnings", false),
		WarnOnWarnings:  c.bool("warn_on_warnings", true),
		AlwaysRun:       c.bool("always_run", false),
		Timeout:         c.duration("timeout", DefaultStepTimeout),
		MaxTime:         c.duration("max_time", 0),
		LogEnviron:      c.bool("log_environ", true),
		DoStepIf:        c.cond("do_step_if"),
		HideStepIf:      c.cond("hide_step_if"),
		Locks:           c.lockList("locks"),
		Pos:             c.pos,
	}
	s.Description, s.DescriptionR = c.strR("description", "", false)
	s.Workdir, s.WorkdirR = c.strR("workdir", DefaultWorkdir, true)
	s.Env, s.EnvR = c.strDictR("env")
	return s
}

// shellAction parses shell(command): a string is a script for /bin/sh -c,
// a list is an argv run directly.
func shellAction(c *call) (StepAction, []starlark.Value) {
	a := &ShellAction{}
	v, ok := c.given("command")
	if !ok {
		return a, nil // missing: already reported
	}
	switch cmd := v.(type) {
	case starlark.String:
		a.Script = string(cmd)
		if strings.TrimSpace(a.Script) == "" {
			c.argErrorf("command", "empty command")
		}
	case *starlark.List, starlark.Tuple:
		a.Argv, a.ArgvR = c.strListR("command")
		switch {
		case cmd.(starlark.Sequence).Len() == 0:
			c.argErrorf("command", "empty command")
		case len(a.Argv) > 0 && a.Argv[0] == "" && (a.ArgvR == nil || a.ArgvR[0] == nil):
			c.argErrorf("command[0]", "empty program name")
		}
	case *renderValue, starlark.Callable:
		a.ScriptR, _ = asRenderable(v, c.pos)
	default:
		c.argErrorf("command", "want string or list of strings, got %s", v.Type())
	}
	return a, []starlark.Value{v}
}

func uploadAction(c *call) (StepAction, []starlark.Value) {
	a := &UploadAction{Mode: c.fileMode("mode")}
	a.WorkerSrc, a.WorkerSrcR = c.strR("workersrc", "", true)
	a.MasterDest, a.MasterDestR = c.strR("masterdest", "", true)
	return a, []starlark.Value{reprArg(a.WorkerSrc, a.WorkerSrcR), reprArg(a.MasterDest, a.MasterDestR)}
}

func downloadAction(c *call) (StepAction, []starlark.Value) {
	a := &DownloadAction{Mode: c.fileMode("mode")}
	a.MasterSrc, a.MasterSrcR = c.strR("mastersrc", "", true)
	a.WorkerDest, a.WorkerDestR = c.strR("workerdest", "", true)
	return a, []starlark.Value{reprArg(a.MasterSrc, a.MasterSrcR), reprArg(a.WorkerDest, a.WorkerDestR)}
}

// fileMode returns the file mode argument for name, or -1 if it is absent
// or None.
func (c *call) fileMode(name string) int {
	before := c.nerr
	m := c.int(name, -1)
	if _, given := c.given(name); given && c.nerr == before && (m < 0 || m > 0o7777) {
		c.argErrorf(name, "want a file mode from 0 to 0o7777 such as 0o644, got %d", m)
		return -1
	}
	return m
}

// steps returns the argument for name as the steps of one builder: copies
// of the given step values, with names made unique as Buildbot does.
func (c *call) steps(name string) []*Step {
	v, ok := c.given(name)
	if !ok {
		return nil // missing: already reported
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf(name, "want list of steps or a function of the build, got %s", v.Type())
		return nil
	}
	if seq.Len() == 0 {
		c.argErrorf(name, "empty list; want at least one step")
		return nil
	}
	steps := make([]*Step, 0, seq.Len())
	for i := range seq.Len() {
		e := seq.Index(i)
		o, ok := e.(*object)
		if !ok || o.typ != "step" {
			hint := ""
			if s, isStr := e.(starlark.String); isStr {
				hint = fmt.Sprintf(" (did you mean shell(%s)?)", s)
			}
			c.argErrorf(name+"["+strconv.Itoa(i)+"]", "want step, got %s%s", e.Type(), hint)
			continue
		}
		if !o.ok {
			continue // its constructor reported the problem
		}
		// Copy: the same step value may be used by several builders, and
		// its name is made unique per builder.
		s := *o.item.(*Step)
		steps = append(steps, &s)
	}
	uniqueStepNames(steps)
	return steps
}

// uniqueStepNames renames steps whose name is already used in the list by
// appending "_1", "_2", … like Buildbot: three steps named "shell" become
// "shell", "shell_1", "shell_2".
func uniqueStepNames(steps []*Step) {
	used := make(map[string]bool, len(steps))
	count := make(map[string]int)
	for _, s := range steps {
		name := s.Name
		for used[name] {
			count[s.Name]++
			name = s.Name + "_" + strconv.Itoa(count[s.Name])
		}
		used[name] = true
		s.Name = name
	}
}
