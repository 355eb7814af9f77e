package job

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// testFarm has three platforms; farm "other" one.
func testConfig() *config.Config {
	plat := func(farm, os, rel, arch string) config.FarmPlatform {
		name := os + "-" + rel + "-" + arch
		return config.FarmPlatform{Name: name, OS: os, Release: rel, Arch: arch, Builder: farm + "-" + name, WorkerNames: []string{"w-" + name}}
	}
	return &config.Config{Farms: []*config.Farm{{
		Name:             "pkgs",
		Platforms:        []config.FarmPlatform{plat("pkgs", "debian", "12", "amd64"), plat("pkgs", "debian", "12", "i386"), plat("pkgs", "debian", "13", "amd64")},
		Incoming:         "incoming",
		IncomingInterval: 5 * time.Second,
		OnFailure:        "stop",
	}}}
}

func twoFarms() *config.Config {
	cfg := testConfig()
	cfg.Farms = append(cfg.Farms, &config.Farm{Name: "other", OnFailure: "retry",
		Platforms: []config.FarmPlatform{{Name: "alpine-3-arm64", Builder: "other-alpine-3-arm64"}}})
	return cfg
}

// writeJob writes files (path → content) under dir.
func writeJob(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const helloJSON = `{"name": "hello", "submitter": "alice", "platforms": "all", "exclude": ["*-i386"],
 "packages": [{"name": "hello", "files": ["hello_1.0.dsc", "hello_1.0.tar.xz"]}, "libfoo"],
 "options": {"jobs": 4}}`

var helloFiles = map[string]string{
	"job.json":         helloJSON,
	"hello_1.0.dsc":    "dsc",
	"hello_1.0.tar.xz": "xz",
	"libfoo/a.dsc":     "a",
	"libfoo/sub/b.txt": "b",
}

func TestCheckNormalizes(t *testing.T) {
	dir := t.TempDir()
	writeJob(t, dir, helloFiles)
	spec, farm, err := Check(dir, "dirname", testConfig().Farms)
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Farm: "pkgs", Name: "hello", Submitter: "alice",
		Platforms: []string{"debian-12-amd64", "debian-13-amd64"},
		Exclude:   []string{"*-i386"},
		Packages: []Package{
			{Name: "hello", Files: []string{"hello_1.0.dsc", "hello_1.0.tar.xz"}},
			{Name: "libfoo", Files: []string{"libfoo/a.dsc", "libfoo/sub/b.txt"}},
		},
		OnFailure: "stop",
		Options:   map[string]any{"jobs": 4.0},
	}
	if farm.Name != "pkgs" || !reflect.DeepEqual(spec, want) {
		t.Errorf("got %+v (farm %s)\nwant %+v", spec, farm.Name, want)
	}
}

func TestCheckDefaults(t *testing.T) {
	dir := t.TempDir()
	writeJob(t, dir, map[string]string{"job.json": `{"farm": "other", "packages": ["p"]}`, "p/x": "x"})
	spec, _, err := Check(dir, "", twoFarms().Farms)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "p" || spec.OnFailure != "retry" || !slices.Equal(spec.Platforms, []string{"alpine-3-arm64"}) {
		t.Errorf("got %+v", spec)
	}
	spec, _, err = Check(dir, "from-dir", twoFarms().Farms)
	if err != nil || spec.Name != "from-dir" {
		t.Errorf("name %q, err %v; want the directory's name", spec.Name, err)
	}
}

