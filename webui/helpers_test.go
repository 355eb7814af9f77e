package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// fakeMaster is a Master over a real store, recording what it is asked.
type fakeMaster struct {
	st *store.Store

	mu       sync.Mutex
	forces   []ForceScheduler
	workers  map[string]WorkerState
	reasons  map[int64]string
	forced   []ForceRequest
	stopped  []stopCall
	forceErr error // returned by Force if set
	stopErr  error // returned by StopBuild if set
	config   ConfigStatus

	pollers    []PollerState
	schedulers []SchedulerState
	added      int // AddChanges calls
}

type stopCall struct {
	id     int64
	reason string
}

func (m *fakeMaster) Title() string       { return "Test Forge" }
func (m *fakeMaster) Store() *store.Store { return m.st }

func (m *fakeMaster) ForceSchedulers() []ForceScheduler {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.forces)
}

func (m *fakeMaster) Force(ctx context.Context, r ForceRequest) (store.Buildset, []store.BuildRequest, error) {
	m.mu.Lock()
	m.forced = append(m.forced, r)
	err := m.forceErr
	m.mu.Unlock()
	if err != nil {
		return store.Buildset{}, nil, err
	}
	var ids []int64
	for _, name := range r.Builders {
		b, err := m.st.GetBuilderByName(ctx, name)
		if err != nil {
			return store.Buildset{}, nil, err
		}
		ids = append(ids, b.ID)
	}
	props := map[string]store.Property{}
	for k, v := range r.Properties {
		props[k] = store.Property{Value: v, Source: "Force Build Form"}
	}
	return m.st.AddBuildset(ctx, store.NewBuildset{Reason: r.Reason, Properties: props, BuilderIDs: ids})
}

func (m *fakeMaster) StopBuild(ctx context.Context, id int64, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = append(m.stopped, stopCall{id, reason})
	return m.stopErr
}

func (m *fakeMaster) WorkerStates() map[string]WorkerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.workers
}

func (m *fakeMaster) QueueReasons() map[int64]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reasons
}

func (m *fakeMaster) ConfigStatus() ConfigStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.config
}

func (m *fakeMaster) AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error) {
	m.mu.Lock()
	m.added++
	m.mu.Unlock()
	return m.st.AddChanges(ctx, cs, state...)
}

func (m *fakeMaster) Pollers() []PollerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pollers)
}

func (m *fakeMaster) Schedulers() []SchedulerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.schedulers)
}

func (m *fakeMaster) addCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.added
}

// statusErr is a master error carrying an HTTP status.
type statusErr struct {
	status int
	msg    string
}

func (e statusErr) Error() string   { return e.msg }
func (e statusErr) HTTPStatus() int { return e.status }

var errBoom = errors.New("disk on fire")

// openStore opens a fresh store in a temporary directory.
func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "state.sqlite"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// The stdio log of the fixture's finished step, as the store holds it.
const fixtureLog = "hmake all\n" +
	"ocompiling <main.c> & \"util.c\"\n" +
	"ewarning: unused variable\n" +
	"o unicode é ✓\n" +
	"\n" + // a line that lost its prefix must not break anything
	"odone\n"

// fixture is a store with a little of everything, served by a test server.
type fixture struct {
	m   *fakeMaster
	st  *store.Store
	srv *httptest.Server

	linux, xss, empty int64 // builder ids
	w1, w2            int64 // worker ids
	finished          []store.Build
	running           store.Build
	doneStep, runStep store.Step
	doneLog, growLog  store.Log
	pending           store.BuildRequest
	start             time.Time
}

