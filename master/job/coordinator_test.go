package job

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

// waitLimit only keeps a broken test from hanging; nothing is timed.
const waitLimit = 60 * time.Second

// queue is the dispatcher of the tests: it keeps the requests it is given.
type queue struct {
	mu   sync.Mutex
	reqs []store.BuildRequest
	wake chan struct{}
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

func (q *queue) Add(reqs ...store.BuildRequest) {
	q.mu.Lock()
	q.reqs = append(q.reqs, reqs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take waits for the request of builder and takes it out of the queue.
func (q *queue) take(t *testing.T, builder int64) store.BuildRequest {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		q.mu.Lock()
		for i, r := range q.reqs {
			if r.BuilderID == builder {
				q.reqs = append(q.reqs[:i], q.reqs[i+1:]...)
				q.mu.Unlock()
				return r
			}
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-deadline:
			t.Fatalf("no request came for builder %d", builder)
		}
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.reqs)
}

// farm is a store with a farm of two platforms, and a coordinator over it.
type farm struct {
	t        *testing.T
	st       *store.Store
	dbPath   string
	basedir  string
	builders map[string]int64
	cfg      *config.Config
	q        *queue
	c        *Coordinator
	finished chan store.Job
	stop     func()
}

var plats = []string{"debian-12-amd64", "debian-13-arm64"}

func newFarm(t *testing.T, pub *config.Publish) *farm {
	t.Helper()
	f := &farm{t: t, basedir: t.TempDir(), builders: map[string]int64{},
		cfg: &config.Config{Farms: []*config.Farm{{Name: "pkg", Publish: pub, OnFailure: "stop"}}}}
	f.dbPath = filepath.Join(f.basedir, "state.sqlite")
	f.open()
	for _, p := range plats {
		id, err := f.st.EnsureBuilder(context.Background(), store.Builder{Name: "pkg-" + p})
		if err != nil {
			t.Fatal(err)
		}
		f.builders[p] = id
	}
	f.startCoordinator()
	t.Cleanup(func() { f.stopCoordinator(); f.st.Close() })
	return f
}

func (f *farm) open() {
	st, err := store.Open(f.dbPath)
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
}

func (f *farm) startCoordinator() {
	f.q = newQueue()
	f.finished = make(chan store.Job, 10)
	f.c = NewCoordinator(CoordinatorOptions{Store: f.st, Basedir: f.basedir, Config: func() *config.Config { return f.cfg },
		Queue: f.q, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnFinished: func(j store.Job) { f.finished <- j }})
	f.st.OnBuildsetComplete(f.c.BuildsetComplete)
	ctx, cancel := context.WithCancel(context.Background())
	done, err := f.c.Start(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	f.stop = func() { cancel(); <-done }
}

func (f *farm) stopCoordinator() {
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
	f.st.OnBuildsetComplete(nil)
}

// submit stores a job of the given packages on every platform.
func (f *farm) submit(name, onFailure string, packages ...string) store.Job {
	f.t.Helper()
	spec := Spec{Farm: "pkg", Name: name, Submitter: "alice", Platforms: plats, OnFailure: onFailure,
		Options: map[string]any{"dist": "unstable"}}
	for _, p := range packages {
		spec.Packages = append(spec.Packages, Package{Name: p, Files: []string{p + "/" + p + ".dsc"}})
	}
	b, err := json.Marshal(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	j := store.Job{Farm: "pkg", Name: name, Submitter: "alice", Spec: b, Dir: "jobs/" + name}
	for _, p := range plats {
		j.Platforms = append(j.Platforms, store.JobPlatform{Platform: p, BuilderID: f.builders[p]})
	}
	j, err = f.st.AddJob(context.Background(), j)
	if err != nil {
		f.t.Fatal(err)
	}
	f.c.Accepted(j)
	return j
}

// build runs the next request of platform to the end with res, as the
// build runner would, and returns the build's id and the buildset's
// properties.
func (f *farm) build(platform string, res result.Result) (int64, store.Buildset) {
	f.t.Helper()
	ctx := context.Background()
	r := f.q.take(f.t, f.builders[platform])
	bs, err := f.st.GetBuildset(ctx, r.BuildsetID)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.ClaimRequest(ctx, r.ID, time.Time{}); err != nil {
		f.t.Fatal(err)
	}
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: r.BuilderID, RequestID: r.ID})
	if err != nil {
		f.t.Fatal(err)
	}
	f.c.BuildStarted(b.BuildsetID)
	if err := f.st.FinishBuild(ctx, b.ID, res, "done", time.Time{}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.st.CompleteRequest(ctx, r.ID, res, time.Time{}); err != nil {
		f.t.Fatal(err)
	}
	return b.ID, bs
}

func (f *farm) wait() store.Job {
	f.t.Helper()
	select {
	case j := <-f.finished:
		return j
	case <-time.After(waitLimit):
		f.t.Fatal("the job did not finish")
		return store.Job{}
	}
}

func (f *farm) flush() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := f.c.flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *farm) job(id int64) store.Job {
	f.t.Helper()
	j, err := f.st.GetJob(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// upload puts a file into the job's repository for platform, as
// job_upload() would.
func (f *farm) upload(j store.Job, platform, name, content string) {
	f.t.Helper()
	p := filepath.Join(f.basedir, j.Dir, "repo", platform, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// countingScript is a publish_command that appends its environment to
// count.log in the base directory, once per run.
func countingScript(t *testing.T, basedir string) *config.Publish {
	script := filepath.Join(basedir, "publish.sh")
	body := "#!/bin/sh\necho \"$STARFORGE_JOB_ID $STARFORGE_JOB_NAME $STARFORGE_PLATFORMS $EXTRA $(pwd) $STARFORGE_JOB_REPO\" >> " +
		filepath.Join(basedir, "count.log") + "\necho published to the log\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return &config.Publish{Kind: "command", Command: []string{script}, Env: map[string]string{"EXTRA": "x"}}
}

func TestAllPlatformsSucceed(t *testing.T) {
	f := newFarm(t, nil)
	f.cfg.Farms[0].Publish = countingScript(t, f.basedir)
	j := f.submit("hello", "stop", "libfoo", "hello")
	for i, pkg := range []string{"libfoo", "hello"} {
		for _, p := range plats {
			_, bs := f.build(p, result.Success)
			want := fmt.Sprintf("job %d \"hello\": package %d/2 %s on %s", j.ID, i+1, pkg, p)
			if bs.Reason != want {
				t.Errorf("reason %q, want %q", bs.Reason, want)
			}
			props := map[string]any{}
			for k, v := range bs.Properties {
				props[k] = v.Value
			}
			got, _ := json.Marshal(props)
			wantProps := fmt.Sprintf(`{"job_attempt":1,"job_dir":"jobs/hello","job_files":["%[1]s/%[1]s.dsc"],"job_id":%[2]d,`+
				`"job_name":"hello","job_options":{"dist":"unstable"},"job_package":"%[1]s","job_package_index":%[3]d,`+
				`"job_platform":"%[4]s","job_submitter":"alice"}`, pkg, j.ID, i, p)
			if string(got) != wantProps {
				t.Errorf("properties\n%s\nwant\n%s", got, wantProps)
			}
		}
		if i == 0 {
			f.flush()
			if g := f.job(j.ID); g.State != store.JobBuilding || g.Platforms[0].State != store.PlatformBuilding {
				t.Errorf("after the first package: job %s, platform %s; want building", g.State, g.Platforms[0].State)
			}
		}
	}
	fin := f.wait()
	if fin.State != store.JobSucceeded || fin.Summary != "succeeded on 2 platforms; published" {
		t.Errorf("job %s: %q", fin.State, fin.Summary)
	}
	for _, p := range fin.Platforms {
		if p.State != store.PlatformSucceeded || len(p.Builds) != 2 {
			t.Errorf("platform %+v", p)
		}
	}
	count, err := os.ReadFile(filepath.Join(f.basedir, "count.log"))
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(f.basedir, "jobs", "hello", "repo")
	want := fmt.Sprintf("%d hello debian-12-amd64 debian-13-arm64 x %s %s\n", j.ID, repo, repo)
	if string(count) != want {
		t.Errorf("publish ran:\n%s\nwant once:\n%s", count, want)
	}
	log, err := os.ReadFile(filepath.Join(f.basedir, "jobs", "hello", PublishLog))
	if err != nil || !strings.Contains(string(log), "published to the log") {
		t.Errorf("publish.log = %q, %v", log, err)
	}
	if n := f.q.len(); n != 0 {
		t.Errorf("%d requests left in the queue", n)
	}
}

func TestOnePlatformFails(t *testing.T) {
	f := newFarm(t, nil)
	f.cfg.Farms[0].Publish = countingScript(t, f.basedir)
	f.submit("hello", "stop", "libfoo", "hello")
	f.build("debian-12-amd64", result.Success)
	f.build("debian-13-arm64", result.Success)
	f.build("debian-12-amd64", result.Success)
	bid, _ := f.build("debian-13-arm64", result.Failure)
	fin := f.wait()
	want := fmt.Sprintf("failed on debian-13-arm64: hello (build %d: failure); nothing published", bid)
	if fin.State != store.JobFailed || fin.Summary != want {
		t.Errorf("job %s: %q, want %q", fin.State, fin.Summary, want)
	}
	if p := fin.Platforms[1]; p.State != store.PlatformFailed || p.Summary != fmt.Sprintf("failed: hello (build %d: failure)", bid) {
		t.Errorf("platform %s: %s %q", p.Platform, p.State, p.Summary)
	}
	if _, err := os.Stat(filepath.Join(f.basedir, "count.log")); !os.IsNotExist(err) {
		t.Errorf("published after a failure: %v", err)
	}
}

func TestBothPlatformsFailNamed(t *testing.T) {
	f := newFarm(t, nil)
	f.submit("hello", "stop", "libfoo", "hello")
	a, _ := f.build("debian-12-amd64", result.Exception)
	b, _ := f.build("debian-13-arm64", result.Failure)
	fin := f.wait()
	want := fmt.Sprintf("failed on debian-12-amd64: libfoo (build %d: exception); failed on debian-13-arm64: libfoo (build %d: failure); nothing published", a, b)
	if fin.Summary != want {
		t.Errorf("summary %q, want %q", fin.Summary, want)
	}
	if n := f.q.len(); n != 0 {
		t.Errorf("%d requests queued after the chains stopped", n)
	}
}

func TestRetry(t *testing.T) {
	f := newFarm(t, nil)
	f.submit("set", "retry", "a", "b")
	// amd64: a fails, b builds, a builds on its retry.
	f.build("debian-12-amd64", result.Failure)
	_, bs := f.build("debian-12-amd64", result.Success)
	if bs.Properties["job_package"].Value != "b" {
		t.Errorf("after a failure of a: %v, want b", bs.Properties["job_package"].Value)
	}
	_, bs = f.build("debian-12-amd64", result.Warnings)
	if bs.Properties["job_package"].Value != "a" || fmt.Sprint(bs.Properties["job_attempt"].Value) != "2" ||
		!strings.HasSuffix(bs.Reason, "(retry)") {
		t.Errorf("retry: %q %v", bs.Reason, bs.Properties)
	}
	// arm64: b fails twice.
	f.build("debian-13-arm64", result.Success)
	f.build("debian-13-arm64", result.Failure)
	bid, _ := f.build("debian-13-arm64", result.Failure)
	fin := f.wait()
	want := fmt.Sprintf("failed on debian-13-arm64: b (build %d: failure, second attempt); nothing published", bid)
	if fin.State != store.JobFailed || fin.Summary != want {
		t.Errorf("job %s %q, want %q", fin.State, fin.Summary, want)
	}
	if p := fin.Platforms[0]; p.State != store.PlatformSucceeded || len(p.Builds) != 3 {
		t.Errorf("amd64: %+v", p)
	}
}

func TestPublishCopy(t *testing.T) {
	repoDir := t.TempDir()
	f := newFarm(t, &config.Publish{Kind: "copy", Dir: repoDir})
	j := f.submit("hello", "stop", "hello")
	f.upload(j, "debian-12-amd64", "hello_1.0_amd64.deb", "amd64 deb")
	f.upload(j, "debian-13-arm64", "pool/hello_1.0_arm64.deb", "arm64 deb")
	f.build("debian-12-amd64", result.Success)
	f.build("debian-13-arm64", result.Success)
	if fin := f.wait(); fin.State != store.JobSucceeded {
		t.Fatalf("job %s %q", fin.State, fin.Summary)
	}
	for path, want := range map[string]string{
		"debian-12-amd64/hello_1.0_amd64.deb":      "amd64 deb",
		"debian-13-arm64/pool/hello_1.0_arm64.deb": "arm64 deb",
	} {
		got, err := os.ReadFile(filepath.Join(repoDir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", path, got, err)
		}
	}
}

func TestPublishFails(t *testing.T) {
	f := newFarm(t, &config.Publish{Kind: "command", Command: []string{"sh", "-c", "echo no space >&2; exit 3"}})
	j := f.submit("hello", "stop", "hello")
	f.build("debian-12-amd64", result.Success)
	f.build("debian-13-arm64", result.Success)
	fin := f.wait()
	if fin.State != store.JobFailed || !strings.HasPrefix(fin.Summary, "publish failed: ") || !strings.Contains(fin.Summary, "exit status 3") {
		t.Errorf("job %s %q", fin.State, fin.Summary)
	}
	log, _ := os.ReadFile(filepath.Join(f.basedir, j.Dir, PublishLog))
	if !strings.Contains(string(log), "no space") {
		t.Errorf("publish.log = %q", log)
	}
}

// TestRestart completes a buildset while no coordinator runs: the next one
// continues the chain from the store, and making the same decision twice
// adds nothing.
func TestRestart(t *testing.T) {
	f := newFarm(t, nil)
	f.cfg.Farms[0].Publish = countingScript(t, f.basedir)
	j := f.submit("hello", "stop", "libfoo", "hello")
	f.build("debian-12-amd64", result.Success)
	f.flush()
	arm := f.q.take(t, f.builders["debian-13-arm64"])
	amd := f.q.take(t, f.builders["debian-12-amd64"]) // hello, the second step

	f.stopCoordinator()
	// The master is down: the store finishes arm64's libfoo (a build that
	// ended as the master died), nobody hears of it.
	ctx := context.Background()
	if err := f.st.ClaimRequest(ctx, arm.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: arm.BuilderID, RequestID: arm.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.CompleteRequest(ctx, arm.ID, result.Success, time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.st.Close()
	f.open()

	f.startCoordinator()
	f.c.Accepted(j) // a repeated decision: must add nothing
	f.flush()
	g := f.job(j.ID)
	for _, p := range g.Platforms {
		if len(p.Builds) != 2 {
			t.Errorf("%s: %d steps, want 2", p.Platform, len(p.Builds))
		}
	}
	if n := f.q.len(); n != 1 {
		t.Fatalf("%d requests queued at the restart, want arm64's second", n)
	}
	f.q.Add(amd) // the dispatcher reads it from PendingRequests
	f.build("debian-13-arm64", result.Success)
	f.build("debian-12-amd64", result.Success)
	if fin := f.wait(); fin.State != store.JobSucceeded {
		t.Fatalf("job %s %q", fin.State, fin.Summary)
	}
	count, _ := os.ReadFile(filepath.Join(f.basedir, "count.log"))
	if strings.Count(string(count), "\n") != 1 {
		t.Errorf("published %q, want once", count)
	}
}

// TestRestartWhilePublishing: a job left "publishing" publishes again at
// the next start.
func TestRestartWhilePublishing(t *testing.T) {
	f := newFarm(t, nil)
	f.cfg.Farms[0].Publish = countingScript(t, f.basedir)
	j := f.submit("hello", "stop", "hello")
	f.stopCoordinator()
	ctx := context.Background()
	if err := f.st.UpdateJob(ctx, j.ID, store.JobUpdate{State: store.JobPublishing}); err != nil {
		t.Fatal(err)
	}
	f.startCoordinator()
	fin := f.wait()
	if fin.State != store.JobSucceeded {
		t.Errorf("job %s %q", fin.State, fin.Summary)
	}
	count, _ := os.ReadFile(filepath.Join(f.basedir, "count.log"))
	if strings.Count(string(count), "\n") != 1 {
		t.Errorf("published %q, want once", count)
	}
}

func TestUnusableSpec(t *testing.T) {
	f := newFarm(t, nil)
	j, err := f.st.AddJob(context.Background(), store.Job{Farm: "pkg", Name: "bad", Spec: []byte(`{"packages": []}`), Dir: "jobs/bad",
		Platforms: []store.JobPlatform{{Platform: plats[0], BuilderID: f.builders[plats[0]]}}})
	if err != nil {
		t.Fatal(err)
	}
	f.c.Accepted(j)
	if fin := f.wait(); fin.State != store.JobFailed || !strings.Contains(fin.Summary, "no packages") {
		t.Errorf("job %s %q", fin.State, fin.Summary)
	}
}