// TestCheckProblems checks that each mistake is reported with the field
// at fault, and that every problem is reported, not only the first.
func TestCheckProblems(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		cfg   *config.Config
		want  []string
	}{
		{"no job.json", map[string]string{"x": ""}, nil,
			[]string{"job.json: missing: the job directory must hold job.json at its top"}},
		{"bad JSON", map[string]string{"job.json": `{"packages": [`}, nil,
			[]string{"job.json: invalid JSON at byte 14: unexpected end of JSON input"}},
		{"not an object", map[string]string{"job.json": `[1]`}, nil,
			[]string{"job.json: want a JSON object, got array"}},
		{"unknown fields", map[string]string{"job.json": `{"packges": ["p"], "platfroms": "all", "packages": ["p"]}`, "p/x": ""}, nil,
			[]string{`job.json: packges: unknown field (did you mean "packages"?)`, `job.json: platfroms: unknown field (did you mean "platforms"?)`}},
		{"missing file and path rules", map[string]string{"job.json": `{"packages": [{"name": "p", "files": ["x.dsc", "../etc/passwd", "/etc/passwd", "a//b", "d"]}], "name": "j"}`, "d/f": ""}, nil,
			[]string{
				`job.json: packages[0].files[0]: "x.dsc" is not in the job directory`,
				`job.json: packages[0].files[1]: "../etc/passwd" contains ".."; want a path inside the job directory`,
				`job.json: packages[0].files[2]: "/etc/passwd" is absolute or not a slash-separated path; want a path relative to the job directory`,
				`job.json: packages[0].files[3]: "a//b" is not a clean path; write it as "a/b"`,
				`job.json: packages[0].files[4]: "d" is not a regular file`,
			}},
		{"empty packages", map[string]string{"job.json": `{"name": "j", "packages": []}`}, nil,
			[]string{"job.json: packages: empty list; want at least one package"}},
		{"package problems", map[string]string{"job.json": `{"name": "j", "packages": ["nodir", {"name": "a", "files": ["x"], "version": 1}, {"files": ["x"]}, "e", "x"]}`, "x": "", "e/.keep/": ""}, nil,
			[]string{
				`job.json: packages[0]: "nodir" is not a subdirectory of the job directory`,
				`job.json: packages[1]: unknown field "version" (a package has only "name" and "files")`,
				`job.json: packages[2].name: missing or empty`,
				`job.json: packages[3]: subdirectory "e" holds no files`,
				`job.json: packages[4]: "x" is not a subdirectory of the job directory`,
			}},
		{"unknown platform and farm choice", map[string]string{"job.json": `{"name": "j", "platforms": ["debian-12-amd64", "debian-21-amd64"], "packages": ["p"]}`, "p/x": ""}, nil,
			[]string{`job.json: platforms[1]: unknown platform "debian-21-amd64" (did you mean "debian-12-amd64"?); farm "pkgs" has "debian-12-amd64", "debian-12-i386", "debian-13-amd64"`}},
		{"filter leaves nothing", map[string]string{"job.json": `{"name": "j", "include": ["debian-12-*"], "exclude": ["*-amd64", "*-i386"], "packages": ["p"]}`, "p/x": ""}, nil,
			[]string{`job.json: include, exclude: no platform is left of "debian-12-amd64", "debian-12-i386", "debian-13-amd64"`}},
		{"bad values", map[string]string{"job.json": `{"name": 3, "platforms": "some", "include": ["[a-"], "on_failure": "retyr", "options": [1], "packages": ["p"]}`, "p/x": ""}, nil,
			[]string{
				"job.json: name: want a string, got number",
				`job.json: on_failure: want "stop" or "retry", got "retyr" (did you mean "retry"?)`,
				"job.json: options: want a JSON object, got array",
				`job.json: platforms: want "all" or a list of platform names, got "some"`,
				`job.json: include[0]: "[a-" is not a valid pattern (see Go's path.Match: *, ? and [a-z])`,
			}},
		{"farm needed", map[string]string{"job.json": `{"name": "j", "packages": ["p"]}`, "p/x": ""}, twoFarms(),
			[]string{`job.json: farm: missing; the master has several farms: "pkgs", "other"`}},
		{"unknown farm", map[string]string{"job.json": `{"farm": "pkg", "name": "j", "packages": ["p"]}`, "p/x": ""}, twoFarms(),
			[]string{`job.json: farm: unknown farm "pkg" (did you mean "pkgs"?); the farms are "pkgs", "other"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if strings.HasSuffix(name, "/") {
					if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeJob(t, dir, map[string]string{name: body})
			}
			cfg := tt.cfg
			if cfg == nil {
				cfg = testConfig()
			}
			_, _, err := Check(dir, "", cfg.Farms)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("got %v, want an *InvalidError", err)
			}
			if got := inv.Problems(); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCheckSymlink(t *testing.T) {
	dir := t.TempDir()
	writeJob(t, dir, map[string]string{"job.json": `{"name": "j", "packages": ["p"]}`, "p/x": ""})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "p", "passwd")); err != nil {
		t.Fatal(err)
	}
	_, _, err := Check(dir, "", testConfig().Farms)
	var inv *InvalidError
	if !errors.As(err, &inv) || !slices.Equal(inv.Problems(), []string{"p/passwd: is a symbolic link; a job holds only files and directories"}) {
		t.Errorf("got %v", err)
	}
}

// entry is one member of a test archive.
type entry struct {
	name, body string
	typ        byte
	link       string
}

func makeTar(t testing.TB, gz bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func helloTar(t testing.TB, gz bool, prefix string) []byte {
	var es []entry
	if prefix != "" {
		es = append(es, entry{name: prefix, typ: tar.TypeDir})
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range helloFiles {
			if !yield(k) {
				return
			}
		}
	}) {
		es = append(es, entry{name: prefix + name, body: helloFiles[name]})
	}
	return makeTar(t, gz, es...)
}

type env struct {
	base  string
	store *store.Store
	clock *clock.Fake
	cfg   *config.Config
	acc   *Accepter
	got   chan store.Job
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{base: t.TempDir(), cfg: testConfig(), got: make(chan store.Job, 10),
		clock: clock.NewFake(time.Date(2026, 11, 22, 6, 30, 0, 0, time.UTC))}
	var err error
	e.store, err = store.Open(filepath.Join(t.TempDir(), "master.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.acc = e.accepter()
	return e
}

func (e *env) accepter() *Accepter {
	return NewAccepter(AcceptOptions{
		Store: e.store, BaseDir: e.base, Config: func() *config.Config { return e.cfg },
		Clock: e.clock, MaxSize: 1 << 20,
		OnAccepted: func(j store.Job) { e.got <- j },
		Logger:     slog.New(slog.DiscardHandler),
	})
}

// jobsLeft returns the names under BASEDIR/jobs.
func (e *env) jobsLeft(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.base, JobsDir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

func (e *env) jobs(t *testing.T) []store.Job {
	t.Helper()
	js, err := e.store.ListJobs(context.Background(), store.JobQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// checkStored checks that j is stored with its files in place.
func (e *env) checkStored(t *testing.T, j store.Job, name, submitter string) {
	t.Helper()
	got, err := e.store.GetJob(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != name || got.Submitter != submitter || got.Farm != "pkgs" || got.State != store.JobQueued {
		t.Errorf("stored job %+v", got)
	}
	var plats []string
	for _, p := range got.Platforms {
		plats = append(plats, p.Platform+"@"+p.BuilderName)
	}
	if want := []string{"debian-12-amd64@pkgs-debian-12-amd64", "debian-13-amd64@pkgs-debian-13-amd64"}; !slices.Equal(plats, want) {
		t.Errorf("platforms %q, want %q", plats, want)
	}
	var spec Spec
	if err := json.Unmarshal(got.Spec, &spec); err != nil || len(spec.Packages) != 2 || spec.Packages[1].Files[1] != "libfoo/sub/b.txt" {
		t.Errorf("stored spec %s (%v)", got.Spec, err)
	}
	if !keyRE.MatchString(strings.TrimPrefix(got.Dir, "jobs/")) {
		t.Errorf("dir %q", got.Dir)
	}
	for name, body := range helloFiles {
		data, err := os.ReadFile(filepath.Join(e.base, got.Dir, "input", name))
		if err != nil || string(data) != body {
			t.Errorf("%s: %q, %v", name, data, err)
		}
	}
}

func TestSubmit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		gz     bool
		prefix string
	}{{"tar", false, ""}, {"tar.gz", true, ""}, {"enclosing directory", true, "hello-job/"}, {"dot slash", false, "./"}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			j, err := e.acc.Submit(context.Background(), bytes.NewReader(helloTar(t, tt.gz, tt.prefix)), "bob")
			if err != nil {
				t.Fatal(err)
			}
			e.checkStored(t, j, "hello", "alice") // job.json's submitter wins
			if got := <-e.got; got.ID != j.ID {
				t.Errorf("OnAccepted got job %d, want %d", got.ID, j.ID)
			}
			if left := e.jobsLeft(t); len(left) != 1 || "jobs/"+left[0] != j.Dir {
				t.Errorf("under jobs/: %q, want only %s", left, j.Dir)
			}
		})
	}
}

func TestSubmitFillsSubmitter(t *testing.T) {
	e := newEnv(t)
	tarball := makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"]}`}, entry{name: "p/x", body: "x"})
	j, err := e.acc.Submit(context.Background(), bytes.NewReader(tarball), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if j.Submitter != "bob" || j.Name != "p" {
		t.Errorf("submitter %q name %q, want bob and p", j.Submitter, j.Name)
	}
}

// TestSubmitInvalid checks that a bad job leaves nothing: no job stored, no
// directory under jobs/, and a list of problems for the submitter.
func TestSubmitInvalid(t *testing.T) {
	good := entry{name: "p/x", body: "x"}
	tests := []struct {
		name    string
		archive func(t *testing.T) []byte
		want    string // one of the problems
	}{
		{"bad JSON", func(t *testing.T) []byte {
			return makeTar(t, true, entry{name: "job.json", body: `{`}, good)
		}, "job.json: invalid JSON"},
		{"unknown field", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"], "priority": 1}`}, good)
		}, "job.json: priority: unknown field"},
		{"missing file", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": [{"name": "a", "files": ["a.dsc"]}]}`}, good)
		}, `job.json: packages[0].files[0]: "a.dsc" is not in the job directory`},
		{"dot dot in archive", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"]}`}, good, entry{name: "../evil", body: "x"})
		}, `archive: "../evil" contains ".."`},
		{"absolute path in archive", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "/etc/evil", body: "x"})
		}, `archive: "/etc/evil" is absolute`},
		{"symlink in archive", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"]}`}, good, entry{name: "p/l", typ: tar.TypeSymlink, link: "/etc/passwd"})
		}, `archive: p/l: is a link (to "/etc/passwd")`},
		{"hard link in archive", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"]}`}, good, entry{name: "p/h", typ: tar.TypeLink, link: "p/x"})
		}, `archive: p/h: is a link`},
		{"device in archive", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "null", typ: tar.TypeChar})
		}, `archive: null: is a character device`},
		{"too big", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "big", body: strings.Repeat("x", 2<<20)})
		}, "archive: larger than the master's limit of 1048576 bytes"},
		{"not a tar", func(t *testing.T) []byte { return []byte("hello, this is not a tar file at all, but some text") }, "archive: "},
		{"truncated gzip", func(t *testing.T) []byte {
			b := helloTar(t, true, "")
			return b[:len(b)/2]
		}, "archive: "},
		{"unknown platform", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"], "platforms": ["hurd-1-i386"]}`}, good)
		}, `job.json: platforms[0]: unknown platform "hurd-1-i386"`},
		{"filter matching nothing", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"], "include": ["ubuntu-*"]}`}, good)
		}, "job.json: include, exclude: no platform is left"},
		{"empty packages", func(t *testing.T) []byte {
			return makeTar(t, false, entry{name: "job.json", body: `{"name": "x", "packages": []}`})
		}, "job.json: packages: empty list"},
		{"empty archive", func(t *testing.T) []byte { return makeTar(t, false) }, "archive: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.acc.Submit(context.Background(), bytes.NewReader(tt.archive(t)), "bob")
			var p interface{ Problems() []string }
			if !errors.As(err, &p) {
				t.Fatalf("got %v, want problems", err)
			}
			if !slices.ContainsFunc(p.Problems(), func(s string) bool { return strings.HasPrefix(s, tt.want) }) {
				t.Errorf("problems %q, want one starting %q", p.Problems(), tt.want)
			}
			if js := e.jobs(t); len(js) != 0 {
				t.Errorf("stored %d jobs", len(js))
			}
			if left := e.jobsLeft(t); len(left) != 0 {
				t.Errorf("left under jobs/: %q", left)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(e.base), "evil")); err == nil {
				t.Error("the archive wrote outside the job directory")
			}
		})
	}
}

