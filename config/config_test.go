package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testLibrary stands in for the embedded plugins/star library.
var testLibrary = fstest.MapFS{
	"steps.star": {Data: []byte(`
load("util.star", "quote")

def make_steps(target):
    return [shell("make " + quote(target), name = "make")]
`)},
	"util.star": {Data: []byte(`
def quote(s):
    return "'" + s + "'"
`)},
}

// starFiles returns the test inputs under dir: dir/*.star and
// dir/*/master.star (a multi-file config; its other files are loaded by it).
func starFiles(t *testing.T, dir string) []string {
	t.Helper()
	top, err := filepath.Glob(filepath.Join(dir, "*.star"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := filepath.Glob(filepath.Join(dir, "*", "master.star"))
	if err != nil {
		t.Fatal(err)
	}
	files := append(top, sub...)
	if len(files) == 0 {
		t.Fatalf("no test files in %s", dir)
	}
	return files
}

// golden compares got with the golden file for a .star file, or rewrites it
// with -update.
func golden(t *testing.T, starFile, ext, got string) {
	t.Helper()
	path := strings.TrimSuffix(starFile, ".star") + ext
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: mismatch (run go test -update to accept)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestValid loads every valid config and compares a full dump of the
// result, defaults included, with its .golden file.
func TestValid(t *testing.T) {
	for _, file := range starFiles(t, "testdata/valid") {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			var printed []string
			cfg, err := LoadWith(file, Options{
				Library: testLibrary,
				Print:   func(pos, msg string) { printed = append(printed, pos+": "+msg) },
			})
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			golden(t, file, ".golden", dump(cfg, printed))
		})
	}
}

// TestErrors loads every invalid config and compares the error text with
// its .err file. Paths are relative, so messages are stable.
func TestErrors(t *testing.T) {
	for _, file := range starFiles(t, "testdata/errors") {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadWith(file, Options{Library: testLibrary})
			if err == nil {
				t.Fatalf("no error; config: %s", cfg.Summary())
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			for _, e := range errs {
				if !strings.HasPrefix(e.Error(), e.Pos.String()+": ") || e.Pos.Line == 0 {
					t.Errorf("error does not start with file:line:col: %q", e.Error())
				}
			}
			golden(t, file, ".err", err.Error()+"\n")
		})
	}
}

// TestErrorsSorted checks that problems are reported in position order
// whatever order they were found in (validation runs after builtins).
func TestErrorsSorted(t *testing.T) {
	_, err := Load("testdata/errors/many_errors.star")
	errs := err.(Errors)
	if len(errs) < 5 {
		t.Fatalf("got %d errors, want at least 5:\n%v", len(errs), err)
	}
	if !slices.IsSortedFunc(errs, func(a, b *Error) int { return a.Pos.compare(b.Pos) }) {
		t.Errorf("errors not sorted:\n%v", err)
	}
}

func TestLibraryNotAvailable(t *testing.T) {
	_, err := Load("testdata/valid/library.star")
	const want = `testdata/valid/library.star:2:1: cannot load @starforge//steps.star: the @starforge// library is not available`
	if err == nil || err.Error() != want {
		t.Errorf("got error\n%v\nwant\n%s", err, want)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("testdata/nonexistent.star")
	const want = "testdata/nonexistent.star: no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("got error %q, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Errorf("error %#v is not an Errors of one", err)
	}
}

func TestAbsolutePath(t *testing.T) {
	abs, err := filepath.Abs("testdata/valid/split/master.star")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(abs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != abs {
		t.Errorf("Path = %q, want %q", cfg.Path, abs)
	}
	dir := filepath.Dir(abs)
	wantFiles := []string{abs, filepath.Join(dir, "workers.star"), filepath.Join(dir, "lib", "steps.star")}
	if !slices.Equal(cfg.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Files, wantFiles)
	}
	// Positions name files as they were passed: absolute here.
	if got := cfg.Workers[0].Pos.File; got != filepath.Join(dir, "workers.star") {
		t.Errorf("worker Pos.File = %q, want absolute", got)
	}

	errFile, err := filepath.Abs("testdata/errors/dup_worker.star")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(errFile)
	if err == nil || !strings.HasPrefix(err.Error(), errFile+":3:7: ") {
		t.Errorf("error not positioned at the absolute path %s: %v", errFile, err)
	}
}

