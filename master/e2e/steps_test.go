package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	resWarnings = 1
	resFailure  = 2
)

// TestMoreStepsEndToEnd runs the step kinds of config/steps_more.go on a
// real master and worker: compile, test, shell_sequence, the property
// steps, file_exists, cpdir, download_string, upload_dir, upload_many,
// master_shell and http_request.
func TestMoreStepsEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var got []string // requests the HTTP server saw
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-A")+" "+string(body))
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			fmt.Fprintln(w, "all fine")
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on 127.0.0.1: %s", srv.URL)
	}

	dir := t.TempDir()
	mdir := filepath.Join(dir, "master")
	m := startMaster(t, mdir, fmt.Sprintf(`
worker("w1", password="pw1")
builder("compile", workers=["w1"], steps=[
    compile("printf 'a.c:1: warning: unused x\nb.c:2: warning: deprecated y\nok\n'; echo 'c.c:3: warning: z' >&2", suppress=["deprecated"]),
])
builder("compilemax", workers=["w1"], steps=[
    compile("echo 'x: warning: one'; echo 'x: warning: two'", max_warnings=1, name="max", flunk_on_failure=False),
    compile("echo 'x: warning: three'", name="flunk", flunk_on_warnings=True),
])
builder("test", workers=["w1"], steps=[
    test("echo 'collected 4'; echo '===== 3 passed, 1 failed in 0.12s ====='; exit 1"),
])
builder("seq", workers=["w1"], steps=[
    shell_sequence(["echo one", ["sh", "-c", "echo two; exit 3"], "echo three"]),
])
def extract(rc, out, err):
    print("extract sees", rc)
    return {"rc": rc, "out": out, "err": err}
builder("props", workers=["w1"], steps=[
    set_property("color", "blue"),
    set_properties({"n": 2, "v": interpolate("%%(prop:color)s-x")}),
    set_property_from_command("echo ' 1.2.3 '", property="version"),
    set_property_from_command("echo a; echo b >&2; exit 2", extract_fn=extract, name="extract", flunk_on_failure=False),
    shell(interpolate("echo color=%%(prop:color)s v=%%(prop:v)s version=%%(prop:version)s n=%%(prop:n)s"), name="show"),
])
builder("extractfail", workers=["w1"], steps=[
    set_property_from_command("true", extract_fn=lambda rc, out, err: fail("no " + "luck")),
])
builder("files", workers=["w1"], steps=[
    shell("mkdir -p d/sub && echo hi > d/a.txt && echo x > d/sub/b.txt && ln -sf a.txt d/l && echo w1 > 1.whl && echo w2 > 2.whl", name="prep"),
    file_exists("d/a.txt"),
    file_exists("d/missing", name="missing", flunk_on_failure=False),
    file_exists("d", name="isdir", flunk_on_failure=False),
    cpdir("build/d", "copy"),
    shell("cat ../copy/a.txt ../copy/sub/b.txt", name="catcopy"),
    download_string(interpolate("hello %%(prop:buildnumber)s\n"), "greet.txt", mode=0o600),
    shell("cat greet.txt && stat -c %%a greet.txt", name="catgreet"),
    upload_dir("d", "updir", compress="gz"),
    upload_many("*.whl", "wheels"),
    upload_many("*.none", "wheels", name="nomatch"),
])
builder("mshell", workers=["w1"], steps=[
    master_shell("echo on-master $SF_X; pwd; echo err >&2", env={"SF_X": "yes"}, workdir="mwork"),
    # The background sleep holds the output pipe: only killing the whole
    # process group ends the step before 30 s.
    master_shell(["sh", "-c", "echo started; sleep 30 & wait"], timeout=1, name="slow", flunk_on_failure=False),
])
builder("http", workers=["w1"], steps=[
    http_request("%[1]s/ok", method="POST", body="ping", headers={"X-A": "b"}),
    http_request("%[1]s/missing", name="404", flunk_on_failure=False),
    http_request("%[1]s/teapot", expect_status=418, name="teapot"),
])
force_scheduler("force", builders=["compile", "compilemax", "test", "seq", "props", "extractfail", "files", "mshell", "http"])
`, srv.URL))
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	run := func(t *testing.T, builder string, wantResult int) (build, map[string]step) {
		t.Helper()
		m.force(t, builder)
		bs := m.builds(t, builder)
		if len(bs) == 0 {
			t.Fatalf("no build of %s", builder)
		}
		steps := map[string]step{}
		for _, s := range m.steps(t, bs[0].ID) {
			steps[s.Name] = s
		}
		if resultOf(bs[0].Results) != wantResult {
			t.Errorf("build of %s: results %d, want %d; steps %+v", builder, resultOf(bs[0].Results), wantResult, steps)
		}
		return bs[0], steps
	}
	check := func(t *testing.T, s step, wantResult int, wantState string) {
		t.Helper()
		if resultOf(s.Results) != wantResult || s.StateString != wantState {
			t.Errorf("step %s: results %d state %q, want %d %q", s.Name, resultOf(s.Results), s.StateString, wantResult, wantState)
		}
	}
	logNamed := func(t *testing.T, stepID int64, name string) string {
		t.Helper()
		var r struct {
			Logs []logInfo `json:"logs"`
		}
		m.getJSON(t, fmt.Sprintf("api/v2/steps/%d/logs", stepID), &r)
		for _, l := range r.Logs {
			if l.Name == name {
				return m.getText(t, fmt.Sprintf("api/v2/logs/%d/raw", l.ID))
			}
		}
		t.Fatalf("step %d has no log %q", stepID, name)
		return ""
	}
	props := func(t *testing.T, buildID int64) map[string][]any {
		t.Helper()
		var r struct {
			Properties []map[string][]any `json:"properties"`
		}
		m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", buildID), &r)
		out := map[string][]any{}
		for _, p := range r.Properties {
			for k, v := range p {
				out[k] = v
			}
		}
		return out
	}

	t.Run("compile", func(t *testing.T) {
		_, steps := run(t, "compile", resWarnings)
		s := steps["compile"]
		check(t, s, resWarnings, "2 warnings")
		w := logNamed(t, s.ID, "warnings")
		// stdout and stderr may interleave either way.
		if !strings.Contains(w, "a.c:1: warning: unused x\n") || !strings.Contains(w, "c.c:3: warning: z\n") || strings.Count(w, "\n") != 2 {
			t.Errorf("warnings log:\n%s", w)
		}
		_, steps = run(t, "compilemax", resFailure)
		check(t, steps["max"], resFailure, "2 warnings (more than 1)")
		check(t, steps["flunk"], resWarnings, "1 warning")
	})

	t.Run("test", func(t *testing.T) {
		b, steps := run(t, "test", resFailure)
		check(t, steps["test"], resFailure, "3 passed, 1 failed (failed (exit 1))")
		p := props(t, b.ID)
		if fmt.Sprint(p["tests_passed"]) != "[3 Step test]" || fmt.Sprint(p["tests_failed"]) != "[1 Step test]" {
			t.Errorf("properties: %v", p)
		}
	})

	t.Run("shell_sequence", func(t *testing.T) {
		_, steps := run(t, "seq", resFailure)
		s := steps["shell_sequence"]
		check(t, s, resFailure, "command 2 of 3: failed (exit 3)")
		log := m.stepLog(t, s.ID)
		if !strings.Contains(log, "one\n") || !strings.Contains(log, "two\n") || strings.Contains(log, "three\n") {
			t.Errorf("log:\n%s", log)
		}
	})

	t.Run("properties", func(t *testing.T) {
		b, steps := run(t, "props", resSuccess)
		check(t, steps["set_property"], resSuccess, "set property color")
		check(t, steps["set_properties"], resSuccess, "set properties n, v")
		check(t, steps["set_property_from_command"], resSuccess, "set property version")
		check(t, steps["extract"], resFailure, "failed (exit 2)")
		if log := m.stepLog(t, steps["show"].ID); !strings.Contains(log, "color=blue v=blue-x version=1.2.3 n=2\n") {
			t.Errorf("show log:\n%s", log)
		}
		if log := m.stepLog(t, steps["extract"].ID); !strings.Contains(log, "extract sees 2") {
			t.Errorf("extract log:\n%s", log)
		}
		p := props(t, b.ID)
		for k, want := range map[string]string{
			"color":   "[blue Step set_property]",
			"n":       "[2 Step set_properties]",
			"version": "[1.2.3 Step set_property_from_command]",
			"rc":      "[2 Step extract]",
			"out":     "[a Step extract]",
			"err":     "[b Step extract]",
		} {
			if fmt.Sprint(p[k]) != want {
				t.Errorf("property %s = %v, want %s", k, p[k], want)
			}
		}

		_, steps = run(t, "extractfail", resException)
		s := steps["set_property_from_command"]
		if resultOf(s.Results) != resException || !strings.HasPrefix(s.StateString, "extract_fn error: ") {
			t.Errorf("extractfail: %d %q", resultOf(s.Results), s.StateString)
		}
		if log := m.stepLog(t, s.ID); !strings.Contains(log, "no luck") || !strings.Contains(log, "Traceback") {
			t.Errorf("extractfail log:\n%s", log)
		}
	})

	t.Run("files", func(t *testing.T) {
		_, steps := run(t, "files", resSuccess)
		check(t, steps["file_exists"], resSuccess, "file d/a.txt exists")
		check(t, steps["missing"], resFailure, "file d/missing does not exist")
		check(t, steps["isdir"], resFailure, "d is not a regular file")
		check(t, steps["cpdir"], resSuccess, "done")
		if log := m.stepLog(t, steps["catcopy"].ID); !strings.Contains(log, "hi\nx\n") {
			t.Errorf("catcopy log:\n%s", log)
		}
		if log := m.stepLog(t, steps["catgreet"].ID); !strings.Contains(log, "hello 1\n600\n") {
			t.Errorf("catgreet log:\n%s", log)
		}
		for name, want := range map[string]string{"updir/a.txt": "hi\n", "updir/sub/b.txt": "x\n", "updir/l": "hi\n", "wheels/1.whl": "w1\n", "wheels/2.whl": "w2\n"} {
			if b, err := os.ReadFile(filepath.Join(mdir, name)); err != nil || string(b) != want {
				t.Errorf("%s: %q %v", name, b, err)
			}
		}
		check(t, steps["upload_many"], resSuccess, "uploaded 2 files")
		check(t, steps["nomatch"], resSkipped, "no files matched")
		if !strings.HasPrefix(steps["upload_dir"].StateString, "uploaded directory ") {
			t.Errorf("upload_dir state %q", steps["upload_dir"].StateString)
		}
	})

	t.Run("master_shell", func(t *testing.T) {
		start := time.Now()
		_, steps := run(t, "mshell", resSuccess)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("the build took %s: the timed out command's group was not killed", d)
		}
		s := steps["master_shell"]
		check(t, s, resSuccess, "exit 0")
		log := m.stepLog(t, s.ID)
		if !strings.Contains(log, "on-master yes\n") || !strings.Contains(log, filepath.Join(mdir, "mwork")+"\n") || !strings.Contains(log, "err\n") {
			t.Errorf("master_shell log:\n%s", log)
		}
		check(t, steps["slow"], resFailure, "timed out")
		if log := m.stepLog(t, steps["slow"].ID); !strings.Contains(log, "started\n") || !strings.Contains(log, "without output") {
			t.Errorf("slow log:\n%s", log)
		}
	})

	t.Run("http_request", func(t *testing.T) {
		_, steps := run(t, "http", resSuccess)
		check(t, steps["http_request"], resSuccess, "HTTP 200 OK")
		check(t, steps["404"], resFailure, "HTTP 404 Not Found")
		check(t, steps["teapot"], resSuccess, "HTTP 418 I'm a teapot")
		if log := m.stepLog(t, steps["http_request"].ID); !strings.Contains(log, "all fine\n") {
			t.Errorf("log:\n%s", log)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 3 || got[0] != "POST /ok b ping" {
			t.Errorf("requests: %q", got)
		}
	})
}
