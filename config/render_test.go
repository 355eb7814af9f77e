package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// loadSrc loads master.star source from a temporary directory.
func loadSrc(t *testing.T, src string) *Config {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("load:\n%v", err)
	}
	return cfg
}

func testEnv() (*BuildEnv, map[string]string) {
	used := map[string]string{}
	env := &BuildEnv{
		Properties: map[string]any{
			"a": "x", "e": "", "f": false, "n": int64(0), "t": true, "l": []any{"p", int64(1)},
		},
		BuilderName: "b",
		Number:      7,
		WorkerName:  "w1",
		WorkerInfo:  map[string]any{"os_id": "debian", "numcpus": int64(4)},
		Sources: []SourceStamp{
			{Codebase: "", Branch: "main", Revision: "abc", Repository: "https://example.org/r.git", Project: "p"},
			{Codebase: "lib", Branch: "dev", Revision: "def"},
		},
		Secret: func(name string) (string, error) {
			if name == "tok" {
				return "s3cr3t", nil
			}
			return (&Config{}).Secret(name)
		},
		UsedSecret: func(name, value string) { used[name] = value },
	}
	return env, used
}

func TestInterpolate(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		{`interpolate("plain")`, "plain"},
		{`interpolate("%(prop:a)s")`, "x"},
		{`interpolate("100%% %(prop:a)s")`, "100% x"},
		{`interpolate("[%(prop:missing)s]")`, "[]"},
		{`interpolate("%(prop:t)s %(prop:f)s %(prop:n)s %(prop:l)s")`, `True False 0 ["p", 1]`},
		// :- only when missing: an empty value is a value (Buildbot's docs).
		{`interpolate("%(prop:missing:-def)s")`, "def"},
		{`interpolate("[%(prop:e:-def)s]")`, "[]"},
		{`interpolate("%(prop:a:-def)s")`, "x"},
		// :~ also when false-y.
		{`interpolate("%(prop:e:~def)s")`, "def"},
		{`interpolate("%(prop:f:~def)s")`, "def"},
		{`interpolate("%(prop:n:~def)s")`, "def"},
		{`interpolate("%(prop:a:~def)s")`, "x"},
		{`interpolate("%(prop:missing:~def)s")`, "def"},
		{`interpolate("[%(prop:a:+yes)s][%(prop:missing:+yes)s][%(prop:e:+yes)s]")`, "[yes][][yes]"},
		{`interpolate("%(prop:a:?|y|n)s %(prop:missing:?|y|n)s %(prop:e:?|y|n)s")`, "y n y"},
		{`interpolate("%(prop:a:#?|y|n)s %(prop:e:#?|y|n)s %(prop:f:#?/y/n)s %(prop:missing:#?|y|n)s")`, "y n n n"},
		{`interpolate("%(prop:a:-(x))s")`, "x"},
		{`interpolate("%(prop:missing:-(x))s")`, "(x)"},
		{`interpolate("%(src::branch)s %(src::revision)s %(src::repository)s %(src::project)s")`, "main abc https://example.org/r.git p"},
		{`interpolate("%(src:lib:branch)s %(src:lib:revision)s")`, "dev def"},
		{`interpolate("[%(src:nope:branch)s] %(src:nope:branch:-none)s")`, "[] none"},
		{`interpolate("%(worker:os_id)s/%(worker:numcpus)s/%(worker:missing:-?)s")`, "debian/4/?"},
		{`interpolate("%(kw:k)s-%(kw:n)s-%(kw:p)s", k="v", n=3, p=prop("a"))`, "v-3-x"},
		{`interpolate("%(kw:f)s", f=lambda b: b.buildername + str(b.number))`, "b7"},
		{`interpolate("%(kw:none:-d)s %(kw:absent:-d)s", none=None)`, "d d"},
		{`interpolate("%(kw:e:~d)s %(kw:z:~d)s", e="", z=0)`, "d d"},
		{`interpolate("token=%(secret:tok)s")`, "token=s3cr3t"},
		{`prop("a")`, "x"},
		{`prop("missing")`, ""},
		{`prop("missing", "dflt")`, "dflt"},
		{`prop("missing", default=3)`, "3"},
		{`secret("tok")`, "s3cr3t"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			cfg := loadSrc(t, `worker("w", "pw")
builder("b", workers=["w"], steps=[shell(`+tt.expr+`)])
`)
			env, _ := testEnv()
			s, err := cfg.Builders[0].Steps[0].Render(env)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Action.(*ShellAction).Script; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		expr, want string
		trace      bool
	}{
		{`interpolate("%(secret:nope)s")`, "command: secret nope not found in any provider", false},
		{`secret("nope")`, "command: secret nope not found in any provider", false},
		{`lambda b: fail("boom")`, "boom", true},
		{`lambda b: b.nosuch`, "has no .nosuch field", true},
		{`lambda b: {}`, "returned dict; want string", false},
		{`lambda b: [x for x in range(100000000)]`, "too many steps", true},
		{`lambda b: worker("x", "y")`, "worker() cannot be called at build time", true},
		{`lambda b: shell(3)`, "shell: command: want string or list of strings, got int", true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			cfg := loadSrc(t, `worker("w", "pw")
builder("b", workers=["w"], steps=[shell(`+tt.expr+`)])
`)
			env, _ := testEnv()
			_, err := cfg.Builders[0].Steps[0].Render(env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if bt := Backtrace(err); (bt != "") != tt.trace || (tt.trace && !strings.Contains(bt, "Traceback")) {
				t.Errorf("backtrace = %q, want one: %v", bt, tt.trace)
			}
		})
	}
}

