package webui

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// ForceParam is one declared field of a force scheduler's form: the web
// UI's copy of the configuration's force_scheduler params.
type ForceParam struct {
	// Kind is "string", "text", "int", "bool", "choice", "username",
	// "codebase" or "fixed".
	Kind string
	// Name is the property the parameter sets; for "codebase", the
	// codebase ("" is the default one).
	Name     string
	Label    string // shown in the form; Name if empty
	Required bool
	// Default is the value when none is given: string for string, text,
	// username and choice, []string for a choice with Multiple, int64 for
	// int, bool for bool; for fixed, its value (anything JSON encodes).
	// Nil when there is none.
	Default  any
	Regex    *regexp.Regexp // string and text: a given value must match
	Choices  []string       // choice
	Multiple bool           // choice: a list of choices
	// Codebase: the defaults of its fields.
	Branch, Revision, Repository, Project string
}

// codebaseFields are the fields of a codebase parameter, in form order.
var codebaseFields = [...]string{"branch", "revision", "repository", "project"}

// codebaseKey is the request key of field of codebase cb, as Buildbot
// names it: the field's name for the default codebase "", else
// "<codebase>_<field>".
func codebaseKey(cb, field string) string {
	if cb == "" {
		return field
	}
	return cb + "_" + field
}

// keys returns the request keys p reads: its name, or one key per
// codebase field.
func (p ForceParam) keys() []string {
	if p.Kind != "codebase" {
		return []string{p.Name}
	}
	out := make([]string, len(codebaseFields))
	for i, f := range codebaseFields {
		out[i] = codebaseKey(p.Name, f)
	}
	return out
}

// codebaseDefault is the default of one field of a codebase parameter.
func (p ForceParam) codebaseDefault(field string) string {
	switch field {
	case "branch":
		return p.Branch
	case "revision":
		return p.Revision
	case "repository":
		return p.Repository
	default:
		return p.Project
	}
}

func (p ForceParam) label() string {
	if p.Label != "" {
		return p.Label
	}
	return p.Name
}

// paramKeys maps every request key f's parameters read to its parameter.
func (f ForceScheduler) paramKeys() map[string]ForceParam {
	m := make(map[string]ForceParam)
	for _, p := range f.Params {
		for _, k := range p.keys() {
			m[k] = p
		}
	}
	return m
}

// ForcedBuild is what a force request asks for once checked against its
// scheduler's parameters.
type ForcedBuild struct {
	// Reason is the request's reason, or the value of a parameter named
	// "reason" when the scheduler declares one. "" if none was given.
	Reason string
	// Owner is the value of the scheduler's username parameter when it
	// has one and it is not empty, else the request's owner; "" if none.
	Owner string
	// Properties holds the value of every declared parameter but the
	// codebases, by name: string for string, text, username and choice,
	// int64 for int, bool for bool, []string for a multiple choice, and a
	// fixed parameter's value; then the request's free properties, as
	// strings. Never nil.
	Properties map[string]any
	// SourceStamps has one stamp per codebase parameter, in declaration
	// order, each field from the request or else the parameter's
	// default. Nil when the scheduler declares no codebase parameter.
	SourceStamps []store.SourceStamp
}

// ParamProblem is what is wrong with one value of a force request.
type ParamProblem struct {
	Key   string // the request key: a parameter's name, a codebase field's key, or an unknown key
	Label string // the form's label for the key when it differs from Key, else ""
	Msg   string
}

// ForceParamError lists every problem with a force request's values. Its
// HTTPStatus is 400.
type ForceParamError struct {
	Problems []ParamProblem // in declaration order, then unknown keys in name order
}

func (e *ForceParamError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Key)
		if p.Label != "" {
			fmt.Fprintf(&b, " (%q)", p.Label)
		}
		b.WriteString(": ")
		b.WriteString(p.Msg)
	}
	return b.String()
}

// HTTPStatus is 400: the request is wrong.
func (e *ForceParamError) HTTPStatus() int { return 400 }

func (e *ForceParamError) add(key, label, format string, args ...any) {
	if label == key {
		label = ""
	}
	e.Problems = append(e.Problems, ParamProblem{Key: key, Label: label, Msg: fmt.Sprintf(format, args...)})
}

