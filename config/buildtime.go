package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// buildTimeBuiltins are the builtins that functions of the build (renderers,
// do_step_if, steps=fn) may call: those that only construct values. The
// step constructors are allowed too.
var buildTimeBuiltins = map[string]bool{"interpolate": true, "prop": true, "secret": true}

func allowedAtBuildTime(name string) bool {
	if buildTimeBuiltins[name] {
		return true
	}
	for _, k := range stepKinds {
		if k.name == name {
			return true
		}
	}
	return false
}

// callAtBuildTime runs builtin b called from a build-time thread. It must
// not touch the loader's declarations (the load is long over, and builds
// run concurrently), so it gets a scratch loader, and any problem becomes a
// Starlark error, which the build shows with its traceback.
func callAtBuildTime(l *loader, b *builtin, thread *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if !allowedAtBuildTime(b.sig.fn) {
		return nil, fmt.Errorf("%s() cannot be called at build time: a function of the build may only make values (steps, interpolate, prop, secret), not declare things", b.sig.fn)
	}
	scratch := &loader{opts: l.opts, thread: thread}
	c := &call{l: scratch, thread: thread, sig: b.sig, pos: callerPos(thread)}
	c.bind(args, kwargs)
	v, err := b.fn(c)
	if err != nil {
		return nil, err
	}
	if len(scratch.errs.errs) > 0 {
		msgs := make([]string, len(scratch.errs.errs))
		for i, e := range scratch.errs.errs {
			msgs[i] = e.Msg
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return v, nil
}

// varKwSignature is newSignature for a builtin that also takes arbitrary
// keyword arguments, which it reads from call.kwargs.
func varKwSignature(fn string, lists ...[]param) *signature {
	s := newSignature(fn, lists...)
	s.varKw = true
	return s
}

// stepsOf converts the value a steps function returned to steps, with
// names made unique. It returns the problems found instead if any.
func stepsOf(v starlark.Value) ([]*Step, []string) {
	seq, ok := asSequence(v)
	if !ok {
		return nil, []string{fmt.Sprintf("returned %s; want a list of steps", v.Type())}
	}
	if seq.Len() == 0 {
		return nil, []string{"returned an empty list; want at least one step"}
	}
	var problems []string
	steps := make([]*Step, 0, seq.Len())
	for i := range seq.Len() {
		e := seq.Index(i)
		o, ok := e.(*object)
		if !ok || o.typ != "step" {
			problems = append(problems, "["+strconv.Itoa(i)+"]: want step, got "+e.Type())
			continue
		}
		if !o.ok {
			problems = append(problems, "["+strconv.Itoa(i)+"]: invalid step "+o.repr)
			continue
		}
		s := *o.item.(*Step)
		steps = append(steps, &s)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	uniqueStepNames(steps)
	return steps, nil
}