func TestRenderStep(t *testing.T) {
	cfg := loadSrc(t, `worker("w", "pw")
def wd(build):
    print("rendering for", build.workername)
    return "w-" + build.getProperty("a") + "-" + build.getProperty("nope", "d")

def cmd(build):
    return ["make", build.properties["a"], build.worker_info["os_id"]]

builder("b", workers=["w"], steps=[
    shell(["echo", interpolate("%(prop:a)s"), "plain"], workdir=wd,
          env={"A": prop("a"), "B": "b", "T": secret("tok")}, description=interpolate("d-%(prop:a)s")),
    shell(cmd),
    upload(interpolate("%(prop:a)s.tgz"), prop("a")),
    download(prop("a"), interpolate("in/%(prop:a)s")),
    mkdir(interpolate("m%(prop:a)s")),
    rmdir(lambda b: "r" + b.getProperty("a")),
    shell("plain"),
])
`)
	env, used := testEnv()
	var printed []string
	env.Print = func(msg string) { printed = append(printed, msg) }
	var got []*Step
	for _, s := range cfg.Builders[0].Steps {
		r, err := s.Render(env)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	s0 := got[0]
	if a := s0.Action.(*ShellAction); !reflect.DeepEqual(a.Argv, []string{"echo", "x", "plain"}) || a.ArgvR != nil {
		t.Errorf("argv = %q", a.Argv)
	}
	if s0.Workdir != "w-x-d" || s0.Description != "d-x" || s0.WorkdirR != nil {
		t.Errorf("workdir %q description %q", s0.Workdir, s0.Description)
	}
	if want := map[string]string{"A": "x", "B": "b", "T": "s3cr3t"}; !reflect.DeepEqual(s0.Env, want) || s0.EnvR != nil {
		t.Errorf("env = %v, want %v", s0.Env, want)
	}
	if !reflect.DeepEqual(used, map[string]string{"tok": "s3cr3t"}) {
		t.Errorf("used secrets = %v", used)
	}
	if !reflect.DeepEqual(printed, []string{"rendering for w1"}) {
		t.Errorf("printed = %q", printed)
	}
	if a := got[1].Action.(*ShellAction); !reflect.DeepEqual(a.Argv, []string{"make", "x", "debian"}) || a.Script != "" {
		t.Errorf("function command: %+v", a)
	}
	if a := got[2].Action.(*UploadAction); a.WorkerSrc != "x.tgz" || a.MasterDest != "x" {
		t.Errorf("upload: %+v", a)
	}
	if a := got[3].Action.(*DownloadAction); a.MasterSrc != "x" || a.WorkerDest != "in/x" {
		t.Errorf("download: %+v", a)
	}
	if a := got[4].Action.(*MkdirAction); a.Dir != "mx" {
		t.Errorf("mkdir: %+v", a)
	}
	if a := got[5].Action.(*RmdirAction); a.Dir != "rx" {
		t.Errorf("rmdir: %+v", a)
	}
	if got[6] != cfg.Builders[0].Steps[6] {
		t.Error("a plain step was copied")
	}
	// The original is untouched.
	if a := cfg.Builders[0].Steps[0].Action.(*ShellAction); a.ArgvR == nil {
		t.Error("Render modified the configured step")
	}
}

func TestStepConditions(t *testing.T) {
	cfg := loadSrc(t, `worker("w", "pw")
builder("b", workers=["w"], steps=[
    shell("a", do_step_if=False, hide_step_if=True),
    shell("b", do_step_if=lambda b: b.getProperty("t"), hide_step_if=lambda b: b.number > 100),
    shell("c"),
])
`)
	env, _ := testEnv()
	steps := cfg.Builders[0].Steps
	eval := func(c *Cond) bool {
		v, err := c.Eval(env)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if eval(steps[0].DoStepIf) || !eval(steps[0].HideStepIf) || !eval(steps[1].DoStepIf) || eval(steps[1].HideStepIf) {
		t.Error("wrong condition values")
	}
	if steps[2].DoStepIf != nil || steps[2].HideStepIf != nil {
		t.Error("conditions set by default")
	}
}

func TestStepsFunc(t *testing.T) {
	cfg := loadSrc(t, `worker("w", "pw")
def plan(build):
    if build.getProperty("t"):
        return [shell("make"), shell("make test", name="shell")]
    return [shell("other")]

builder("b", workers=["w"], steps=plan, default_properties={"t": False, "x": 1})
builder("bad", workers=["w"], steps=lambda b: "x")
builder("empty", workers=["w"], steps=lambda b: [])
builder("decl", workers=["w"], steps=lambda b: [builder("y", workers=["w"], steps=[shell("a")])])
`)
	b := cfg.Builders[0]
	if b.StepsFn == nil || b.Steps != nil {
		t.Fatalf("steps=fn: StepsFn %v, Steps %v", b.StepsFn, b.Steps)
	}
	if !reflect.DeepEqual(b.DefaultProperties, map[string]any{"t": false, "x": int64(1)}) {
		t.Errorf("default_properties = %v", b.DefaultProperties)
	}
	env, _ := testEnv()
	steps, err := b.StepsFn.Plan(env)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name+"="+s.Action.(*ShellAction).Script)
	}
	if want := []string{"shell=make", "shell_1=make test"}; !reflect.DeepEqual(names, want) {
		t.Errorf("planned %q, want %q", names, want)
	}
	env.Properties = map[string]any{}
	env.value = nil
	if steps, err := b.StepsFn.Plan(env); err != nil || len(steps) != 1 {
		t.Errorf("plan without t: %v, %v", steps, err)
	}
	for i, want := range []string{"returned string; want a list of steps", "returned an empty list", "builder() cannot be called at build time"} {
		_, err := cfg.Builders[i+1].StepsFn.Plan(env)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", cfg.Builders[i+1].Name, err, want)
		}
	}
	if len(cfg.Builders) != 4 {
		t.Errorf("a build-time builder() call declared a builder")
	}
}

