package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/store"
)

// paramsScheduler declares one parameter of every kind, as master.star's
//
//	force_scheduler("params", ["linux"], label = "With params", params = [
//	    string_param("reason", label = "Why?", default = "manual", required = True),
//	    string_param("ticket", regex = "^[A-Z]+-[0-9]+$", default = "CI-1"),
//	    text_param("notes", default = "line one\nline two"),
//	    int_param("jobs", default = 4),
//	    bool_param("clean", default = True),
//	    choice_param("target", ["all", "check", "dist"], default = "check"),
//	    choice_param("platforms", ["linux", "macos", "windows"], default = ["linux", "windows"], multiple = True),
//	    username_param(label = "Who"),
//	    codebase_param("", branch = "main", repository = "https://example.org/proj.git"),
//	    codebase_param("lib", label = "Library", revision = "abc123"),
//	    fixed_param("origin", "web"),
//	    fixed_param("limits", {"cpu": 2}),
//	])
func paramsScheduler() ForceScheduler {
	return ForceScheduler{Name: "params", Label: "With params", Builders: []string{"linux"}, Params: []ForceParam{
		{Kind: "string", Name: "reason", Label: "Why?", Default: "manual", Required: true},
		{Kind: "string", Name: "ticket", Label: "ticket", Default: "CI-1", Regex: regexp.MustCompile(`^[A-Z]+-[0-9]+$`)},
		{Kind: "text", Name: "notes", Label: "notes", Default: "line one\nline two"},
		{Kind: "int", Name: "jobs", Label: "jobs", Default: int64(4)},
		{Kind: "bool", Name: "clean", Label: "clean", Default: true},
		{Kind: "choice", Name: "target", Label: "target", Default: "check", Choices: []string{"all", "check", "dist"}},
		{Kind: "choice", Name: "platforms", Label: "platforms", Default: []string{"linux", "windows"}, Choices: []string{"linux", "macos", "windows"}, Multiple: true},
		{Kind: "username", Name: "username", Label: "Who", Default: ""},
		{Kind: "codebase", Name: "", Label: "", Branch: "main", Repository: "https://example.org/proj.git"},
		{Kind: "codebase", Name: "lib", Label: "Library", Revision: "abc123"},
		{Kind: "fixed", Name: "origin", Label: "origin", Default: "web"},
		{Kind: "fixed", Name: "limits", Label: "limits", Default: map[string]any{"cpu": int64(2)}},
	}}
}

// withParams is the API fixture with the "params" scheduler added.
func withParams(t *testing.T) *fixture {
	f := newFixture(t)
	f.m.mu.Lock()
	f.m.forces = append(f.m.forces, paramsScheduler())
	f.m.mu.Unlock()
	return f
}

// formOf returns the HTML of the force form of scheduler on page, with
// entities decoded.
func formOf(t *testing.T, page, scheduler string) string {
	t.Helper()
	start := strings.Index(page, `<form class="force" data-scheduler="`+scheduler+`"`)
	if start < 0 {
		t.Fatalf("no form for scheduler %s in the page", scheduler)
	}
	end := strings.Index(page[start:], "</form>")
	if end < 0 {
		t.Fatalf("the form of scheduler %s does not end", scheduler)
	}
	return html.UnescapeString(page[start : start+end])
}