// Resolve checks r against f's declared parameters and returns the build
// it asks for. It reads r.Params by request key (see ForceRequest.Params),
// applies defaults and fixed values, and checks r.Properties' names. All
// problems are reported together in a *ForceParamError. Resolve does not
// look at r.Scheduler or r.Builders.
//
// A value that is absent, null or a string of only white space is not
// given: the parameter's default applies, or it is an error when the
// parameter is required. A username parameter that is not given takes
// r.Owner, and a parameter named "reason" that is not given takes
// r.Reason, so that the form's and the command line's built-in fields
// fill them.
func (f ForceScheduler) Resolve(r ForceRequest) (ForcedBuild, error) {
	out := ForcedBuild{Reason: r.Reason, Owner: r.Owner, Properties: map[string]any{}}
	errs := &ForceParamError{}
	used := make(map[string]bool)
	haveOwner := false
	for _, p := range f.Params {
		if p.Kind == "codebase" {
			ss := store.SourceStamp{Codebase: p.Name}
			for _, field := range codebaseFields {
				key := codebaseKey(p.Name, field)
				used[key] = true
				v := p.codebaseDefault(field)
				if raw, given := givenValue(r.Params, key); given {
					s, ok := raw.(string)
					if !ok {
						errs.add(key, "", "want a string, got %s", describe(raw))
						continue
					}
					v = s
				}
				switch field {
				case "branch":
					ss.Branch = v
				case "revision":
					ss.Revision = v
				case "repository":
					ss.Repository = v
				case "project":
					ss.Project = v
				}
			}
			out.SourceStamps = append(out.SourceStamps, ss)
			continue
		}
		used[p.Name] = true
		raw, given := givenValue(r.Params, p.Name)
		if !given && p.Kind == "username" && !haveOwner && strings.TrimSpace(r.Owner) != "" {
			raw, given = r.Owner, true
		}
		if !given && p.Name == "reason" && strings.TrimSpace(r.Reason) != "" {
			raw, given = r.Reason, true
		}
		v, err := p.value(raw, given)
		if err != nil {
			errs.add(p.Name, p.label(), "%s", err)
			continue
		}
		out.Properties[p.Name] = v
		if p.Kind == "username" && !haveOwner {
			haveOwner = true
			if s, _ := v.(string); s != "" {
				out.Owner = s
			}
		}
		if p.Name == "reason" {
			if s, ok := v.(string); ok {
				out.Reason = s
			} else {
				out.Reason = fmt.Sprint(v)
			}
		}
	}
	for _, k := range sortedKeys(r.Params) {
		if !used[k] {
			errs.add(k, "", "not a parameter of force scheduler %q%s", f.Name, knownKeys(f))
		}
	}
	for _, k := range sortedKeys(r.Properties) {
		switch {
		case used[k]:
			errs.add(k, "", "a declared parameter of force scheduler %q, not a free property", f.Name)
		case !ValidPropertyName(k):
			errs.add(k, "", "not a valid property name; use letters, digits, '_', '-' and '.'")
		default:
			out.Properties[k] = r.Properties[k]
		}
	}
	if len(errs.Problems) > 0 {
		return ForcedBuild{}, errs
	}
	return out, nil
}

// knownKeys lists f's request keys for an error message.
func knownKeys(f ForceScheduler) string {
	var ks []string
	for _, p := range f.Params {
		ks = append(ks, p.keys()...)
	}
	if len(ks) == 0 {
		return " (it declares none; free properties must be strings)"
	}
	return " (it has " + strings.Join(ks, ", ") + ")"
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// givenValue returns m[key] and whether it counts as given: present, not
// null, and not a string of only white space.
func givenValue(m map[string]any, key string) (any, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, false
	}
	if s, isStr := v.(string); isStr && strings.TrimSpace(s) == "" {
		return nil, false
	}
	return v, true
}