func TestMaxSteps(t *testing.T) {
	file := filepath.Join(t.TempDir(), "loop.star")
	src := "x = [i for i in range(1000000)]\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(file, Options{MaxSteps: 1000})
	if err == nil || !strings.Contains(err.Error(), "too many steps") {
		t.Errorf("got %v, want a too-many-steps error", err)
	}
}

func TestAccessors(t *testing.T) {
	cfg, err := Load("testdata/valid/full.star")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Summary(), "3 workers, 4 builders, 2 schedulers"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if w := cfg.Worker("mac-1"); w == nil || w.Name != "mac-1" {
		t.Errorf("Worker(mac-1) = %v", w)
	}
	if w := cfg.Worker("nope"); w != nil {
		t.Errorf("Worker(nope) = %v, want nil", w)
	}
	if b := cfg.Builder("custom-dir"); b == nil || b.WorkerBuildDir != "dirs/custom" {
		t.Errorf("Builder(custom-dir) = %v", b)
	}
	if b := cfg.Builder("nope"); b != nil {
		t.Errorf("Builder(nope) = %v, want nil", b)
	}
	if s := cfg.ForceSchedulerFor("proj-freebsd"); s == nil || s.Name != "force" {
		t.Errorf("ForceSchedulerFor(proj-freebsd) = %v", s)
	}
	if s := cfg.ForceSchedulerFor("custom-dir"); s == nil || s.Label != "Force the Mac build" {
		t.Errorf("ForceSchedulerFor(custom-dir) = %v", s)
	}
	if s := cfg.ForceSchedulerFor("weird name/ü"); s != nil {
		t.Errorf("ForceSchedulerFor(weird) = %v, want nil", s)
	}

	// A step value used by two builders is two *Steps sharing the action.
	a, b := cfg.Builder("proj-linux").Steps[0], cfg.Builder("custom-dir").Steps[0]
	if a == b || a.Action != b.Action {
		t.Errorf("shared step: got %p/%p with actions %p/%p", a, b, a.Action, b.Action)
	}

	// Lookups also work on a Config built by hand.
	hand := &Config{Workers: []*Worker{{Name: "x"}}, Builders: []*Builder{{Name: "y"}}}
	if hand.Worker("x") == nil || hand.Builder("y") == nil || hand.Worker("y") != nil {
		t.Error("lookups on a hand-built Config failed")
	}
}

func TestSummaryPlurals(t *testing.T) {
	for _, tc := range []struct {
		w, b, s int
		want    string
	}{
		{0, 0, 0, "0 workers, 0 builders, 0 schedulers"},
		{1, 1, 1, "1 worker, 1 builder, 1 scheduler"},
		{2, 3, 1, "2 workers, 3 builders, 1 scheduler"},
	} {
		c := &Config{
			Workers:    make([]*Worker, tc.w),
			Builders:   make([]*Builder, tc.b),
			Schedulers: make([]Scheduler, tc.s),
		}
		if got := c.Summary(); got != tc.want {
			t.Errorf("Summary() = %q, want %q", got, tc.want)
		}
	}
}

func TestPosString(t *testing.T) {
	for _, tc := range []struct {
		pos  Pos
		want string
	}{
		{Pos{"a.star", 3, 7}, "a.star:3:7"},
		{Pos{"a.star", 3, 0}, "a.star:3"},
		{Pos{"a.star", 0, 0}, "a.star"},
	} {
		if got := tc.pos.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.pos, got, tc.want)
		}
	}
	es := Errors{
		{Pos: Pos{"b.star", 1, 1}, Msg: "b"},
		{Pos: Pos{"a.star", 2, 1}, Msg: "a2"},
		{Pos: Pos{"a.star", 1, 5}, Msg: "a1"},
	}
	if got, want := es.Error(), "a.star:1:5: a1\na.star:2:1: a2\nb.star:1:1: b"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	if es[0].Msg != "b" {
		t.Error("Errors.Error() reordered its receiver")
	}
}