func TestForceFormFields(t *testing.T) {
	f := withParams(t)
	st, _, body := f.get(t, "/builders/linux")
	if st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
	page := string(body)
	form := formOf(t, page, "params")
	// Each field shows its label and its default.
	want := []string{
		// A parameter named "reason" takes the built-in field's place.
		`<span class="name">Why? <abbr title="required">*</abbr></span> <input data-key="reason" type="text" size="40" value="manual" required>`,
		`<input data-key="ticket" type="text" size="40" value="CI-1" pattern=".*(?:^[A-Z]+-[0-9]+$).*" title="must match ^[A-Z]+-[0-9]+$">`,
		"<textarea data-key=\"notes\" rows=\"4\" cols=\"60\">\nline one\nline two</textarea>",
		`<input data-key="jobs" type="number" step="1" value="4">`,
		`<input data-key="clean" type="checkbox" checked>`,
		`<select data-key="target"><option value="all">all</option><option value="check" selected>check</option><option value="dist">dist</option></select>`,
		`<select data-key="platforms" multiple size="3"><option value="linux" selected>linux</option><option value="macos">macos</option><option value="windows" selected>windows</option></select>`,
		// The username parameter takes the place of "Your name".
		`<span class="name">Who</span> <input data-key="username" type="text" size="30" autocomplete="name" value="">`,
		`<fieldset class="codebase" data-param="">`, `<legend>Source</legend>`,
		`<span class="name">Branch</span> <input data-key="branch" type="text" size="40" value="main">`,
		`<input data-key="revision" type="text" size="40" value="">`,
		`<input data-key="repository" type="text" size="40" value="https://example.org/proj.git">`,
		`<input data-key="project" type="text" size="40" value="">`,
		`<fieldset class="codebase" data-param="lib">`, `<legend>Library</legend>`,
		`<input data-key="lib_branch" type="text" size="40" value="">`,
		`<input data-key="lib_revision" type="text" size="40" value="abc123">`,
		`<span class="name">origin</span> <output class="fixed">web</output> <span class="note">(fixed)</span>`,
		`<output class="fixed">{"cpu":2}</output>`,
		// The free-form properties stay.
		`<fieldset class="props">`,
	}
	for _, w := range want {
		if !strings.Contains(form, w) {
			t.Errorf("the form lacks\n\t%s\nform:\n%s", w, form)
		}
	}
	for _, bad := range []string{`data-key="owner"`, `placeholder="why this build"`, `data-key="origin"`, `data-key="limits"`} {
		if strings.Contains(form, bad) {
			t.Errorf("the form has %s", bad)
		}
	}
	// A scheduler without parameters keeps the built-in fields.
	plain := formOf(t, page, "force")
	for _, w := range []string{`data-key="reason"`, `data-key="owner"`, `<fieldset class="props">`} {
		if !strings.Contains(plain, w) {
			t.Errorf("the plain form lacks %s:\n%s", w, plain)
		}
	}
	// Names come out escaped.
	if strings.Contains(page, "<b>") && !strings.Contains(page, "&lt;b&gt;") {
		t.Error("unescaped HTML in the page")
	}
}

func TestHTMLPattern(t *testing.T) {
	tests := []struct{ re, want string }{
		{`^[A-Z]+-[0-9]+$`, `.*(?:^[A-Z]+-[0-9]+$).*`},
		{`abc`, `.*(?:abc).*`},
		{`(?i)abc`, ``},
		{`[[:alpha:]]+`, ``},
		{`\Aabc\z`, ``},
		{`\pL`, ``},
	}
	for _, tt := range tests {
		if got := htmlPattern(tt.re); got != tt.want {
			t.Errorf("htmlPattern(%q) = %q, want %q", tt.re, got, tt.want)
		}
	}
}

func TestForceSchedulersJSONFields(t *testing.T) {
	f := withParams(t)
	var got struct {
		ForceSchedulers []struct {
			Name      string           `json:"name"`
			AllFields []map[string]any `json:"all_fields"`
		} `json:"forceschedulers"`
	}
	f.getJSON(t, "/api/v2/forceschedulers", &got)
	var fields []map[string]any
	for _, s := range got.ForceSchedulers {
		if s.Name == "params" {
			fields = s.AllFields
		}
	}
	if len(fields) != len(paramsScheduler().Params) {
		t.Fatalf("all_fields has %d fields, want %d: %v", len(fields), len(paramsScheduler().Params), fields)
	}
	check := func(i int, key string, want any) {
		t.Helper()
		if got := fields[i][key]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("field %d (%v): %s = %v, want %v", i, fields[i]["name"], key, got, want)
		}
	}
	check(0, "type", "text")
	check(0, "required", true)
	check(1, "regex", "^[A-Z]+-[0-9]+$")
	check(2, "type", "textarea")
	check(3, "default", 4)
	check(5, "type", "list")
	check(5, "choices", []any{"all", "check", "dist"})
	check(6, "multiple", true)
	check(6, "default", []any{"linux", "windows"})
	check(8, "type", "nested")
	check(9, "codebase", "lib")
	sub, _ := fields[9]["fields"].([]any)
	if len(sub) != 4 || fmt.Sprint(sub[1].(map[string]any)["fullName"]) != "lib_revision" || fmt.Sprint(sub[1].(map[string]any)["default"]) != "abc123" {
		t.Errorf("codebase lib's fields: %v", sub)
	}
	check(11, "default", map[string]any{"cpu": 2})
}