// value checks one parameter's raw value and returns the property value.
func (p ForceParam) value(raw any, given bool) (any, error) {
	if p.Kind == "fixed" {
		if given && !sameValue(raw, p.Default) {
			return nil, fmt.Errorf("fixed to %s; leave it out", describe(p.Default))
		}
		return p.Default, nil
	}
	if !given {
		if p.Required {
			return nil, fmt.Errorf("required, and no value was given")
		}
		if p.Kind == "choice" && p.Multiple {
			def, _ := p.Default.([]string)
			return append([]string{}, def...), nil // [] rather than null when none
		}
		return p.Default, nil
	}
	switch p.Kind {
	case "string", "text", "username":
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", describe(raw))
		}
		if p.Regex != nil && !p.Regex.MatchString(s) {
			return nil, fmt.Errorf("%q does not match %q", s, p.Regex.String())
		}
		return s, nil
	case "int":
		return intValue(raw)
	case "bool":
		return boolValue(raw)
	case "choice":
		if !p.Multiple {
			s, ok := raw.(string)
			if !ok {
				return nil, fmt.Errorf("want one of %s, got %s", quoteList(p.Choices), describe(raw))
			}
			if !slices.Contains(p.Choices, s) {
				return nil, fmt.Errorf("%q is not one of %s", s, quoteList(p.Choices))
			}
			return s, nil
		}
		list, err := stringList(raw)
		if err != nil {
			return nil, fmt.Errorf("want a list of choices among %s, got %s", quoteList(p.Choices), describe(raw))
		}
		if len(list) == 0 && p.Required {
			return nil, fmt.Errorf("required: choose at least one of %s", quoteList(p.Choices))
		}
		for i, s := range list {
			if !slices.Contains(p.Choices, s) {
				return nil, fmt.Errorf("%q is not one of %s", s, quoteList(p.Choices))
			}
			if slices.Contains(list[:i], s) {
				return nil, fmt.Errorf("%q is chosen twice", s)
			}
		}
		return list, nil
	}
	return nil, fmt.Errorf("unknown parameter kind %q", p.Kind)
}

// intValue accepts a JSON number or a decimal string holding an integer.
func intValue(raw any) (int64, error) {
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case int64:
		return v, nil
	case json.Number:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n, nil
		}
	case float64:
		if v == math.Trunc(v) && v >= math.MinInt64 && v < math.MaxInt64 {
			return int64(v), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("want an integer, got %s", describe(raw))
}

// boolValue accepts a JSON bool or the strings a form or a command line
// sends for one.
func boolValue(raw any) (bool, error) {
	switch v := raw.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1", "on", "yes":
			return true, nil
		case "false", "0", "off", "no":
			return false, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %s", describe(raw))
}

// stringList accepts a list of strings or one string.
func stringList(raw any) ([]string, error) {
	switch v := raw.(type) {
	case string:
		return []string{v}, nil
	case []string:
		return slices.Clone(v), nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d is %s", i, describe(e))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("not a list")
}

// sameValue reports whether a value sent for a fixed parameter is its
// value: equal as JSON, or the same text when it was sent as a string.
func sameValue(sent, fixed any) bool {
	a, err1 := json.Marshal(sent)
	b, err2 := json.Marshal(fixed)
	if err1 == nil && err2 == nil && string(a) == string(b) {
		return true
	}
	s, ok := sent.(string)
	return ok && err2 == nil && s == string(b)
}

// describe shows a value in an error message, as JSON.
func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// ValidPropertyName reports whether s may name a free property (one given
// with a forced or try build): letters, digits, "_", "-" and ".".
func ValidPropertyName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// forceFieldJSON describes a declared parameter in /api/v2/forceschedulers,
// after Buildbot's field specs: fullName is the request key.
type forceFieldJSON struct {
	Name     string           `json:"name"`
	FullName string           `json:"fullName"`
	Label    string           `json:"label"`
	Type     string           `json:"type"` // Buildbot's field type
	Kind     string           `json:"kind"` // Starforge's constructor, without "_param"
	Default  any              `json:"default"`
	Required bool             `json:"required"`
	Multiple bool             `json:"multiple"`
	Regex    *string          `json:"regex"`
	Hide     bool             `json:"hide"`
	Choices  []string         `json:"choices,omitempty"`
	Codebase *string          `json:"codebase,omitempty"`
	Fields   []forceFieldJSON `json:"fields,omitempty"`
}

// buildbotTypes maps a parameter's kind to Buildbot's field type.
var buildbotTypes = map[string]string{
	"string": "text", "text": "textarea", "int": "int", "bool": "bool", "choice": "list",
	"username": "text", "codebase": "nested", "fixed": "fixed",
}

func toForceFieldJSON(p ForceParam) forceFieldJSON {
	j := forceFieldJSON{Name: p.Name, FullName: p.Name, Label: p.label(), Type: buildbotTypes[p.Kind], Kind: p.Kind,
		Default: p.Default, Required: p.Required, Multiple: p.Multiple, Choices: p.Choices}
	if p.Regex != nil {
		re := p.Regex.String()
		j.Regex = &re
	}
	if p.Kind == "codebase" {
		cb := p.Name
		j.Codebase = &cb
		j.Default = nil
		for _, field := range codebaseFields {
			j.Fields = append(j.Fields, forceFieldJSON{Name: field, FullName: codebaseKey(p.Name, field),
				Label: field, Type: "text", Kind: "string", Default: p.codebaseDefault(field)})
		}
	}
	return j
}