func TestDurations(t *testing.T) {
	file := filepath.Join(t.TempDir(), "d.star")
	src := `
worker("w", "pw")
builder("b", ["w"], [
    shell("a"),
    shell("b", timeout = 90),
    shell("c", timeout = 1.5),
    shell("d", timeout = "1h30m"),
    shell("e", timeout = None, max_time = "20m"),
    shell("f", max_time = None),
])
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]time.Duration{
		{20 * time.Minute, 0},
		{90 * time.Second, 0},
		{1500 * time.Millisecond, 0},
		{90 * time.Minute, 0},
		{0, 20 * time.Minute},
		{20 * time.Minute, 0},
	}
	for i, s := range cfg.Builders[0].Steps {
		if got := [2]time.Duration{s.Timeout, s.MaxTime}; got != want[i] {
			t.Errorf("step %d: timeout, max_time = %v, want %v", i, got, want[i])
		}
	}
}

func TestSafeDirName(t *testing.T) {
	for in, want := range map[string]string{
		"proj":         "proj",
		"a/b c":        "a_b_c",
		"v1.2-rc_3":    "v1.2-rc_3",
		"ünï":          "_n_",
		"..":           "__",
		".":            "_",
		"../etc":       ".._etc",
		"C:\\win\\dir": "C__win_dir",
	} {
		if got := safeDirName(in); got != want {
			t.Errorf("safeDirName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUniqueStepNames(t *testing.T) {
	var steps []*Step
	for _, n := range []string{"shell", "shell", "make", "shell", "shell_1", "make"} {
		steps = append(steps, &Step{Name: n})
	}
	uniqueStepNames(steps)
	var got []string
	for _, s := range steps {
		got = append(got, s.Name)
	}
	want := []string{"shell", "shell_1", "make", "shell_2", "shell_1_1", "make_1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNearest(t *testing.T) {
	cands := []string{"linux-1", "freebsd-1", "windows"}
	for x, want := range map[string]string{
		"linux-2":  "linux-1",
		"Linux-1":  "linux-1",
		"freebsd":  "freebsd-1",
		"macos-13": "",
		"w":        "",
	} {
		if got := nearest(x, cands); got != want {
			t.Errorf("nearest(%q) = %q, want %q", x, got, want)
		}
	}
}

// writeBigConfig writes a config with nBuilders builders of 3 steps each,
// spread over 10 workers, and returns its path.
func writeBigConfig(t testing.TB, nBuilders int) string {
	var b strings.Builder
	b.WriteString("master(title = \"big\")\n")
	for i := range 10 {
		fmt.Fprintf(&b, "worker(\"w%d\", \"pw%d\", max_builds = 2)\n", i, i)
	}
	for i := range nBuilders {
		fmt.Fprintf(&b, `builder("b%04d", workers = ["w%d", "w%d"], steps = [
    shell(["git", "pull"], name = "checkout", timeout = "5m"),
    shell("make -j4 all", env = {"CC": "gcc"}, halt_on_failure = True),
    upload("out/result.tar.gz", "results/b%04d.tar.gz"),
], tags = ["t%d"])
`, i, i%10, (i+1)%10, i, i%7)
	}
	b.WriteString("force_scheduler(\"force\", builders = [\"b0000\", \"b0001\"])\n")
	file := filepath.Join(t.TempDir(), "master.star")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func Test1000Builders(t *testing.T) {
	file := writeBigConfig(t, 1000)
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Summary(), "10 workers, 1000 builders, 1 scheduler"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	b := cfg.Builder("b0999")
	if b == nil || len(b.Steps) != 3 || b.Steps[1].Name != "shell" || b.WorkerNames[1] != "w0" {
		t.Errorf("Builder(b0999) = %+v", b)
	}
}

func BenchmarkLoad1000Builders(b *testing.B) {
	file := writeBigConfig(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(file); err != nil {
			b.Fatal(err)
		}
	}
}

// dump renders cfg, defaults and all, for golden files.
func dump(cfg *Config, printed []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("summary: %s", cfg.Summary())
	for _, line := range printed {
		p("print: %s", line)
	}
	m := cfg.Master
	p("master: title=%q url=%q http_addr=%q worker_addr=%q pos=%s", m.Title, m.URL, m.HTTPAddr, m.WorkerAddr, m.Pos)
	for _, w := range cfg.Workers {
		p("worker %q: password=%q max_builds=%d properties=%s pos=%s", w.Name, w.Password, w.MaxBuilds, jsonish(w.Properties), w.Pos)
	}
	for _, bl := range cfg.Builders {
		p("builder %q: workers=%q tags=%q description=%q workerbuilddir=%q env=%s properties=%s pos=%s",
			bl.Name, bl.WorkerNames, bl.Tags, bl.Description, bl.WorkerBuildDir, jsonish(bl.Env), jsonish(bl.Properties), bl.Pos)
		for _, s := range bl.Steps {
			p("  step %q: %s", s.Name, action(s.Action))
			p("    description=%q halt=%t flunk=%t warn=%t always_run=%t timeout=%v max_time=%v env=%s workdir=%q log_environ=%t pos=%s",
				s.Description, s.HaltOnFailure, s.FlunkOnFailure, s.WarnOnFailure, s.AlwaysRun, s.Timeout, s.MaxTime, jsonish(s.Env), s.Workdir, s.LogEnviron, s.Pos)
		}
	}
	for _, s := range cfg.Schedulers {
		fs := s.(*ForceScheduler)
		p("force_scheduler %q: builders=%q label=%q pos=%s", fs.Name, fs.Builders, fs.Label, fs.Pos)
	}
	return b.String()
}

func action(a StepAction) string {
	switch a := a.(type) {
	case *ShellAction:
		if a.Argv != nil {
			return fmt.Sprintf("shell argv=%q", a.Argv)
		}
		return fmt.Sprintf("shell script=%q", a.Script)
	case *UploadAction:
		return fmt.Sprintf("upload %q -> %q mode=%s", a.WorkerSrc, a.MasterDest, mode(a.Mode))
	case *DownloadAction:
		return fmt.Sprintf("download %q -> %q mode=%s", a.MasterSrc, a.WorkerDest, mode(a.Mode))
	case *MkdirAction:
		return fmt.Sprintf("mkdir %q", a.Dir)
	case *RmdirAction:
		return fmt.Sprintf("rmdir %q", a.Dir)
	}
	// Kinds with their own tests (steps_more_test.go) show by name.
	return a.Kind()
}

// jsonish formats a map or JSON-like value deterministically, with its Go
// types visible (1 is int64, 1.0 is float64).
func jsonish(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case map[string]string:
		if v == nil {
			return "nil"
		}
		var parts []string
		for _, k := range sortedKeys(v) {
			parts = append(parts, fmt.Sprintf("%q: %q", k, v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case map[string]any:
		if v == nil {
			return "nil"
		}
		var parts []string
		for _, k := range sortedKeys(v) {
			parts = append(parts, fmt.Sprintf("%q: %s", k, jsonish(v[k])))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		var parts []string
		for _, e := range v {
			parts = append(parts, jsonish(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case string:
		return fmt.Sprintf("%q", v)
	default:
		return fmt.Sprintf("%T(%v)", v, v)
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"name", "nmae", 1},
		{"kitten", "sitting", 3},
		{"linux-1", "linux-2", 1},
		{"ca", "abc", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func mode(m int) string {
	if m < 0 {
		return "default"
	}
	return fmt.Sprintf("%#o", m)
}

// BenchmarkLoad1000Builders200Workers is issue 3's figure: a generated
// master.star with 1,000 builders and 200 workers, using interpolation,
// locks and schedulers. Target: load and validate in ≤ 200 ms.
func BenchmarkLoad1000Builders200Workers(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("master(title = \"big\")\ncpu = worker_lock(\"cpu\", max_count = 2)\ndb = master_lock(\"db\", max_count = 4)\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "worker(\"w%03d\", \"pw%d\", max_builds = 2, properties = {\"os\": %q})\n", i, i, []string{"linux", "bsd"}[i%2])
	}
	for i := range 1000 {
		fmt.Fprintf(&sb, `builder("b%04d", workers = ["w%03d", "w%03d", "w%03d"], locks = [cpu.access("counting")], steps = [
    shell(["git", "pull"], name = "checkout", timeout = "5m"),
    shell(interpolate("make -j%%(prop:jobs:-4)s %%(kw:target)s", target = "t%d"), halt_on_failure = True, locks = [db]),
    upload("out/result.tar.gz", interpolate("results/%%(prop:buildnumber)s/b%04d.tar.gz")),
], tags = ["t%d"], priority = %d)
`, i, i%200, (i+1)%200, (i+2)%200, i, i, i%7, i%3)
		if i%10 == 9 {
			fmt.Fprintf(&sb, "single_branch_scheduler(\"s%04d\", [%s], branch = \"main\", tree_stable_timer = \"30s\")\n", i,
				strings.Join(func() []string {
					var n []string
					for j := i - 9; j <= i; j++ {
						n = append(n, fmt.Sprintf("\"b%04d\"", j))
					}
					return n
				}(), ", "))
		}
	}
	sb.WriteString("force_scheduler(\"force\", builders = [\"b0000\", \"b0001\"])\n")
	file := filepath.Join(b.TempDir(), "master.star")
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := Load(file); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(file); err != nil {
			b.Fatal(err)
		}
	}
}
