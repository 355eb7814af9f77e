package webui

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// forceForm is a force scheduler's form as the builder page renders it.
type forceForm struct {
	ForceScheduler
	// Reason and Owner say whether to show the built-in "Reason" and
	// "Your name" fields: not when a parameter named "reason", or a
	// username parameter, takes their place.
	Reason, Owner bool
	Fields        []formField
}

// formField is one declared parameter, ready for the template.
type formField struct {
	Kind     string
	Key      string // the request key the script sends its value under
	Label    string
	Required bool
	Value    string // the default, as the input shows it
	Checked  bool   // bool: the default
	Pattern  string // string: the HTML pattern, "" when the regex cannot be one
	Regex    string // string and text: the regex, to explain a mismatch
	Multiple bool
	Options  []formOption
	Sub      []formField // codebase: branch, revision, repository, project
	Legend   string      // codebase: the fieldset's legend
}

type formOption struct {
	Value    string
	Selected bool
}

func newForceForm(f ForceScheduler) forceForm {
	ff := forceForm{ForceScheduler: f, Reason: true, Owner: true}
	for _, p := range f.Params {
		if p.Name == "reason" && p.Kind != "codebase" {
			ff.Reason = false
		}
		if p.Kind == "username" {
			ff.Owner = false
		}
		ff.Fields = append(ff.Fields, newFormField(p))
	}
	return ff
}

func newFormField(p ForceParam) formField {
	fd := formField{Kind: p.Kind, Key: p.Name, Label: p.label(), Required: p.Required, Multiple: p.Multiple}
	switch p.Kind {
	case "string", "text", "username":
		fd.Value, _ = p.Default.(string)
		if p.Regex != nil {
			fd.Regex = p.Regex.String()
			if p.Kind == "string" {
				fd.Pattern = htmlPattern(fd.Regex)
			}
		}
	case "int":
		if n, ok := p.Default.(int64); ok {
			fd.Value = strconv.FormatInt(n, 10)
		}
	case "bool":
		fd.Checked, _ = p.Default.(bool)
	case "choice":
		var def []string
		switch d := p.Default.(type) {
		case string:
			def = []string{d}
		case []string:
			def = d
		}
		for _, c := range p.Choices {
			fd.Options = append(fd.Options, formOption{Value: c, Selected: slices.Contains(def, c)})
		}
	case "fixed":
		if s, ok := p.Default.(string); ok {
			fd.Value = s
		} else if b, err := json.Marshal(p.Default); err == nil {
			fd.Value = string(b)
		} else {
			fd.Value = fmt.Sprint(p.Default)
		}
	case "codebase":
		fd.Legend = p.Label
		if fd.Legend == "" {
			fd.Legend = "Source"
		}
		for _, field := range codebaseFields {
			fd.Sub = append(fd.Sub, formField{Kind: "string", Key: codebaseKey(p.Name, field),
				Label: strings.ToUpper(field[:1]) + field[1:], Value: p.codebaseDefault(field)})
		}
	}
	return fd
}

// htmlPattern turns a Go regular expression, which matches anywhere in the
// value, into an HTML pattern attribute, which must match all of it. It
// returns "" for expressions whose syntax JavaScript reads differently
// (flags, POSIX classes, \A, \z, \Q, \p): the form then leaves the check
// to the server rather than refuse what the server would take.
func htmlPattern(re string) string {
	for _, bad := range []string{"(?", "[:", `\A`, `\z`, `\Q`, `\C`, `\p`, `\P`} {
		if strings.Contains(re, bad) {
			return ""
		}
	}
	return ".*(?:" + re + ").*"
}
