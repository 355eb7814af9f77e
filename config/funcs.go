package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// DefaultDispatchSteps is the Starlark step budget of one call of a
// builder function (can_start, next_worker, next_build) when the caller
// gives 0.
const DefaultDispatchSteps = 100_000

// BuilderInfo is what a builder function sees of its builder.
type BuilderInfo struct {
	Name       string
	Tags       []string
	Properties map[string]any
}

// WorkerInfo is what a builder function sees of a worker.
type WorkerInfo struct {
	Name          string
	Properties    map[string]any
	RunningBuilds int
}

// RequestInfo is what a builder function sees of a pending build request.
type RequestInfo struct {
	ID          int64
	Priority    int
	SubmittedAt time.Time
	Properties  map[string]any // the buildset's properties; nil if unknown
	Sources     []SourceStamp  // the buildset's source stamps; nil if unknown
}

// FuncError is an error of a builder function: it raised an error, ran out
// of steps, or returned a value of the wrong type.
type FuncError struct {
	Func *Func
	Err  error
}

func (e *FuncError) Error() string { return e.Func.Name() + ": " + e.Err.Error() }
func (e *FuncError) Unwrap() error { return e.Err }

// Backtrace returns the Starlark traceback of the error, or "".
func (e *FuncError) Backtrace() string { return Backtrace(e.Err) }

func (f *Func) fail(format string, args ...any) error {
	return &FuncError{Func: f, Err: fmt.Errorf(format, args...)}
}

// callFunc calls f with args on a fresh thread under a step budget.
func (f *Func) callFunc(maxSteps uint64, args ...starlark.Value) (starlark.Value, error) {
	if maxSteps == 0 {
		maxSteps = DefaultDispatchSteps
	}
	t := &starlark.Thread{Name: f.Name(), Print: func(*starlark.Thread, string) {}}
	t.SetMaxExecutionSteps(maxSteps)
	v, err := starlark.Call(t, f.Fn, args, nil)
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			// EvalError's message already names the function; keep it short.
			return nil, &FuncError{Func: f, Err: ee}
		}
		return nil, &FuncError{Func: f, Err: err}
	}
	return v, nil
}

func stringList(ss []string) starlark.Value {
	l := make([]starlark.Value, len(ss))
	for i, s := range ss {
		l[i] = starlark.String(s)
	}
	list := starlark.NewList(l)
	list.Freeze()
	return list
}

func (b BuilderInfo) value() starlark.Value {
	return &object{typ: "builder", repr: fmt.Sprintf("<builder %s>", b.Name), ok: true, attrs: starlark.StringDict{
		"name":       starlark.String(b.Name),
		"tags":       stringList(b.Tags),
		"properties": toStarlarkDict(b.Properties),
	}}
}

func (w WorkerInfo) value() *object {
	return &object{typ: "worker", repr: fmt.Sprintf("<worker %s>", w.Name), ok: true, attrs: starlark.StringDict{
		"name":           starlark.String(w.Name),
		"properties":     toStarlarkDict(w.Properties),
		"running_builds": starlark.MakeInt(w.RunningBuilds),
	}}
}

func (r RequestInfo) value() *object {
	sub := float64(r.SubmittedAt.UnixNano()) / 1e9
	if r.SubmittedAt.IsZero() {
		sub = 0
	}
	return &object{typ: "buildrequest", repr: fmt.Sprintf("<buildrequest %d>", r.ID), ok: true, attrs: starlark.StringDict{
		"id":           starlark.MakeInt64(r.ID),
		"priority":     starlark.MakeInt(r.Priority),
		"submitted_at": starlark.Float(sub),
		"properties":   toStarlarkDict(r.Properties),
		"sources":      sourcesValue(r.Sources),
	}}
}

