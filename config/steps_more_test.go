package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestStepsMoreParse checks what the step kinds of steps_more.go keep of
// their arguments (the golden dump shows only their common options).
func TestStepsMoreParse(t *testing.T) {
	cfg, err := LoadWith("testdata/valid/steps_more.star", Options{Library: testLibrary})
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]*Step{}
	for _, s := range cfg.Builders[0].Steps {
		steps[s.Name] = s
	}
	c := steps["compile"].Action.(*CompileAction)
	if c.Command.Script != "make -j4" || c.MaxWarnings != 10 || c.WarningPattern != `^.*: warning: .*` ||
		len(c.Suppress) != 1 || !c.WarningRE.MatchString("a.c:1: warning: x") {
		t.Errorf("compile: %+v", c)
	}
	if s := steps["compile"]; !s.FlunkOnWarnings || !s.WarnOnWarnings {
		t.Errorf("compile: flunk_on_warnings %v warn_on_warnings %v", s.FlunkOnWarnings, s.WarnOnWarnings)
	}
	d := steps["compile-defaults"]
	if a := d.Action.(*CompileAction); a.MaxWarnings != -1 || a.WarningPattern != DefaultWarningPattern ||
		!reflect.DeepEqual(a.Command.Argv, []string{"make", "all"}) || d.WarnOnWarnings || d.FlunkOnWarnings {
		t.Errorf("compile defaults: %+v %+v", d, a)
	}
	if !steps["test"].WarnOnWarnings {
		t.Error("warn_on_warnings does not default to True")
	}
	if a := steps["gotest"].Action.(*TestAction); !reflect.DeepEqual(a.Command.Argv, []string{"go", "test", "./..."}) {
		t.Errorf("test: %+v", a)
	}
	seq := steps["shell_sequence"].Action.(*ShellSequenceAction)
	if len(seq.Commands) != 3 || seq.Commands[0].Script != "./configure" || seq.Commands[1].Argv[1] != "-j2" || seq.Commands[2].ScriptR == nil {
		t.Errorf("shell_sequence: %+v", seq)
	}
	if a := steps["set_property"].Action.(*SetPropertiesAction); !reflect.DeepEqual(a.Properties, map[string]any{"color": "blue"}) || a.Kind() != "set_property" {
		t.Errorf("set_property: %+v", a)
	}
	if a := steps["answer"].Action.(*SetPropertiesAction); a.PropertiesR["answer"] == nil {
		t.Errorf("set_property with prop(): %+v", a)
	}
	sp := steps["set_properties"].Action.(*SetPropertiesAction)
	if !reflect.DeepEqual(sp.Properties, map[string]any{"a": int64(1), "b": []any{true, nil, 1.5}}) || sp.PropertiesR["c"] == nil {
		t.Errorf("set_properties: %+v", sp)
	}
	if a := steps["set_property_from_command"].Action.(*SetPropertyFromCommandAction); a.Property != "got_revision" || a.Strip || a.ExtractFn != nil {
		t.Errorf("set_property_from_command: %+v", a)
	}
	if a := steps["set_property_from_command_1"].Action.(*SetPropertyFromCommandAction); a.ExtractFn == nil || !a.Strip || a.Property != "" {
		t.Errorf("set_property_from_command extract_fn: %+v", a)
	}
	if a := steps["download_string"].Action.(*DownloadStringAction); a.S != "hello\n" || a.WorkerDest != "greeting.txt" || a.Mode != 0o600 {
		t.Errorf("download_string: %+v", a)
	}
	if a := steps["upload_dir"].Action.(*UploadDirAction); a.Compress != "gz" || a.WorkerSrc != "docs/html" || a.MasterDest != "public/docs" {
		t.Errorf("upload_dir: %+v", a)
	}
	if a := steps["upload_many"].Action.(*UploadManyAction); a.Glob != "dist/*.whl" || a.MasterDestDirR == nil {
		t.Errorf("upload_many: %+v", a)
	}
	h := steps["http_request"].Action.(*HTTPRequestAction)
	if h.Method != "POST" || h.ExpectStatus != 204 || !h.HasBody || h.Body != "{}" || h.HeadersR["X-Token"] == nil {
		t.Errorf("http_request: %+v", h)
	}
	if h := steps["http_request_1"].Action.(*HTTPRequestAction); h.Method != "GET" || h.HasBody || h.URLR == nil {
		t.Errorf("http_request defaults: %+v", h)
	}
	for name, kind := range map[string]string{"answer": "set_property", "gotest": "test", "compile-defaults": "compile",
		"set_property_from_command_1": "set_property_from_command", "master_shell": "master_shell", "file_exists": "file_exists"} {
		if got := steps[name].Action.Kind(); got != kind {
			t.Errorf("step %s: kind %s, want %s", name, got, kind)
		}
	}
}

