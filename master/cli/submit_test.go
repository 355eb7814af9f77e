package cli_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/cli"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// webMaster is just enough of a master for the jobs API: a title and a
// store (the embedded nil interface panics if anything else is asked).
type webMaster struct {
	webui.Master
	st *store.Store
}

func (m webMaster) Title() string       { return "Submit Test" }
func (m webMaster) Store() *store.Store { return m.st }

type problems []string

func (p problems) Error() string      { return "invalid job: " + strings.Join(p, "; ") }
func (p problems) Problems() []string { return p }

// fakeAccepter stands in for job.Accepter: it gunzips and untars the
// upload, remembers its files, and stores a job with job.json's name on
// its platforms; a job.json without a name is invalid.
type fakeAccepter struct {
	st *store.Store

	mu    sync.Mutex
	files map[string]string // of the last upload
	who   string
}

func (a *fakeAccepter) Submit(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return store.Job{}, problems{"not gzip: " + err.Error()}
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return store.Job{}, problems{"tar: " + err.Error()}
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return store.Job{}, err
		}
		files[h.Name] = string(b)
	}
	a.mu.Lock()
	a.files, a.who = files, submitter
	a.mu.Unlock()
	var spec struct {
		Name      string   `json:"name"`
		Platforms []string `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(files["job.json"]), &spec); err != nil {
		return store.Job{}, problems{"job.json: " + err.Error()}
	}
	if spec.Name == "" {
		return store.Job{}, problems{"job.json: name: missing", `job.json: packages[0].files[0]: "x.dsc" is not in the job directory`}
	}
	j := store.Job{Farm: "packages", Name: spec.Name, Submitter: submitter, Spec: []byte(files["job.json"]), Dir: "jobs/" + spec.Name}
	for _, p := range spec.Platforms {
		id, err := a.st.EnsureBuilder(ctx, store.Builder{Name: "packages-" + p})
		if err != nil {
			return store.Job{}, err
		}
		j.Platforms = append(j.Platforms, store.JobPlatform{Platform: p, BuilderID: id})
	}
	return a.st.AddJob(ctx, j)
}

// submitServer is the web UI over a real store with a fakeAccepter.
// After each GET of a job it calls next, if set, so that a test moves the
// job on exactly once per poll.
type submitServer struct {
	st   *store.Store
	acc  *fakeAccepter
	srv  *httptest.Server
	auth chan string // the Authorization header of each POST

	mu   sync.Mutex
	next func()
}

func newSubmitServer(t *testing.T) *submitServer {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &submitServer{st: st, acc: &fakeAccepter{st: st}, auth: make(chan string, 10)}
	h := webui.New(webMaster{st: st}, webui.Options{Jobs: s.acc}).Handler()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			s.auth <- r.Header.Get("Authorization")
		}
		h.ServeHTTP(w, r)
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v2/jobs/") {
			s.mu.Lock()
			next := s.next
			s.mu.Unlock()
			if next != nil {
				next()
			}
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// writeJob writes a job directory with job.json (spec) and a package
// subdirectory.
func writeJob(t *testing.T, spec string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hello-job")
	for name, body := range map[string]string{"job.json": spec, "hello/hello_1.0.dsc": "Source: hello\n", "hello/hello_1.0.tar.xz": "xz"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const submitSpec = `{"name": "hello", "platforms": ["debian-12-amd64", "debian-13-amd64"], "packages": ["hello"]}`

func TestSubmit(t *testing.T) {
	s := newSubmitServer(t)
	dir := writeJob(t, submitSpec)
	out, errOut, code := run(t, "submit", "--master", s.srv.URL, dir, "--token", "tok-0123456789abcdef")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if want := "job 1 accepted: " + s.srv.URL + "/jobs/1\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if got := <-s.auth; got != "Bearer tok-0123456789abcdef" {
		t.Errorf("Authorization %q", got)
	}
	var names []string
	for n := range s.acc.files {
		names = append(names, n)
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "hello/ hello/hello_1.0.dsc hello/hello_1.0.tar.xz job.json" {
		t.Errorf("uploaded %s", got)
	}
	if s.acc.files["job.json"] != submitSpec || s.acc.files["hello/hello_1.0.dsc"] != "Source: hello\n" {
		t.Errorf("uploaded contents %q", s.acc.files)
	}
	if s.acc.who != "anonymous" {
		t.Errorf("submitter %q", s.acc.who)
	}
}

func TestSubmitInvalid(t *testing.T) {
	s := newSubmitServer(t)
	dir := writeJob(t, `{"platforms": ["debian-12-amd64"]}`)
	out, errOut, code := run(t, "submit", "--master", s.srv.URL, dir)
	if code != cli.ExitFailed {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := "starforge submit: the master refused the job in " + dir + ":\n" +
		"job.json: name: missing\n" +
		`job.json: packages[0].files[0]: "x.dsc" is not in the job directory` + "\n"
	if errOut != want || out != "" {
		t.Errorf("stdout %q\nstderr %q\nwant   %q", out, errOut, want)
	}
	jobs, err := s.st.ListJobs(context.Background(), store.JobQuery{})
	if err != nil || len(jobs) != 0 {
		t.Errorf("jobs %v, %v; want none", jobs, err)
	}
}

func TestSubmitRefusesLocally(t *testing.T) {
	s := newSubmitServer(t)
	link := writeJob(t, submitSpec)
	if err := os.Symlink("/etc/passwd", filepath.Join(link, "hello", "passwd")); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"symlink", []string{link}, cli.ExitUsage, filepath.Join(link, "hello", "passwd") + " is a symbolic link"},
		{"no job.json", []string{empty}, cli.ExitUsage, "has no job.json"},
		{"missing dir", []string{filepath.Join(empty, "nope")}, cli.ExitUsage, "no such file or directory"},
		{"no dir", nil, cli.ExitUsage, "usage: starforge submit"},
		{"two dirs", []string{empty, empty}, cli.ExitUsage, "usage: starforge submit"},
	}
	for _, tt := range tests {
		out, errOut, code := run(t, append([]string{"submit", "--master", s.srv.URL}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d and %q", tt.name, code, out, errOut, tt.code, tt.want)
		}
	}
	if len(s.auth) != 0 {
		t.Errorf("%d uploads reached the master", len(s.auth))
	}
	_, errOut, code := run(t, "submit", "--master", closedURL(t), writeJob(t, submitSpec))
	if code != cli.ExitProblem || !strings.Contains(errOut, "cannot reach the master") {
		t.Errorf("closed port: exit %d, %q", code, errOut)
	}
}

// TestSubmitWait follows a job to its end: each poll sees one more change.
func TestSubmitWait(t *testing.T) {
	defer cli.SetSubmitPollInterval(10 * time.Millisecond)()
	for _, tt := range []struct {
		name  string
		steps []store.JobUpdate
		code  int
		want  string
	}{
		{
			name: "failed",
			steps: []store.JobUpdate{
				{State: store.JobBuilding, Platforms: []store.PlatformUpdate{{Platform: "debian-12-amd64", State: store.PlatformSucceeded}}},
				{State: store.JobFailed, Summary: "failed on debian-13-amd64: hello (build 3: failure); nothing published",
					Platforms: []store.PlatformUpdate{{Platform: "debian-13-amd64", State: store.PlatformFailed, Summary: "hello (build 3: failure)"}}},
			},
			code: cli.ExitFailed,
			want: "debian-12-amd64: queued\ndebian-13-amd64: queued\njob 1 queued\n" +
				"debian-12-amd64: succeeded\njob 1 building\n" +
				"debian-13-amd64: failed: hello (build 3: failure)\njob 1 failed: failed on debian-13-amd64: hello (build 3: failure); nothing published\n",
		},
		{
			name: "succeeded",
			steps: []store.JobUpdate{
				{State: store.JobPublishing, Platforms: []store.PlatformUpdate{{Platform: "debian-12-amd64", State: store.PlatformSucceeded}, {Platform: "debian-13-amd64", State: store.PlatformSucceeded}}},
				{State: store.JobSucceeded, Summary: "published"},
			},
			code: cli.ExitOK,
			want: "debian-12-amd64: queued\ndebian-13-amd64: queued\njob 1 queued\n" +
				"debian-12-amd64: succeeded\ndebian-13-amd64: succeeded\njob 1 publishing\njob 1 succeeded: published\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSubmitServer(t)
			steps := tt.steps
			s.next = func() {
				if len(steps) == 0 {
					return
				}
				if err := s.st.UpdateJob(context.Background(), 1, steps[0]); err != nil {
					t.Error(err)
				}
				steps = steps[1:]
			}
			out, errOut, code := run(t, "submit", "--wait", "--master", s.srv.URL, writeJob(t, submitSpec))
			want := fmt.Sprintf("job 1 accepted: %s/jobs/1\n", s.srv.URL) + tt.want
			if code != tt.code || out != want {
				t.Errorf("exit %d (want %d)\nstdout %q\nwant   %q\nstderr %q", code, tt.code, out, want, errOut)
			}
		})
	}
}

// TestSubmitAuth: with logins on, the token decides; refusals say why.
func TestSubmitAuth(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for u, tok := range map[string]string{"dev": "dev-token-0123456789", "vic": "vic-token-0123456789"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", u), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "master.star")
	src := `
master(web_auth = "users")
secrets_dir("secrets")
worker("w1", "pw")
builder("b", workers = ["w1"], steps = [shell("true")])
user("dev", roles = ["developer"], tokens = [secret("dev")])
user("vic", roles = ["viewer"], tokens = [secret("vic")])
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acc := &fakeAccepter{st: st}
	srv := httptest.NewServer(webui.New(webMaster{st: st}, webui.Options{Jobs: acc, Config: func() *config.Config { return cfg }}).Handler())
	t.Cleanup(srv.Close)
	job := writeJob(t, submitSpec)
	t.Setenv("STARFORGE_TOKEN", "")
	for _, tt := range []struct {
		name, token, want string
	}{
		{"no token", "", "needs a login: log in, or send an API token as \"Authorization: Bearer TOKEN\" (give --token, or set STARFORGE_TOKEN, to one of your API tokens)"},
		{"bad token", "not-a-token-at-all-0123", "master refused: invalid API token"},
		{"viewer", "vic-token-0123456789", `master refused: user "vic" may not submit jobs`},
	} {
		out, errOut, code := run(t, "submit", "--master", srv.URL, "--token", tt.token, job)
		if code != cli.ExitProblem || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 3 and %q", tt.name, code, out, errOut, tt.want)
		}
	}
	t.Setenv("STARFORGE_TOKEN", "dev-token-0123456789")
	out, errOut, code := run(t, "submit", "--master", srv.URL, job)
	if code != cli.ExitOK || !strings.HasPrefix(out, "job 1 accepted: ") || acc.who != "dev" {
		t.Errorf("dev: exit %d, stdout %q, stderr %q, submitter %q", code, out, errOut, acc.who)
	}
}
