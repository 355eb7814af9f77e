package webui

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
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

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// fakeSubmitter stands in for job.Accepter: it reads the whole tar (or
// tar.gz) stream, takes job.json's farm, name and platforms, and stores
// the job with store.AddJob, making the platforms' builders as needed. A
// job.json without a name is invalid.
type fakeSubmitter struct {
	st *store.Store

	mu    sync.Mutex
	calls int
}

type problemsErr []string

func (p problemsErr) Error() string      { return "invalid job: " + strings.Join(p, "; ") }
func (p problemsErr) Problems() []string { return p }

func (f *fakeSubmitter) Submit(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	raw, err := io.ReadAll(r)
	if err != nil {
		return store.Job{}, fmt.Errorf("read the job: %w", err)
	}
	var tr *tar.Reader
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return store.Job{}, problemsErr{"gzip: " + err.Error()}
		}
		tr = tar.NewReader(zr)
	} else {
		tr = tar.NewReader(bytes.NewReader(raw))
	}
	var spec []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return store.Job{}, problemsErr{"tar: " + err.Error()}
		}
		if h.Name == "job.json" {
			if spec, err = io.ReadAll(tr); err != nil {
				return store.Job{}, err
			}
		}
	}
	if spec == nil {
		return store.Job{}, problemsErr{"job.json: missing"}
	}
	var s struct {
		Farm      string   `json:"farm"`
		Name      string   `json:"name"`
		Platforms []string `json:"platforms"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return store.Job{}, problemsErr{"job.json: " + err.Error()}
	}
	var probs problemsErr
	if s.Name == "" {
		probs = append(probs, "job.json: name: missing")
	}
	if len(s.Platforms) == 0 {
		probs = append(probs, "job.json: platforms: none")
	}
	if probs != nil {
		return store.Job{}, probs
	}
	if s.Farm == "" {
		s.Farm = "packages"
	}
	j := store.Job{Farm: s.Farm, Name: s.Name, Submitter: submitter, Spec: spec, Dir: "jobs/" + s.Name}
	for _, p := range s.Platforms {
		id, err := f.st.EnsureBuilder(ctx, store.Builder{Name: s.Farm + "-" + p})
		if err != nil {
			return store.Job{}, err
		}
		j.Platforms = append(j.Platforms, store.JobPlatform{Platform: p, BuilderID: id})
	}
	return f.st.AddJob(ctx, j)
}

// testJob decodes the API's jobs (unixTime has no decoder).
type testJob struct {
	JobID     int64             `json:"jobid"`
	Farm      string            `json:"farm"`
	Name      string            `json:"name"`
	Submitter string            `json:"submitter"`
	State     string            `json:"state"`
	Platforms []jobPlatformJSON `json:"platforms"`
}

// jobTar returns a tar (gzip-compressed if gz) holding job.json and the
// other files.
func jobTar(t testing.TB, gz bool, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
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

const helloSpec = `{"farm": "packages", "name": "hello", "platforms": ["debian-12-amd64", "debian-13-amd64"],
 "packages": [{"name": "hello", "files": ["hello.dsc"]}, {"name": "libfoo", "files": ["libfoo/foo.dsc"]}]}`

// jobsServer serves a fresh store with sub as the job submitter; cfg may
// be nil.
type jobsServer struct {
	st      *store.Store
	sub     *fakeSubmitter
	srv     *httptest.Server
	basedir string
}

func newJobsServer(t *testing.T, cfg *config.Config) *jobsServer {
	t.Helper()
	st := openStore(t)
	js := &jobsServer{st: st, sub: &fakeSubmitter{st: st}, basedir: t.TempDir()}
	opts := Options{Jobs: js.sub, Basedir: js.basedir}
	if cfg != nil {
		opts.Config = func() *config.Config { return cfg }
	}
	js.srv = httptest.NewServer(New(&fakeMaster{st: st}, opts).Handler())
	t.Cleanup(js.srv.Close)
	return js
}

func (js *jobsServer) post(t *testing.T, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, js.srv.URL+"/api/v2/jobs", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := js.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (js *jobsServer) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := js.srv.Client().Get(js.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (js *jobsServer) countJobs(t *testing.T) int {
	t.Helper()
	jobs, err := js.st.ListJobs(context.Background(), store.JobQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

func TestSubmitJob(t *testing.T) {
	js := newJobsServer(t, nil)
	for _, gz := range []bool{false, true} {
		body := jobTar(t, gz, map[string]string{"job.json": helloSpec, "hello.dsc": "x"})
		st, hdr, b := js.post(t, bytes.NewReader(body))
		if st != http.StatusCreated {
			t.Fatalf("gz=%v: status %d: %s", gz, st, b)
		}
		var reply struct {
			Jobs []testJob `json:"jobs"`
		}
		if err := json.Unmarshal(b, &reply); err != nil || len(reply.Jobs) != 1 {
			t.Fatalf("reply %s: %v", b, err)
		}
		j := reply.Jobs[0]
		if j.Name != "hello" || j.Farm != "packages" || j.Submitter != "anonymous" || j.State != store.JobQueued {
			t.Errorf("job %+v", j)
		}
		if got, want := hdr.Get("Location"), fmt.Sprintf("/api/v2/jobs/%d", j.JobID); got != want {
			t.Errorf("Location %q, want %q", got, want)
		}
	}
	if n := js.countJobs(t); n != 2 {
		t.Errorf("%d jobs stored, want 2", n)
	}
}

func TestSubmitInvalidJob(t *testing.T) {
	js := newJobsServer(t, nil)
	body := jobTar(t, true, map[string]string{"job.json": `{"farm": "packages"}`})
	st, _, b := js.post(t, bytes.NewReader(body))
	if st != http.StatusBadRequest {
		t.Fatalf("status %d: %s", st, b)
	}
	var reply jobProblems
	if err := json.Unmarshal(b, &reply); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := []string{"job.json: name: missing", "job.json: platforms: none"}
	if fmt.Sprint(reply.Problems) != fmt.Sprint(want) {
		t.Errorf("problems %q, want %q", reply.Problems, want)
	}
	if !strings.Contains(reply.Error, "name: missing") || !strings.Contains(reply.Error, "1 more") {
		t.Errorf("error %q", reply.Error)
	}
	if n := js.countJobs(t); n != 0 {
		t.Errorf("%d jobs stored, want none", n)
	}
}

// TestSubmitTooLarge: beyond upload_max_size the answer is 413, whether
// the client says the length up front or streams the body.
func TestSubmitTooLarge(t *testing.T) {
	cfg := &config.Config{Master: config.MasterSettings{UploadMaxSize: 4096}}
	js := newJobsServer(t, cfg)
	big := jobTar(t, false, map[string]string{"job.json": helloSpec, "hello.dsc": strings.Repeat("x", 8192)})

	st, _, b := js.post(t, bytes.NewReader(big))
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "upload_max_size 4096") {
		t.Errorf("with a length: status %d: %s", st, b)
	}
	if js.sub.calls != 0 {
		t.Errorf("the submitter was called %d times for a body known to be too large", js.sub.calls)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(func() error { _, err := pw.Write(big); return err }()) }()
	st, _, b = js.post(t, pr) // no Content-Length: chunked
	if st != http.StatusRequestEntityTooLarge {
		t.Errorf("streamed: status %d: %s", st, b)
	}
	if n := js.countJobs(t); n != 0 {
		t.Errorf("%d jobs stored, want none", n)
	}
	// Within the limit it is taken.
	small := jobTar(t, true, map[string]string{"job.json": helloSpec})
	if st, _, b := js.post(t, bytes.NewReader(small)); st != http.StatusCreated {
		t.Errorf("small job: status %d: %s", st, b)
	}
}

// TestSubmitJobAuth: submitting needs the force permission on the whole
// master; the submitter is the token's user.
func TestSubmitJobAuth(t *testing.T) {
	f := newAuthFixture(t, true)
	sub := &fakeSubmitter{st: f.st}
	srv := httptest.NewServer(New(f.cm, Options{Config: f.cfg.Load, Jobs: sub}).Handler())
	t.Cleanup(srv.Close)
	js := &jobsServer{st: f.st, sub: sub, srv: srv}
	body := jobTar(t, false, map[string]string{"job.json": helloSpec})
	for _, tt := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"nobody", nil, http.StatusUnauthorized},
		{"viewer", bearer("vic"), http.StatusForbidden},
		{"force on one builder", bearer("lin"), http.StatusForbidden},
		{"bad token", []string{"Authorization", "Bearer nope-nope-nope-nope-nope"}, http.StatusUnauthorized},
	} {
		st, _, b := js.post(t, bytes.NewReader(body), tt.hdr...)
		if st != tt.want {
			t.Errorf("%s: status %d, want %d: %s", tt.name, st, tt.want, b)
		}
	}
	if sub.calls != 0 || js.countJobs(t) != 0 {
		t.Fatalf("refused submissions reached the submitter (%d calls)", sub.calls)
	}
	st, _, b := js.post(t, bytes.NewReader(body), bearer("dev")...)
	if st != http.StatusCreated {
		t.Fatalf("dev: status %d: %s", st, b)
	}
	jobs, err := f.st.ListJobs(context.Background(), store.JobQuery{})
	if err != nil || len(jobs) != 1 || jobs[0].Submitter != "dev" {
		t.Errorf("jobs %+v, %v; want one submitted by dev", jobs, err)
	}
}

func TestSubmitWithoutSubmitter(t *testing.T) {
	st := openStore(t)
	srv := httptest.NewServer(New(&fakeMaster{st: st}, Options{}).Handler())
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Post(srv.URL+"/api/v2/jobs", "application/x-tar", bytes.NewReader(jobTar(t, false, map[string]string{"job.json": helloSpec})))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("status %d, want 501", resp.StatusCode)
	}
}

// addJob stores a job named name with helloSpec's platforms.
func (js *jobsServer) addJob(t *testing.T, name, farm string) store.Job {
	t.Helper()
	spec := strings.Replace(strings.Replace(helloSpec, `"hello"`, fmt.Sprintf("%q", name), 1), `"packages"`, fmt.Sprintf("%q", farm), 1)
	st, _, b := js.post(t, bytes.NewReader(jobTar(t, false, map[string]string{"job.json": spec})))
	if st != http.StatusCreated {
		t.Fatalf("add job %s: %d %s", name, st, b)
	}
	var reply struct{ Jobs []testJob }
	if err := json.Unmarshal(b, &reply); err != nil {
		t.Fatal(err)
	}
	j, err := js.st.GetJob(context.Background(), reply.Jobs[0].JobID)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestListJobs(t *testing.T) {
	js := newJobsServer(t, nil)
	var ids []int64
	for i, farm := range []string{"packages", "packages", "other", "packages"} {
		ids = append(ids, js.addJob(t, fmt.Sprintf("job%d", i), farm).ID)
	}
	if err := js.st.UpdateJob(context.Background(), ids[1], store.JobUpdate{State: store.JobFailed, Summary: "failed on x"}); err != nil {
		t.Fatal(err)
	}
	names := func(path string) string {
		t.Helper()
		st, b := js.get(t, path)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, st, b)
		}
		var reply struct{ Jobs []testJob }
		if err := json.Unmarshal(b, &reply); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range reply.Jobs {
			if j.Platforms != nil {
				t.Errorf("GET %s: a list item has platforms", path)
			}
			out = append(out, j.Name)
		}
		return strings.Join(out, " ")
	}
	for _, tt := range []struct{ path, want string }{
		{"/api/v2/jobs", "job3 job2 job1 job0"},
		{"/api/v2/jobs?limit=2", "job3 job2"},
		{fmt.Sprintf("/api/v2/jobs?limit=2&before=%d", ids[2]), "job1 job0"},
		{fmt.Sprintf("/api/v2/jobs?jobid__lt=%d", ids[3]), "job2 job1 job0"},
		{fmt.Sprintf("/api/v2/jobs?jobid__gt=%d", ids[1]), "job3 job2"},
		{"/api/v2/jobs?state=failed", "job1"},
		{"/api/v2/jobs?state=queued&farm=packages", "job3 job0"},
		{"/api/v2/jobs?farm=other", "job2"},
		{"/api/v2/jobs?submitter=anonymous&limit=1", "job3"},
		{"/api/v2/jobs?name__contains=1", "job1"},
	} {
		if got := names(tt.path); got != tt.want {
			t.Errorf("GET %s: %q, want %q", tt.path, got, tt.want)
		}
	}
	for _, path := range []string{"/api/v2/jobs?state=done", "/api/v2/jobs?order=jobid", "/api/v2/jobs?before=x", "/api/v2/jobs?colour=red"} {
		if st, b := js.get(t, path); st != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s, want 400", path, st, b)
		}
	}
}

// jobWithBuilds stores a job of two packages on two platforms: on
// debian-12-amd64 hello succeeded and libfoo is building; on
// debian-13-amd64 hello waits for a worker.
func jobWithBuilds(t *testing.T, js *jobsServer) (store.Job, store.Build) {
	t.Helper()
	ctx := context.Background()
	j := js.addJob(t, "hello", "packages")
	b12, b13 := j.Platforms[0].BuilderID, j.Platforms[1].BuilderID
	startBuild := func(builder int64, link store.JobLink) store.Build {
		_, reqs, err := js.st.AddBuildset(ctx, store.NewBuildset{Reason: "job", BuilderIDs: []int64{builder}, Job: &link})
		if err != nil {
			t.Fatal(err)
		}
		if err := js.st.ClaimRequest(ctx, reqs[0].ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		b, err := js.st.AddBuild(ctx, store.NewBuild{BuilderID: builder, RequestID: reqs[0].ID, StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := startBuild(b12, store.JobLink{JobID: j.ID, Platform: "debian-12-amd64", Seq: 0, Package: 0, Attempt: 1})
	if err := js.st.FinishBuild(ctx, first.ID, result.Success, "finished", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := js.st.CompleteRequest(ctx, first.RequestID, result.Success, time.Now()); err != nil {
		t.Fatal(err)
	}
	second := startBuild(b12, store.JobLink{JobID: j.ID, Platform: "debian-12-amd64", Seq: 1, Package: 1, Attempt: 1})
	if _, _, err := js.st.AddBuildset(ctx, store.NewBuildset{Reason: "job", BuilderIDs: []int64{b13},
		Job: &store.JobLink{JobID: j.ID, Platform: "debian-13-amd64", Seq: 0, Package: 0, Attempt: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := js.st.UpdateJob(ctx, j.ID, store.JobUpdate{State: store.JobBuilding,
		Platforms: []store.PlatformUpdate{{Platform: "debian-12-amd64", State: store.PlatformBuilding}}}); err != nil {
		t.Fatal(err)
	}
	j, err := js.st.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	return j, second
}

func TestGetJob(t *testing.T) {
	js := newJobsServer(t, nil)
	j, building := jobWithBuilds(t, js)
	st, b := js.get(t, fmt.Sprintf("/api/v2/jobs/%d", j.ID))
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, b)
	}
	var reply struct{ Jobs []testJob }
	if err := json.Unmarshal(b, &reply); err != nil || len(reply.Jobs) != 1 {
		t.Fatalf("%s: %v", b, err)
	}
	got := reply.Jobs[0]
	if got.State != store.JobBuilding || len(got.Platforms) != 2 {
		t.Fatalf("job %s", b)
	}
	p12, p13 := got.Platforms[0], got.Platforms[1]
	if p12.Name != "debian-12-amd64" || p12.Builder != "packages-debian-12-amd64" || p12.Status != "building libfoo (2/2)" {
		t.Errorf("debian-12: %+v", p12)
	}
	if len(p12.Builds) != 2 || p12.Builds[0].Package != "hello" || p12.Builds[1].Package != "libfoo" ||
		p12.Builds[1].BuildID == nil || *p12.Builds[1].BuildID != building.ID || *p12.Builds[1].Number != building.Number ||
		!p12.Builds[0].Complete || result.Result(p12.Builds[0].Results) != result.Success {
		t.Errorf("debian-12 builds: %s", b)
	}
	if p13.Status != "waiting for a worker to build hello (1/2)" || len(p13.Builds) != 1 || p13.Builds[0].BuildID != nil {
		t.Errorf("debian-13: %+v", p13)
	}
	if !strings.Contains(string(b), `"packages":[{"name":"hello"`) {
		t.Errorf("no spec in %s", b)
	}
	for path, want := range map[string]int{"/api/v2/jobs/999": 404, "/api/v2/jobs/x": 400, fmt.Sprintf("/api/v2/jobs/%d?limit=1", j.ID): 400} {
		if st, b := js.get(t, path); st != want {
			t.Errorf("GET %s: %d %s, want %d", path, st, b, want)
		}
	}
}

func TestPlatformStatus(t *testing.T) {
	pkgs := []string{"hello", "libfoo", "bar"}
	tests := []struct {
		p    store.JobPlatform
		want string
	}{
		{store.JobPlatform{State: store.PlatformPending}, "queued"},
		{store.JobPlatform{State: store.PlatformPending, Builds: []store.JobBuild{{Package: 0, Attempt: 1}}}, "waiting for a worker to build hello (1/3)"},
		{store.JobPlatform{State: store.PlatformBuilding, Builds: []store.JobBuild{{Package: 1, Attempt: 1, BuildID: 4}}}, "building libfoo (2/3)"},
		{store.JobPlatform{State: store.PlatformBuilding, Builds: []store.JobBuild{{Package: 1, Attempt: 2, BuildID: 4}}}, "building libfoo (2/3), second attempt"},
		{store.JobPlatform{State: store.PlatformBuilding, Builds: []store.JobBuild{{Package: 2, Attempt: 1, BuildID: 4, Complete: true, Results: result.Success}}}, "built bar (3/3): success"},
		{store.JobPlatform{State: store.PlatformBuilding, Builds: []store.JobBuild{{Package: 7, Attempt: 1, BuildID: 4}}}, "building package #8"},
		{store.JobPlatform{State: store.PlatformSucceeded}, "succeeded"},
		{store.JobPlatform{State: store.PlatformFailed, Summary: "hello (build 17: failure)"}, "failed: hello (build 17: failure)"},
		{store.JobPlatform{State: store.PlatformFailed, Summary: "failed: hello (build 17: failure)"}, "failed: hello (build 17: failure)"},
		{store.JobPlatform{State: store.PlatformFailed}, "failed"},
	}
	for _, tt := range tests {
		if got := platformStatus(tt.p, pkgs); got != tt.want {
			t.Errorf("platformStatus(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestJobPages(t *testing.T) {
	js := newJobsServer(t, nil)
	j, building := jobWithBuilds(t, js)
	other := js.addJob(t, "<b>xss</b>", "packages")
	if err := js.st.UpdateJob(context.Background(), other.ID, store.JobUpdate{State: store.JobFailed, Summary: "failed on debian-13-amd64: hello (build 17: failure); nothing published"}); err != nil {
		t.Fatal(err)
	}
	st, b := js.get(t, "/jobs")
	page := string(b)
	if st != http.StatusOK {
		t.Fatalf("/jobs: %d %s", st, b)
	}
	for _, want := range []string{
		`href="/jobs" aria-current="page">Jobs</a>`,
		fmt.Sprintf(`<a href="/jobs/%d">hello</a>`, j.ID),
		`<span class="status running">building</span>`,
		`<span class="status failure">failed</span>`,
		"&lt;b&gt;xss&lt;/b&gt;", "nothing published", "anonymous",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/jobs lacks %q", want)
		}
	}
	if strings.Contains(page, "<b>xss</b>") {
		t.Error("/jobs does not escape a job's name")
	}
	if _, b := js.get(t, "/jobs?state=failed"); strings.Contains(string(b), fmt.Sprintf(`href="/jobs/%d"`, j.ID)) {
		t.Error("/jobs?state=failed shows a building job")
	}
	if st, _ := js.get(t, "/jobs?state=nope"); st != http.StatusBadRequest {
		t.Errorf("/jobs?state=nope: %d", st)
	}

	if err := os.MkdirAll(filepath.Join(js.basedir, "jobs", "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(js.basedir, "jobs", "hello", "publish.log"), []byte("copied 2 files <ok>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, b = js.get(t, fmt.Sprintf("/jobs/%d", j.ID))
	page = string(b)
	if st != http.StatusOK {
		t.Fatalf("/jobs/%d: %d %s", j.ID, st, b)
	}
	for _, want := range []string{
		`<tr id="platform-debian-12-amd64">`, `<tr id="platform-debian-13-amd64">`,
		"building libfoo (2/2)", "waiting for a worker to build hello (1/2)",
		fmt.Sprintf(`href="/builders/%d/builds/%d"`, j.Platforms[0].BuilderID, building.Number),
		`class="badge success"`, `class="badge running"`, `class="badge pending"`,
		"copied 2 files &lt;ok&gt;", "Publish log",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/jobs/%d lacks %q", j.ID, want)
		}
	}
	if st, _ := js.get(t, "/jobs/999"); st != http.StatusNotFound {
		t.Errorf("/jobs/999: %d", st)
	}
}
