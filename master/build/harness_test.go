package build

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/worker"
)

// harness runs builds in this process against real workers: a real SQLite
// store in a temp dir, the registry on a real 127.0.0.1 socket, and either
// the starforge worker agent (in this process) or Debian's buildbot-worker
// (a child process). Builds are run one at a time with RunBuild, without a
// dispatcher, so that a test can give a build any source stamp, patch
// included.
type harness struct {
	t        *testing.T
	dir      string
	cfg      *config.Config
	st       *store.Store
	srv      *httptest.Server
	runner   *Runner
	attached chan string
}

// newHarness loads masterStar (written to dir/master.star) and starts the
// master side.
func newHarness(t *testing.T, masterStar string) *harness {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.star")
	if err := os.WriteFile(path, []byte(masterStar), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, b := range cfg.Builders {
		if _, err := st.EnsureBuilder(ctx, store.Builder{Name: b.Name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range cfg.Workers {
		if _, err := st.EnsureWorker(ctx, w.Name); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, dir: dir, cfg: cfg, st: st, attached: make(chan string, 4)}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		quiet = slog.Default()
	}
	reg := registry.New(registry.Options{
		Credentials: func(name string) (string, bool) {
			if w := cfg.Worker(name); w != nil {
				return w.Password, true
			}
			return "", false
		},
		Hooks:  registry.Hooks{Attached: func(s *registry.Session) { h.attached <- s.Name }},
		Logger: quiet,
	})
	h.srv = httptest.NewServer(reg)
	t.Cleanup(func() { reg.Close(); h.srv.Close() })
	h.runner = New(st, reg, func() *config.Config { return cfg }, dir, quiet)
	return h
}

// waitAttached waits until a worker has attached.
func (h *harness) waitAttached(name string) {
	h.t.Helper()
	select {
	case got := <-h.attached:
		if got != name {
			h.t.Fatalf("worker %q attached, want %q", got, name)
		}
	case <-time.After(60 * time.Second):
		h.t.Fatalf("worker %s did not attach", name)
	}
}

// startAgent runs the starforge worker agent as worker name until the test
// ends, and returns its base directory.
func (h *harness) startAgent(name string) string {
	h.t.Helper()
	basedir := filepath.Join(h.dir, "worker-"+name)
	ctx, cancel := context.WithCancel(context.Background())
	a := &worker.Agent{
		Master:     strings.TrimPrefix(h.srv.URL, "http://"),
		Name:       name,
		Password:   h.cfg.Worker(name).Password,
		Basedir:    basedir,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
	h.waitAttached(name)
	return basedir
}

// startBuildbotWorker runs Debian's buildbot-worker as worker name until
// the test ends, and returns its base directory.
func (h *harness) startBuildbotWorker(bbw, name string) string {
	h.t.Helper()
	basedir := filepath.Join(h.dir, "bbworker-"+name)
	create := exec.Command(bbw, "create-worker", "--protocol=msgpack_experimental_v7", basedir,
		strings.TrimPrefix(h.srv.URL, "http://"), name, h.cfg.Worker(name).Password)
	if out, err := create.CombinedOutput(); err != nil {
		h.t.Fatalf("buildbot-worker create-worker: %v\n%s", err, out)
	}
	cmd := exec.Command(bbw, "start", "--nodaemon", basedir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	h.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if h.t.Failed() {
			h.t.Logf("buildbot-worker output:\n%s", out.String())
		}
	})
	h.waitAttached(name)
	return basedir
}

// builtBuild is a finished build with its steps by name.
type builtBuild struct {
	store.Build
	steps map[string]store.Step
}

// build runs one build of builder on worker with the given source stamps
// and returns it once finished.
func (h *harness) build(builder, worker string, ss ...store.SourceStamp) builtBuild {
	h.t.Helper()
	return h.runBuildset(builder, worker, store.NewBuildset{SourceStamps: ss})
}

// runBuildset adds nb (for builder, with reason "test") and runs its
// build on worker, returning it once finished.
func (h *harness) runBuildset(builder, worker string, nb store.NewBuildset) builtBuild {
	h.t.Helper()
	ctx := context.Background()
	b, err := h.st.GetBuilderByName(ctx, builder)
	if err != nil {
		h.t.Fatal(err)
	}
	nb.Reason, nb.BuilderIDs = "test", []int64{b.ID}
	_, reqs, err := h.st.AddBuildset(ctx, nb)
	if err != nil {
		h.t.Fatal(err)
	}
	if requeue := h.runner.RunBuild(reqs[0], worker); requeue {
		h.t.Fatalf("build of %s on %s was requeued", builder, worker)
	}
	builds, err := h.st.ListBuilds(ctx, store.BuildFilter{RequestID: reqs[0].ID})
	if err != nil || len(builds) != 1 {
		h.t.Fatalf("builds of request %d: %v, %v", reqs[0].ID, builds, err)
	}
	out := builtBuild{Build: builds[0], steps: map[string]store.Step{}}
	steps, err := h.st.ListSteps(ctx, out.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range steps {
		out.steps[s.Name] = s
	}
	return out
}

// log returns the stdio log of a step, one line per log line with its
// stream letter first ('o', 'e', 'h').
func (h *harness) log(s store.Step) string {
	h.t.Helper()
	ctx := context.Background()
	l, err := h.st.GetLogBySlug(ctx, s.ID, "stdio")
	if err != nil {
		h.t.Fatalf("step %s: %v", s.Name, err)
	}
	var buf bytes.Buffer
	if _, err := h.st.ReadLog(ctx, l.ID, 0, -1, &buf); err != nil {
		h.t.Fatal(err)
	}
	return buf.String()
}

// allLogs returns every log line and state string of a build.
func (h *harness) allLogs(b builtBuild) string {
	h.t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	buf.WriteString(b.StateString + "\n")
	for _, s := range b.steps {
		buf.WriteString(s.StateString + "\n")
		logs, err := h.st.ListLogs(ctx, s.ID)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, l := range logs {
			if _, err := h.st.ReadLog(ctx, l.ID, 0, -1, &buf); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	return buf.String()
}

// prop returns a string property of a build.
func (h *harness) prop(b builtBuild, name string) string {
	h.t.Helper()
	props, err := h.st.BuildProperties(context.Background(), b.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	s, _ := props[name].Value.(string)
	return s
}

// want checks a step's result and state string, and logs its log when
// they differ.
func (h *harness) want(b builtBuild, step string, res result.Result, state string) {
	h.t.Helper()
	s, ok := b.steps[step]
	if !ok {
		h.t.Errorf("build %d has no step %s", b.ID, step)
		return
	}
	if s.Results != res || (state != "" && s.StateString != state) {
		h.t.Errorf("step %s: %v %q, want %v %q; log:\n%s", step, s.Results, s.StateString, res, state, h.log(s))
	}
}
