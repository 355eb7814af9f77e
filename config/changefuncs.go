package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"time"

	"go.starlark.net/starlark"
)

// ChangeInfo is what change_filter(fn=) and file_is_important see of a
// change: its value in Starlark has these fields as attributes (files is
// a list, properties a dict, when a float of Unix seconds).
type ChangeInfo struct {
	ID                          int64
	Author, Committer, Comments string
	Branch, Revision, Revlink   string
	When                        time.Time
	Category                    string
	Repository, Codebase        string
	Project                     string
	Files                       []string
	Properties                  map[string]any // the values of the change's properties
}

func (c ChangeInfo) value() starlark.Value {
	when := starlark.Float(0)
	if !c.When.IsZero() {
		when = starlark.Float(float64(c.When.UnixNano()) / 1e9)
	}
	return &object{typ: "change", repr: fmt.Sprintf("<change %d %s %s>", c.ID, c.Branch, c.Revision), ok: true, attrs: starlark.StringDict{
		"id":         starlark.MakeInt64(c.ID),
		"number":     starlark.MakeInt64(c.ID), // Buildbot's name for it
		"author":     starlark.String(c.Author),
		"committer":  starlark.String(c.Committer),
		"comments":   starlark.String(c.Comments),
		"branch":     starlark.String(c.Branch),
		"revision":   starlark.String(c.Revision),
		"revlink":    starlark.String(c.Revlink),
		"when":       when,
		"category":   starlark.String(c.Category),
		"repository": starlark.String(c.Repository),
		"codebase":   starlark.String(c.Codebase),
		"project":    starlark.String(c.Project),
		"files":      stringList(c.Files),
		"properties": toStarlarkDict(c.Properties),
	}}
}

// Match reports whether c passes the filter. Every field given must match
// (a list matches if one of its elements does); Fn, if any, is called last,
// on a fresh thread with the default step budget, and only for a change
// the other fields let through. An error of Fn is returned with false.
// Match is safe for concurrent use.
func (f *ChangeFilter) Match(c ChangeInfo) (bool, error) {
	if !listMatch(f.Project, c.Project) || !listMatch(f.Repository, c.Repository) ||
		!listMatch(f.Category, c.Category) || !listMatch(f.Codebase, c.Codebase) {
		return false, nil
	}
	if !listMatch(f.Branch, c.Branch) {
		return false, nil
	}
	if len(f.BranchRe) > 0 && !slices.ContainsFunc(f.BranchRe, func(re *regexp.Regexp) bool { return re.MatchString(c.Branch) }) {
		return false, nil
	}
	if len(f.Files) > 0 && !anyFileMatches(f.Files, c.Files) {
		return false, nil
	}
	if f.Fn == nil {
		return true, nil
	}
	return f.Fn.callBool(0, c.value())
}

func listMatch(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

func anyFileMatches(patterns, files []string) bool {
	for _, file := range files {
		for _, p := range patterns {
			if ok, _ := path.Match(p, file); ok {
				return true
			}
		}
	}
	return false
}

// CallFileIsImportant calls file_is_important(change); it must return a
// bool. maxSteps 0 means DefaultDispatchSteps.
func (f *Func) CallFileIsImportant(c ChangeInfo, maxSteps uint64) (bool, error) {
	return f.callBool(maxSteps, c.value())
}
