package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Pos is a position in a configuration file.
type Pos struct {
	// File is the file name as the user would type it: relative to the
	// current directory if the main file was passed to Load as a relative
	// path, absolute if it was passed as an absolute one, and
	// "@starforge//name.star" for files of the embedded library.
	File string
	// Line and Col are 1-based; 0 means unknown.
	Line, Col int
}

// String returns "file:line:col", or less when the line or column is unknown.
func (p Pos) String() string {
	switch {
	case p.Line <= 0:
		return p.File
	case p.Col <= 0:
		return p.File + ":" + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

func posOf(p syntax.Position) Pos {
	return Pos{File: p.Filename(), Line: int(p.Line), Col: int(p.Col)}
}

// compare orders positions by file name, then line, then column.
func (p Pos) compare(q Pos) int {
	if c := strings.Compare(p.File, q.File); c != 0 {
		return c
	}
	if c := cmp.Compare(p.Line, q.Line); c != 0 {
		return c
	}
	return cmp.Compare(p.Col, q.Col)
}

// Error is one problem in a configuration.
type Error struct {
	Pos Pos
	Msg string

	// Backtrace is the Starlark call stack of a runtime error that happened
	// inside a function or a loaded file ("Traceback (most recent call
	// last):" and one line per frame). It is empty otherwise.
	Backtrace string

	cause error // for errors.Is and errors.As, e.g. fs.ErrNotExist
}

// Error returns "file:line:col: msg", followed by the indented backtrace on
// the next lines if there is one.
func (e *Error) Error() string {
	s := e.Pos.String() + ": " + e.Msg
	if e.Backtrace != "" {
		s += "\n  " + strings.ReplaceAll(strings.TrimRight(e.Backtrace, "\n"), "\n", "\n  ")
	}
	return s
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.cause }

// Errors is every problem found in a configuration. Load and LoadWith return
// a non-empty Errors, sorted by position, as their error.
type Errors []*Error

// Error returns each error's text on its own line(s), sorted by file, line and
// column.
func (es Errors) Error() string {
	sorted := slices.Clone(es)
	sortErrors(sorted)
	var b strings.Builder
	for i, e := range sorted {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the individual errors, so that errors.Is and errors.As look
// at each of them.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors sorts es by position, stably so that problems reported at the
// same call keep the order they were found in.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b *Error) int { return a.Pos.compare(b.Pos) })
}

// errorList collects the problems found while loading.
type errorList struct {
	errs Errors
}

func (l *errorList) add(e *Error) { l.errs = append(l.errs, e) }

func (l *errorList) addf(pos Pos, format string, args ...any) {
	l.add(&Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// result returns the collected problems sorted and without exact duplicates
// (a builtin called with the same bad argument in a loop reports it once), or
// nil if there were none.
func (l *errorList) result() error {
	if len(l.errs) == 0 {
		return nil
	}
	es := slices.Clone(l.errs)
	sortErrors(es)
	es = slices.CompactFunc(es, func(a, b *Error) bool {
		return a.Pos == b.Pos && a.Msg == b.Msg && a.Backtrace == b.Backtrace
	})
	return es
}

// addStarlark records an error returned by parsing or executing a file.
//
// Errors from load()ed files arrive wrapped ("cannot load x.star: …") by
// every file on the way up; the innermost positioned error is the one that
// says where the problem is, so that is the one reported.
func (l *errorList) addStarlark(err error, fallback Pos) {
	inner := err
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.(type) {
		case *starlark.EvalError, syntax.Error, resolve.ErrorList:
			inner = e
		}
	}
	switch e := inner.(type) {
	case syntax.Error:
		l.errs = append(l.errs, &Error{Pos: posOf(e.Pos), Msg: e.Msg, cause: err})
	case resolve.ErrorList:
		for _, re := range e {
			l.errs = append(l.errs, &Error{Pos: posOf(re.Pos), Msg: re.Msg, cause: err})
		}
	case *starlark.EvalError:
		l.errs = append(l.errs, evalError(e, err))
	default:
		l.errs = append(l.errs, &Error{Pos: fallback, Msg: err.Error(), cause: err})
	}
}

// evalError converts a Starlark runtime error. Its position is that of the
// innermost frame that is Starlark code: a failing builtin such as fail() or
// len() has no position of its own, so the error points at its call.
func evalError(e *starlark.EvalError, cause error) *Error {
	frames := starlarkFrames(e.CallStack)
	out := &Error{Msg: e.Msg, cause: cause}
	if len(frames) == 0 {
		out.Pos = Pos{File: "<unknown>"}
		return out
	}
	out.Pos = posOf(frames[len(frames)-1].Pos)
	out.Backtrace = backtrace(frames)
	return out
}

// starlarkFrames returns the frames of stack that are Starlark code, leaving
// out builtins, which have no position.
func starlarkFrames(stack starlark.CallStack) []starlark.CallFrame {
	frames := make([]starlark.CallFrame, 0, len(stack))
	for _, fr := range stack {
		if fr.Pos.IsValid() && fr.Pos.Line > 0 {
			frames = append(frames, fr)
		}
	}
	return frames
}

// backtrace formats frames, outermost first, as a Python-style traceback,
// or returns "" if there is only one frame: it would only repeat the
// position that the error already starts with.
func backtrace(frames []starlark.CallFrame) string {
	if len(frames) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Traceback (most recent call last):")
	for _, fr := range frames {
		fmt.Fprintf(&b, "\n  %s: in %s", posOf(fr.Pos), fr.Name)
	}
	return b.String()
}