func TestRenderAction(t *testing.T) {
	cfg, err := LoadWith("testdata/valid/steps_more.star", Options{Library: testLibrary})
	if err != nil {
		t.Fatal(err)
	}
	env, used := testEnv()
	env.Properties["version"] = "1.2"
	env.Properties["buildnumber"] = int64(7)
	env.Properties["buildername"] = "b"
	got := map[string]StepAction{}
	for _, s := range cfg.Builders[0].Steps {
		a, err := RenderAction(s.Action, env)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		got[s.Name] = a
	}
	if a := got["shell_sequence"].(*ShellSequenceAction); a.Commands[2].Script != "make install PREFIX=/usr" || a.Commands[2].ScriptR != nil {
		t.Errorf("shell_sequence: %+v", a.Commands[2])
	}
	if a := got["answer"].(*SetPropertiesAction); !reflect.DeepEqual(a.Properties, map[string]any{"answer": "42"}) {
		t.Errorf("answer: %+v", a)
	}
	if a := got["set_properties"].(*SetPropertiesAction); a.Properties["c"] != "7" || a.Properties["a"] != int64(1) {
		t.Errorf("set_properties: %+v", a.Properties)
	}
	if a := got["cpdir"].(*CpdirAction); a.Dest != "out-7" || a.Src != "build/out" {
		t.Errorf("cpdir: %+v", a)
	}
	if a := got["download_string_1"].(*DownloadStringAction); a.S != "v=1.2" || a.Mode != -1 {
		t.Errorf("download_string: %+v", a)
	}
	if a := got["upload_many"].(*UploadManyAction); a.MasterDestDir != "wheels/7" {
		t.Errorf("upload_many: %+v", a)
	}
	if a := got["http_request"].(*HTTPRequestAction); a.Headers["X-Token"] != "s3cr3t" || a.HeadersR != nil {
		t.Errorf("http_request: %+v", a)
	}
	if a := got["http_request_1"].(*HTTPRequestAction); a.URL != "http://127.0.0.1/b" {
		t.Errorf("http_request url: %q", a.URL)
	}
	if used["tok"] != "s3cr3t" {
		t.Errorf("used secrets: %v", used)
	}
	// The configured actions are untouched.
	if cfg.Builders[0].Steps[len(cfg.Builders[0].Steps)-1].Action.(*HTTPRequestAction).URLR == nil {
		t.Error("RenderAction modified the configuration")
	}

	// Errors name the argument.
	bad := loadSrc(t, `worker("w", "pw")
builder("b", ["w"], [shell_sequence(["true", lambda b: fail("boom")]), cpdir("a", secret("nope"))])
`)
	if _, err := RenderAction(bad.Builders[0].Steps[0].Action, env); err == nil || !strings.Contains(err.Error(), "commands[1]: command: ") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("shell_sequence error: %v", err)
	}
	if _, err := RenderAction(bad.Builders[0].Steps[1].Action, env); err == nil || !strings.HasPrefix(err.Error(), "dest: secret nope not found") {
		t.Errorf("cpdir error: %v", err)
	}
}

func TestExtractProperties(t *testing.T) {
	cfg := loadSrc(t, `worker("w", "pw")
def ok(rc, out, err):
    print("extracting")
    return {"rc": rc, "out": out, "err": err, "lines": out.split("\n")}
def notdict(rc, out, err):
    return [rc]
def boom(rc, out, err):
    fail("no luck: " + err)
def forever(rc, out, err):
    n = 0
    for i in range(100000000):
        n += i
    return {}
builder("b", ["w"], [
    set_property_from_command("x", extract_fn=ok),
    set_property_from_command("x", extract_fn=notdict),
    set_property_from_command("x", extract_fn=boom),
    set_property_from_command("x", extract_fn=forever),
])
`)
	env, _ := testEnv()
	var printed []string
	env.Print = func(msg string) { printed = append(printed, msg) }
	action := func(i int) *SetPropertyFromCommandAction {
		return cfg.Builders[0].Steps[i].Action.(*SetPropertyFromCommandAction)
	}
	got, err := action(0).ExtractProperties(env, 3, "a\nb", "e")
	want := map[string]any{"rc": int64(3), "out": "a\nb", "err": "e", "lines": []any{"a", "b"}}
	if err != nil || !reflect.DeepEqual(got, want) || len(printed) != 1 {
		t.Errorf("ok: %v, %v, printed %q", got, err, printed)
	}
	if _, err := action(1).ExtractProperties(env, 0, "", ""); err == nil || !strings.Contains(err.Error(), "returned list; want a dict") {
		t.Errorf("notdict: %v", err)
	}
	_, err = action(2).ExtractProperties(env, 0, "", "E")
	if err == nil || !strings.Contains(err.Error(), "no luck: E") || !strings.Contains(Backtrace(err), "in boom") {
		t.Errorf("boom: %v", err)
	}
	env.MaxSteps = 10000
	if _, err := action(3).ExtractProperties(env, 0, "", ""); err == nil || !strings.Contains(err.Error(), "too many steps") {
		t.Errorf("forever: %v", err)
	}
}

func TestSetPropertyRebuildsBuildValue(t *testing.T) {
	cfg := loadSrc(t, `worker("w", "pw")
builder("b", ["w"], [shell(lambda b: "echo " + b.getProperty("late", "unset"))])
`)
	env, _ := testEnv()
	r, err := cfg.Builders[0].Steps[0].Render(env)
	if err != nil || r.Action.(*ShellAction).Script != "echo unset" {
		t.Fatalf("before: %v %+v", err, r)
	}
	env.SetProperty("late", "now")
	r, err = cfg.Builders[0].Steps[0].Render(env)
	if err != nil || r.Action.(*ShellAction).Script != "echo now" {
		t.Fatalf("after: %v %+v", err, r.Action)
	}
}