// runAccepter starts a's Run and returns a function that waits for the
// next scan to be done: Run arms its timer after every scan.
func (e *env) run(t *testing.T, a *Accepter) (next func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	added := e.clock.Added()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	<-added // the first scan is done
	return func() {
		added := e.clock.Added()
		e.clock.Advance(5 * time.Second)
		<-added
	}
}

func TestIncoming(t *testing.T) {
	e := newEnv(t)
	incoming := filepath.Join(e.base, "incoming")
	// Dropped while the master was down: taken at start.
	writeJob(t, filepath.Join(incoming, "early"), helloFiles)
	next := e.run(t, e.acc)
	j := <-e.got
	e.checkStored(t, j, "hello", "alice")
	if _, err := os.Lstat(filepath.Join(incoming, "early")); !os.IsNotExist(err) {
		t.Errorf("incoming/early is still there (%v)", err)
	}

	// Incomplete (no job.json yet), hidden, and invalid ones.
	writeJob(t, filepath.Join(incoming, "partial"), map[string]string{"p/x": "x"})
	writeJob(t, filepath.Join(incoming, ".hidden"), helloFiles)
	writeJob(t, filepath.Join(incoming, "bad"), map[string]string{"job.json": `{"packages": ["nope"]}`})
	next()
	report, err := os.ReadFile(filepath.Join(incoming, "bad.rejected"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), `job.json: packages[0]: "nope" is not a subdirectory of the job directory`) {
		t.Errorf("report:\n%s", report)
	}
	// Not retried while the report is there, and left as it is.
	if err := os.WriteFile(filepath.Join(incoming, "bad.rejected"), []byte("seen"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeJob(t, filepath.Join(incoming, "partial"), map[string]string{"job.json": `{"name": "partial", "packages": ["p"]}`})
	next()
	j = <-e.got
	if j.Name != "partial" {
		t.Errorf("got job %q, want partial", j.Name)
	}
	if data, _ := os.ReadFile(filepath.Join(incoming, "bad.rejected")); string(data) != "seen" {
		t.Errorf("bad was retried: report %q", data)
	}
	for _, name := range []string{"bad/job.json", ".hidden/job.json"} {
		if _, err := os.Lstat(filepath.Join(incoming, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := len(e.jobs(t)); n != 2 {
		t.Errorf("%d jobs stored, want 2", n)
	}
	select {
	case j := <-e.got:
		t.Errorf("unexpected job %q", j.Name)
	default:
	}
}

func TestIncomingOtherFileSystem(t *testing.T) {
	// A copy stands in for a rename across file systems: copyTree is what
	// AcceptDir falls back to on EXDEV.
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "input")
	writeJob(t, src, helloFiles)
	if err := os.Chmod(filepath.Join(src, "libfoo/a.dsc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, body := range helloFiles {
		if data, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(data) != body {
			t.Errorf("%s: %q %v", name, data, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "libfoo/a.dsc")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode not kept: %v %v", fi, err)
	}
}

// TestAdopt plays a master that stopped between moving a job in and
// storing it: the next one stores it at start, keeping what the
// submission said; one no longer valid is set aside with a report.
func TestAdopt(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	j, err := e.acc.Submit(ctx, bytes.NewReader(makeTar(t, false, entry{name: "job.json", body: `{"packages": ["p"]}`}, entry{name: "p/x", body: "x"})), "bob")
	if err != nil {
		t.Fatal(err)
	}
	<-e.got
	// Make two orphans from copies of the stored job's directory, and a
	// staging leftover.
	jobs := filepath.Join(e.base, JobsDir)
	orphan, stale, staging := "20261122T060000-0123abcd", "20261122T060001-89abcdef", ".20261122T060002-00000000"
	for _, name := range []string{orphan, stale, staging} {
		if err := copyTree(filepath.Join(e.base, j.Dir), filepath.Join(jobs, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(jobs, stale, "input", "job.json"), []byte(`{"packages": ["p"], "platforms": ["debian-14-amd64"]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	e.run(t, e.accepter())
	got := <-e.got
	if got.Dir != "jobs/"+orphan || got.Submitter != "bob" || got.Name != "p" {
		t.Errorf("adopted %+v", got)
	}
	if want := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC); !got.SubmittedAt.Equal(want) {
		t.Errorf("submitted at %v, want %v (from the key)", got.SubmittedAt, want)
	}
	if n := len(e.jobs(t)); n != 2 {
		t.Errorf("%d jobs, want 2", n)
	}
	left := e.jobsLeft(t)
	want := []string{orphan, stale + ".rejected", strings.TrimPrefix(j.Dir, "jobs/")}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("under jobs/: %q, want %q", left, want)
	}
	report, err := os.ReadFile(filepath.Join(jobs, stale+".rejected", "rejected.txt"))
	if err != nil || !strings.Contains(string(report), `unknown platform "debian-14-amd64"`) {
		t.Errorf("report %q, %v", report, err)
	}
}

// failingReader gives its data, then err: a transport failing mid-upload.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSubmitReadFailure: a failure to read the upload (a body over the HTTP
// limit, a dropped connection) reaches the caller as itself, not as a
// malformed job, and leaves nothing behind.
func TestSubmitReadFailure(t *testing.T) {
	e := newEnv(t)
	whole := helloTar(t, false, "")
	cut := errors.New("connection dropped")
	for _, at := range []int{100, 700} { // inside a header, inside a file's body
		_, err := e.acc.Submit(context.Background(), &failingReader{data: whole[:at], err: cut}, "bob")
		var inv *InvalidError
		if !errors.Is(err, cut) || errors.As(err, &inv) {
			t.Errorf("cut at %d: Submit = %v; want the read error, not problems", at, err)
		}
	}
	if js := e.jobs(t); len(js) != 0 {
		t.Errorf("jobs stored: %v", js)
	}
	if left := e.jobsLeft(t); len(left) != 0 {
		t.Errorf("left under jobs/: %q", left)
	}
}