// TestForceParamsRPC sends declared parameters through the RPC and checks
// what reaches the master.
func TestForceParamsRPC(t *testing.T) {
	f := withParams(t)
	body := `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["linux"],
		"reason":"release","owner":"me","ticket":"REL-9","jobs":"8","clean":false,"target":"dist",
		"platforms":["macos"],"username":"Ann","branch":"topic","lib_revision":"def456","color":"blue",
		"big":"x","origin":"web"}}`
	st, r := f.rpc(t, "/api/v2/forceschedulers/params", "application/json", body)
	if st != 200 || r.Error != nil {
		t.Fatalf("status %d, error %+v", st, r.Error)
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if len(f.m.forced) != 1 {
		t.Fatalf("master got %d requests", len(f.m.forced))
	}
	got := f.m.forced[0]
	want := ForceRequest{
		Scheduler: "params", Builders: []string{"linux"}, Owner: "me",
		Properties: map[string]string{"color": "blue", "big": "x"},
		Params: map[string]any{"reason": "release", "ticket": "REL-9", "jobs": "8", "clean": false, "target": "dist",
			"platforms": []any{"macos"}, "username": "Ann", "branch": "topic", "lib_revision": "def456", "origin": "web"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("master got\n\t%#v\nwant\n\t%#v", got, want)
	}
}

// TestForceParamsRPCErrors: every mistake in a declared parameter is a
// 400 that names it, and nothing is forced.
func TestForceParamsRPCErrors(t *testing.T) {
	f := withParams(t)
	tests := []struct {
		name, params string
		msg          []string // parts of the message
	}{
		{"required missing", `"reason":""`, []string{`reason ("Why?"): required`}},
		{"required blank", `"reason":"   "`, []string{`reason ("Why?"): required`}},
		{"required null", `"reason":null`, []string{`reason ("Why?"): required`}},
		{"regex", `"ticket":"rel-9"`, []string{`ticket: "rel-9" does not match "^[A-Z]+-[0-9]+$"`}},
		{"string not a string", `"ticket":7`, []string{`ticket: want a string, got 7`}},
		{"int not an int", `"jobs":"four"`, []string{`jobs: want an integer, got "four"`}},
		{"int fraction", `"jobs":2.5`, []string{`jobs: want an integer, got 2.5`}},
		{"int too big", `"jobs":"99999999999999999999"`, []string{`jobs: want an integer`}},
		{"bool", `"clean":"maybe"`, []string{`clean: want true or false, got "maybe"`}},
		{"choice", `"target":"install"`, []string{`target: "install" is not one of ["all", "check", "dist"]`}},
		{"choice a list", `"target":["all"]`, []string{`target: want one of`}},
		{"multiple choice", `"platforms":["linux","bsd"]`, []string{`platforms: "bsd" is not one of ["linux", "macos", "windows"]`}},
		{"multiple choice twice", `"platforms":["linux","linux"]`, []string{`platforms: "linux" is chosen twice`}},
		{"multiple choice not strings", `"platforms":[1]`, []string{`platforms: want a list of choices`}},
		{"codebase field not a string", `"lib_branch":["x"]`, []string{`lib_branch: want a string, got ["x"]`}},
		{"fixed changed", `"origin":"cli"`, []string{`origin: fixed to "web"; leave it out`}},
		{"fixed object changed", `"limits":{"cpu":3}`, []string{`limits: fixed to {"cpu":2}`}},
		{"two at once", `"jobs":"x","clean":"x"`, []string{`jobs: want an integer`, `clean: want true or false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.m.mu.Lock()
			f.m.forced = nil
			f.m.mu.Unlock()
			body := `{"jsonrpc":"2.0","method":"force","id":1,"params":{"reason":"ok",` + tt.params + `}}`
			// encoding/json keeps the last of two members with one name,
			// so a test's own "reason" wins.
			st, r := f.rpc(t, "/api/v2/forceschedulers/params", "application/json", body)
			if st != 400 || r.Error == nil || r.Error.Code != rpcInvalidParams {
				t.Fatalf("status %d, error %+v; want 400 invalid params", st, r.Error)
			}
			for _, m := range tt.msg {
				if !strings.Contains(r.Error.Message, m) {
					t.Errorf("message %q lacks %q", r.Error.Message, m)
				}
			}
			if !strings.HasPrefix(r.Error.Message, `force scheduler "params": `) {
				t.Errorf("message %q does not name the scheduler", r.Error.Message)
			}
			f.m.mu.Lock()
			defer f.m.mu.Unlock()
			if len(f.m.forced) != 0 {
				t.Errorf("the master was asked to force %+v", f.m.forced)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	fs := paramsScheduler()
	fs.Params[0].Required = false // to see its default
	defaults := map[string]any{
		"reason": "manual", "ticket": "CI-1", "notes": "line one\nline two", "jobs": int64(4), "clean": true,
		"target": "check", "platforms": []string{"linux", "windows"}, "username": "",
		"origin": "web", "limits": map[string]any{"cpu": int64(2)},
	}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range defaults {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	defaultStamps := []store.SourceStamp{
		{Codebase: "", Branch: "main", Repository: "https://example.org/proj.git"},
		{Codebase: "lib", Revision: "abc123"},
	}
	tests := []struct {
		name   string
		r      ForceRequest
		want   ForcedBuild
		errMsg string
	}{
		{"defaults", ForceRequest{},
			ForcedBuild{Reason: "manual", Properties: defaults, SourceStamps: defaultStamps}, ""},
		{"typed values", ForceRequest{Params: map[string]any{
			"jobs": json.Number("12"), "clean": "off", "platforms": "macos", "target": "all", "notes": "  kept  ",
		}},
			ForcedBuild{Reason: "manual", Properties: with("jobs", int64(12), "clean", false, "platforms", []string{"macos"}, "target", "all", "notes", "  kept  "), SourceStamps: defaultStamps}, ""},
		{"go values", ForceRequest{Params: map[string]any{"jobs": 3, "clean": false, "platforms": []string{}}},
			ForcedBuild{Reason: "manual", Properties: with("jobs", int64(3), "clean", false, "platforms", []string{}), SourceStamps: defaultStamps}, ""},
		{"built-in fields fill reason and username", ForceRequest{Reason: "from the CLI", Owner: "bob"},
			ForcedBuild{Reason: "from the CLI", Owner: "bob", Properties: with("reason", "from the CLI", "username", "bob"), SourceStamps: defaultStamps}, ""},
		{"the username parameter wins over owner", ForceRequest{Owner: "bob", Params: map[string]any{"username": "Ann"}},
			ForcedBuild{Reason: "manual", Owner: "Ann", Properties: with("username", "Ann"), SourceStamps: defaultStamps}, ""},
		{"codebases", ForceRequest{Params: map[string]any{"branch": "topic", "revision": "r1", "project": "p", "lib_branch": "v2", "lib_repository": "https://example.org/lib.git", "lib_revision": " "}},
			ForcedBuild{Reason: "manual", Properties: defaults, SourceStamps: []store.SourceStamp{
				{Codebase: "", Branch: "topic", Revision: "r1", Repository: "https://example.org/proj.git", Project: "p"},
				{Codebase: "lib", Branch: "v2", Revision: "abc123", Repository: "https://example.org/lib.git"},
			}}, ""},
		{"fixed sent unchanged", ForceRequest{Params: map[string]any{"origin": "web", "limits": map[string]any{"cpu": json.Number("2")}}},
			ForcedBuild{Reason: "manual", Properties: defaults, SourceStamps: defaultStamps}, ""},
		{"free properties", ForceRequest{Properties: map[string]string{"color": "blue"}},
			ForcedBuild{Reason: "manual", Properties: with("color", "blue"), SourceStamps: defaultStamps}, ""},
		{"free property named like a parameter", ForceRequest{Properties: map[string]string{"jobs": "3"}},
			ForcedBuild{}, `jobs: a declared parameter of force scheduler "params", not a free property`},
		{"bad free property name", ForceRequest{Properties: map[string]string{"a b": "3"}},
			ForcedBuild{}, `a b: not a valid property name`},
		{"unknown key", ForceRequest{Params: map[string]any{"lib_project2": "x"}},
			ForcedBuild{}, `lib_project2: not a parameter of force scheduler "params" (it has reason, ticket, notes, jobs, clean, target, platforms, username, branch, revision, repository, project, lib_branch, lib_revision, lib_repository, lib_project, origin, limits)`},
		{"multiple choice emptied", ForceRequest{Params: map[string]any{"platforms": []any{}}},
			ForcedBuild{Reason: "manual", Properties: with("platforms", []string{}), SourceStamps: defaultStamps}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fs.Resolve(tt.r)
			if tt.errMsg != "" {
				var pe *ForceParamError
				if err == nil || !strings.Contains(err.Error(), tt.errMsg) || !errors.As(err, &pe) || pe.HTTPStatus() != 400 {
					t.Fatalf("err %v, want a ForceParamError with %q", err, tt.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n\t%#v\nwant\n\t%#v", got, tt.want)
			}
		})
	}
}

func TestResolveRequiredMultiple(t *testing.T) {
	fs := ForceScheduler{Name: "f", Params: []ForceParam{
		{Kind: "choice", Name: "p", Choices: []string{"a", "b"}, Multiple: true, Required: true},
		{Kind: "bool", Name: "b", Required: true},
		{Kind: "int", Name: "i", Required: true},
	}}
	_, err := fs.Resolve(ForceRequest{Params: map[string]any{"p": []any{}}})
	want := `p: required: choose at least one of ["a", "b"]; b: required, and no value was given; i: required, and no value was given`
	if err == nil || err.Error() != want {
		t.Errorf("err %v, want %s", err, want)
	}
	got, err := fs.Resolve(ForceRequest{Params: map[string]any{"p": []any{"b", "a"}, "b": false, "i": "-3"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"p": []string{"b", "a"}, "b": false, "i": int64(-3)}; !reflect.DeepEqual(got.Properties, want) || got.SourceStamps != nil {
		t.Errorf("got %#v", got)
	}
}
