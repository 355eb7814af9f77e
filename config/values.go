package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// object is the Starlark value a constructor builtin returns, such as the
// result of worker("linux-1") or shell("make").
//
// Scripts can store objects in variables and lists, print them and read a
// few attributes (such as .name), but never change the Go item behind them:
// the object is immutable from the start, so freezing is a no-op.
// named returns the value of a declaration that has a name: its type,
// typ("name") as its repr, a name attribute, and item.
func (c *call) named(typ, name string, item any) *object {
	return &object{
		typ:   typ,
		repr:  reprCall(typ, starlark.String(name)),
		attrs: starlark.StringDict{"name": starlark.String(name)},
		item:  item,
		ok:    c.ok(),
	}
}

type object struct {
	typ   string              // Starlark type name: "worker", "builder", "step", "force_scheduler"
	repr  string              // what str() and print() show, e.g. `shell("make")`
	attrs starlark.StringDict // read-only attributes; values are immutable
	item  any                 // *Worker, *Builder, *Step or *ForceScheduler

	// ok is false if the constructor reported a problem. The item is then
	// incomplete; whoever consumes it (e.g. builder(steps=...)) skips it
	// rather than report the same mistake a second time.
	ok bool
}

var (
	_ starlark.Value    = (*object)(nil)
	_ starlark.HasAttrs = (*object)(nil)
)

func (o *object) String() string        { return o.repr }
func (o *object) Type() string          { return o.typ }
func (o *object) Freeze()               {}
func (o *object) Truth() starlark.Bool  { return starlark.True }
func (o *object) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", o.typ) }

// Attr implements starlark.HasAttrs. It returns (nil, nil) for an unknown
// name, which makes Starlark report "has no .x field or method".
func (o *object) Attr(name string) (starlark.Value, error) { return o.attrs[name], nil }

// AttrNames implements starlark.HasAttrs.
func (o *object) AttrNames() []string { return o.attrs.Keys() }

// reprCall formats a constructor call for an object's repr, with the given
// leading arguments in Starlark syntax, e.g. `upload("a.txt", "out/a.txt")`.
func reprCall(fn string, args ...starlark.Value) string {
	b := []byte(fn)
	b = append(b, '(')
	for i, a := range args {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, a.String()...)
	}
	return string(append(b, ')'))
}

// maxJSONDepth bounds the nesting of property values; it also stops a list
// that contains itself from recursing forever.
const maxJSONDepth = 64

// jsonError is a problem found by toJSON inside a value. Its path, such as
// `["os"][1]`, is built on the way back up, so that converting a value
// that is fine costs no string building.
type jsonError struct {
	msg      string
	segments []string // innermost first
	elided   bool     // the path is too deep to show whole
}

func (e *jsonError) at(depth int, segment string) *jsonError {
	// Show at most the outermost few steps of a runaway path.
	if e.elided && depth >= 3 {
		return e
	}
	e.segments = append(e.segments, segment)
	return e
}

func (e *jsonError) path() string {
	var b strings.Builder
	for i := len(e.segments) - 1; i >= 0; i-- {
		b.WriteString(e.segments[i])
	}
	if e.elided {
		b.WriteString("...")
	}
	return b.String()
}

// toJSON converts a Starlark value to a JSON-like Go value: string, int64,
// float64, bool, nil, []any or map[string]any.
func toJSON(v starlark.Value, depth int) (any, *jsonError) {
	if depth > maxJSONDepth {
		return nil, &jsonError{msg: fmt.Sprintf("nested more than %d deep (does a list contain itself?)", maxJSONDepth), elided: true}
	}
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.String:
		return string(v), nil
	case starlark.Int:
		i, ok := v.Int64()
		if !ok {
			return nil, &jsonError{msg: fmt.Sprintf("integer %s does not fit in 64 bits", v)}
		}
		return i, nil
	case starlark.Float:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &jsonError{msg: fmt.Sprintf("%s is not a finite number", v)}
		}
		return f, nil
	case *starlark.List, starlark.Tuple:
		seq := v.(starlark.Indexable)
		out := make([]any, seq.Len())
		for i := range out {
			x, err := toJSON(seq.Index(i), depth+1)
			if err != nil {
				return nil, err.at(depth, "["+strconv.Itoa(i)+"]")
			}
			out[i] = x
		}
		return out, nil
	case *starlark.Dict:
		out := make(map[string]any, v.Len())
		for _, kv := range v.Items() {
			k, ok := starlark.AsString(kv[0])
			if !ok {
				return nil, &jsonError{msg: fmt.Sprintf("want string keys, got %s key %s", kv[0].Type(), kv[0])}
			}
			x, err := toJSON(kv[1], depth+1)
			if err != nil {
				return nil, err.at(depth, "["+strconv.Quote(k)+"]")
			}
			out[k] = x
		}
		return out, nil
	}
	return nil, &jsonError{msg: "want string, int, float, bool, None, list or dict, got " + v.Type()}
}