func TestSecretProviders(t *testing.T) {
	dir := t.TempDir()
	sdir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"one": "v1\n", "both": "from-dir\n", "two": "multi\nline\n\n", "crlf": "w\r\n"} {
		if err := os.WriteFile(filepath.Join(sdir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SFTEST_both", "from-env")
	t.Setenv("SFTEST_env", "e")
	file := filepath.Join(dir, "master.star")
	src := `secrets_env(prefix="SFTEST_")
secrets_dir("secrets")
secrets_dir("/nonexistent/never/read")
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.SecretProviders); n != 3 {
		t.Fatalf("%d providers", n)
	}
	if d := cfg.SecretProviders[1].(*SecretsDir); d.Dir != sdir {
		t.Errorf("secrets_dir path %q, want %q (relative to the config)", d.Dir, sdir)
	}
	for name, want := range map[string]string{"one": "v1", "both": "from-env", "two": "multi\nline\n", "crlf": "w", "env": "e"} {
		got, err := cfg.Secret(name)
		if err != nil || got != want {
			t.Errorf("Secret(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := cfg.Secret("missing"); err == nil || err.Error() != "secret missing not found in any provider" {
		t.Errorf("missing secret: %v", err)
	}
	if _, err := cfg.Secret("../secrets/one"); err == nil {
		t.Error("a path escaped the secrets directory")
	}
}

func TestRenderableRepr(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	src := `print(shell(interpolate("make %(kw:t)s", t=prop("target", "all"))))
print(upload(prop("a"), secret("tok")))
print(mkdir(interpolate("d")))
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var printed []string
	if _, err := LoadWith(file, Options{Print: func(_, msg string) { printed = append(printed, msg) }}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`shell(interpolate("make %(kw:t)s", t=prop("target", "all")))`,
		`upload(prop("a"), secret("tok"))`,
		`mkdir(interpolate("d"))`,
	}
	if !reflect.DeepEqual(printed, want) {
		t.Errorf("printed\n%q\nwant\n%q", printed, want)
	}
}