func sourcesValue(ss []SourceStamp) starlark.Value {
	l := make([]starlark.Value, len(ss))
	for i, s := range ss {
		l[i] = &object{typ: "sourcestamp", repr: fmt.Sprintf("<sourcestamp %s %s %s>", s.Codebase, s.Branch, s.Revision), ok: true, attrs: starlark.StringDict{
			"codebase":   starlark.String(s.Codebase),
			"repository": starlark.String(s.Repository),
			"branch":     starlark.String(s.Branch),
			"revision":   starlark.String(s.Revision),
			"project":    starlark.String(s.Project),
		}}
	}
	list := starlark.NewList(l)
	list.Freeze()
	return list
}

// CallCanStart calls can_start(builder, worker, request); it must return a
// bool.
func (f *Func) CallCanStart(b BuilderInfo, w WorkerInfo, r RequestInfo, maxSteps uint64) (bool, error) {
	return f.callBool(maxSteps, b.value(), w.value(), r.value())
}

// CallNextWorker calls next_worker(builder, workers, request); it must
// return one of the workers (or its name), or None, which CallNextWorker
// reports as "".
func (f *Func) CallNextWorker(b BuilderInfo, ws []WorkerInfo, r RequestInfo, maxSteps uint64) (string, error) {
	objs := make([]starlark.Value, len(ws))
	for i, w := range ws {
		objs[i] = w.value()
	}
	list := starlark.NewList(objs)
	list.Freeze()
	v, err := f.callFunc(maxSteps, b.value(), list, r.value())
	if err != nil {
		return "", err
	}
	var name string
	switch v := v.(type) {
	case starlark.NoneType:
		return "", nil
	case starlark.String:
		name = string(v)
	case *object:
		if v.typ != "worker" {
			return "", f.fail("returned %s; want one of the workers, its name, or None", v.Type())
		}
		name = string(v.attrs["name"].(starlark.String))
	default:
		return "", f.fail("returned %s; want one of the workers, its name, or None", v.Type())
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		if w.Name == name {
			return name, nil
		}
		names[i] = w.Name
	}
	return "", f.fail("returned %q, which is not one of the workers offered (%s)", name, strings.Join(names, ", "))
}

// CallNextBuild calls next_build(builder, requests); it must return one of
// the requests (or its id), or None. It returns the chosen request's id,
// or 0 for None.
func (f *Func) CallNextBuild(b BuilderInfo, rs []RequestInfo, maxSteps uint64) (int64, error) {
	objs := make([]starlark.Value, len(rs))
	for i, r := range rs {
		objs[i] = r.value()
	}
	list := starlark.NewList(objs)
	list.Freeze()
	v, err := f.callFunc(maxSteps, b.value(), list)
	if err != nil {
		return 0, err
	}
	var id int64
	switch v := v.(type) {
	case starlark.NoneType:
		return 0, nil
	case starlark.Int:
		n, ok := v.Int64()
		if !ok {
			return 0, f.fail("returned %s, which is not a request id", v)
		}
		id = n
	case *object:
		if v.typ != "buildrequest" {
			return 0, f.fail("returned %s; want one of the requests, its id, or None", v.Type())
		}
		id, _ = v.attrs["id"].(starlark.Int).Int64()
	default:
		return 0, f.fail("returned %s; want one of the requests, its id, or None", v.Type())
	}
	for _, r := range rs {
		if r.ID == id {
			return id, nil
		}
	}
	return 0, f.fail("returned request %d, which is not one of the requests offered", id)
}

// CallCollapse calls collapse_requests(builder, req1, req2): whether req2,
// pending, may be collapsed into the build starting for req1. It must
// return a bool.
func (f *Func) CallCollapse(b BuilderInfo, r1, r2 RequestInfo, maxSteps uint64) (bool, error) {
	return f.callBool(maxSteps, b.value(), r1.value(), r2.value())
}

// callBool calls f with args; it must return a bool.
func (f *Func) callBool(maxSteps uint64, args ...starlark.Value) (bool, error) {
	v, err := f.callFunc(maxSteps, args...)
	if err != nil {
		return false, err
	}
	ok, isBool := v.(starlark.Bool)
	if !isBool {
		return false, f.fail("returned %s; want True or False", v.Type())
	}
	return bool(ok), nil
}