const xssName = `<script>alert(1)</script>`

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st := openStore(t)
	f := &fixture{st: st, start: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	f.linux, err = st.EnsureBuilder(ctx, store.Builder{Name: "linux", Description: "Builds on Linux", Tags: []string{"tier1", "amd64"}})
	must(err)
	f.xss, err = st.EnsureBuilder(ctx, store.Builder{Name: xssName, Description: `<b>bold</b>`})
	must(err)
	f.empty, err = st.EnsureBuilder(ctx, store.Builder{Name: "empty"})
	must(err)
	f.w1, err = st.EnsureWorker(ctx, "w1")
	must(err)
	must(st.SetWorkerConnected(ctx, f.w1, true, map[string]any{"os": "linux", "version": "1.2.3", "numcpus": 4}, f.start))
	f.w2, err = st.EnsureWorker(ctx, "w2")
	must(err)

	for i, r := range []result.Result{result.Success, result.Failure, result.Warnings} {
		b := f.addBuild(t, f.linux, f.w1, f.start.Add(time.Duration(i)*time.Minute))
		must(st.FinishBuild(ctx, b.ID, r, "build "+r.String(), b.StartedAt.Add(83*time.Second)))
		b, err = st.GetBuild(ctx, b.ID)
		must(err)
		f.finished = append(f.finished, b)
	}
	xb := f.addBuild(t, f.xss, f.w1, f.start)
	must(st.FinishBuild(ctx, xb.ID, result.Exception, xssName, f.start.Add(time.Second)))

	f.running = f.addBuild(t, f.linux, f.w1, time.Now().Add(-30*time.Second))
	f.doneStep, err = st.AddStep(ctx, f.running.ID, 1, "compile")
	must(err)
	must(st.StartStep(ctx, f.doneStep.ID, time.Now().Add(-29*time.Second)))
	f.doneLog, err = st.AddLog(ctx, f.doneStep.ID, "stdio", store.LogStdio)
	must(err)
	_, _, err = st.AppendLog(ctx, f.doneLog.ID, []byte(fixtureLog))
	must(err)
	must(st.FinishLog(ctx, f.doneLog.ID))
	must(st.FinishStep(ctx, f.doneStep.ID, result.Success, "compiled", time.Now().Add(-10*time.Second)))
	f.runStep, err = st.AddStep(ctx, f.running.ID, 2, "test")
	must(err)
	must(st.StartStep(ctx, f.runStep.ID, time.Now().Add(-10*time.Second)))
	f.growLog, err = st.AddLog(ctx, f.runStep.ID, "stdio", store.LogStdio)
	must(err)
	_, _, err = st.AppendLog(ctx, f.growLog.ID, []byte("ofirst\n"))
	must(err)
	hidden, err := st.AddStep(ctx, f.running.ID, 3, "secret-hidden-step")
	must(err)
	must(st.SetStepHidden(ctx, hidden.ID, true))

	_, reqs, err := st.AddBuildset(ctx, store.NewBuildset{Reason: "waiting", BuilderIDs: []int64{f.linux}, SubmittedAt: time.Now().Add(-90 * time.Second)})
	must(err)
	f.pending = reqs[0]

	for _, id := range []int64{f.doneStep.ID, f.runStep.ID} {
		s, err := st.GetStep(ctx, id)
		must(err)
		if id == f.doneStep.ID {
			f.doneStep = s
		} else {
			f.runStep = s
		}
	}
	f.running, err = st.GetBuild(ctx, f.running.ID)
	must(err)
	f.doneLog, err = st.GetLog(ctx, f.doneLog.ID)
	must(err)

	f.m = &fakeMaster{
		st:      st,
		forces:  []ForceScheduler{{Name: "force", Label: "Force a build", Builders: []string{"linux", "empty"}}, {Name: "other", Builders: []string{"empty"}}},
		workers: map[string]WorkerState{"w1": {Connected: true, RunningBuilds: []int64{f.running.ID}}, "w2": {Connected: false, Paused: true, PauseReason: "owner is back"}},
		reasons: map[int64]string{f.pending.ID: "no worker connected for builder linux"},
	}
	f.srv = httptest.NewServer(New(f.m, Options{}).Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// addBuild queues a request for builder and starts a build for it on worker.
func (f *fixture) addBuild(tb testing.TB, builder, worker int64, at time.Time) store.Build {
	tb.Helper()
	ctx := context.Background()
	_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{
		Reason:      "fixture",
		Properties:  map[string]store.Property{"branch": {Value: "main", Source: "Scheduler"}, "n": {Value: 3, Source: "Test"}},
		BuilderIDs:  []int64{builder},
		SubmittedAt: at.Add(-time.Second),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.st.ClaimRequest(ctx, reqs[0].ID, at); err != nil {
		tb.Fatal(err)
	}
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: builder, RequestID: reqs[0].ID, WorkerID: worker, StartedAt: at,
		Properties: map[string]store.Property{"buildername": {Value: "x", Source: "Builder"}, "branch": {Value: "main", Source: "Scheduler"}}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// do sends a request to the fixture's server and returns the status,
// headers and body.
func (f *fixture) do(t *testing.T, method, path, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
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

func (f *fixture) get(t *testing.T, path string) (int, http.Header, []byte) {
	t.Helper()
	return f.do(t, http.MethodGet, path, "", "")
}

// getJSON GETs path, expects status 200 and decodes the body into v.
func (f *fixture) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	st, _, body := f.get(t, path)
	if st != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, st, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}
