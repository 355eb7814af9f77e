package master

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
	"github.com/starforge/starforge/worker"
)

func TestSetRequestPriority(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	ctx := context.Background()
	a, b, c := force(t, m, "unit"), force(t, m, "unit"), force(t, m, "unit")
	if err := m.SetRequestPriority(ctx, c.ID, 5); err != nil {
		t.Fatal(err)
	}
	snap, err := m.disp.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []int64
	for _, r := range snap.Pending {
		order = append(order, r.ID)
	}
	if want := fmt.Sprint([]int64{c.ID, a.ID, b.ID}); fmt.Sprint(order) != want {
		t.Errorf("queue %v, want %s", order, want)
	}
	if r, _ := m.store.GetRequest(ctx, c.ID); r.Priority != 5 {
		t.Errorf("stored priority %d", r.Priority)
	}
	if err := m.SetRequestPriority(ctx, 999, 1); httpStatus(err) != http.StatusNotFound {
		t.Errorf("unknown request: %v", err)
	}
	if err := m.CancelRequest(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.SetRequestPriority(ctx, a.ID, 1); httpStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "already complete") {
		t.Errorf("cancelled request: %v", err)
	}
}

func TestEnableScheduler(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	ctx := context.Background()
	if err := m.EnableScheduler(ctx, "force", false, "disabled by ann: freeze"); err != nil {
		t.Fatal(err)
	}
	_, _, err := m.Force(ctx, webui.ForceRequest{Scheduler: "force", Builders: []string{"unit"}, Properties: map[string]string{}})
	if httpStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), `force scheduler "force" is disabled`) {
		t.Errorf("force through a disabled scheduler: %v", err)
	}
	if err := m.EnableScheduler(ctx, "try", false, ""); err != nil {
		t.Fatal(err)
	}
	_, _, err = m.Try(ctx, TryRequest{Builders: []string{"unit"}, Patch: []byte("--- a/x\n+++ b/x\n")})
	if httpStatus(err) != http.StatusConflict {
		t.Errorf("try through a disabled scheduler: %v", err)
	}
	if err := m.EnableScheduler(ctx, "nope", false, ""); httpStatus(err) != http.StatusNotFound {
		t.Errorf("unknown scheduler: %v", err)
	}
	if m.sched.Enabled("force") || m.sched.Enabled("try") || !m.sched.Enabled("try-docs") {
		t.Error("the scheduler manager does not have the flags set")
	}
	if err := m.EnableScheduler(ctx, "force", true, ""); err != nil {
		t.Fatal(err)
	}
	force(t, m, "unit")
}

// wakeLog is a slog.Handler that signals every record on wake, so
// that a test can wait for what the master only logs (a worker attached).
type wakeLog struct {
	slog.Handler
	wake chan struct{}
}

func (h wakeLog) Handle(ctx context.Context, r slog.Record) error {
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return h.Handler.Handle(ctx, r)
}

func (h wakeLog) WithAttrs(as []slog.Attr) slog.Handler {
	return wakeLog{h.Handler.WithAttrs(as), h.wake}
}

func (h wakeLog) WithGroup(name string) slog.Handler {
	return wakeLog{h.Handler.WithGroup(name), h.wake}
}

// runLoggedMaster is runMaster with a log that wakes waitUntil.
func runLoggedMaster(t *testing.T, dir string) (*Master, chan struct{}) {
	t.Helper()
	logs := &testenv.Buffer{}
	wake := make(chan struct{}, 1)
	m, err := New(Options{Basedir: dir, Logger: slog.New(wakeLog{slog.NewTextHandler(logs, nil), wake}), ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("master log:\n%s", logs)
		}
	})
	<-m.Ready()
	return m, wake
}

// waitUntil waits, on build events and log records, until cond holds.
func waitUntil(t *testing.T, m *Master, wake <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	events, unsubscribe := m.hub.Subscribe()
	defer unsubscribe()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-events:
		case <-wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// runAgent runs an in-process starforge worker; the returned channel
// receives Run's error when the worker stops by itself.
func runAgent(t *testing.T, m *Master, wake <-chan struct{}, name string) <-chan error {
	t.Helper()
	logs := &testenv.Buffer{}
	a := &worker.Agent{Master: m.WorkerAddr(), Name: name, Password: "pw", Basedir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(logs, nil)), StopTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("worker %s log:\n%s", name, logs)
		}
	})
	waitUntil(t, m, wake, "worker "+name+" to attach", func() bool { return m.reg.Get(name) != nil })
	return done
}

// TestStopAndKillWorker: a graceful stop lets the running build finish,
// starts no other, then shuts the worker down; a kill ends the running
// build RETRY at once and shuts the worker down too.
func TestStopAndKillWorker(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	dir := writeConfig(t, fmt.Sprintf(`master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")
worker("w1", "pw")
builder("slow", workers = ["w1"], steps = [shell("while [ ! -e %s ]; do sleep 0.05; done")])
force_scheduler("force", builders = ["slow"])
`, gate))
	m, wake := runLoggedMaster(t, dir)
	ctx := context.Background()
	if err := m.StopWorker(ctx, "w1", ""); httpStatus(err) != http.StatusConflict {
		t.Errorf("stop of a worker not connected: %v", err)
	}
	if err := m.KillWorker(ctx, "nope", ""); httpStatus(err) != http.StatusNotFound {
		t.Errorf("kill of an unknown worker: %v", err)
	}

	running := func(n int) func() bool {
		return func() bool { return len(m.runningBuilds()["w1"]) == n }
	}
	done := runAgent(t, m, wake, "w1")
	first := force(t, m, "slow")
	waitUntil(t, m, wake, "the build to start", running(1))
	if err := m.StopWorker(ctx, "w1", "new disk"); err != nil {
		t.Fatal(err)
	}
	if st := m.WorkerStates()["w1"]; !st.Paused || st.PauseReason != "stopping when idle: new disk" {
		t.Errorf("worker state while stopping: %+v", st)
	}
	second := force(t, m, "slow")
	if why, _ := queueReason(t, m, second.ID); !strings.Contains(why, "stopping when idle") {
		t.Errorf("the second request waits because %q", why)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker Run after the stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not shut down after its build")
	}
	builds, err := m.store.ListBuilds(ctx, store.BuildFilter{RequestID: first.ID})
	if err != nil || len(builds) != 1 || builds[0].Results != result.Success {
		t.Fatalf("the build running at the stop: %+v, %v; want it finished SUCCESS", builds, err)
	}
	if r, _ := m.store.GetRequest(ctx, second.ID); r.Claimed {
		t.Error("the stopping worker took the second request")
	}
	waitUntil(t, m, wake, "the stop to end", func() bool { return m.reg.Get("w1") == nil && !m.WorkerStates()["w1"].Paused })

	// Kill: the second request runs on a new worker; the gate is open, so
	// close it again first.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	done = runAgent(t, m, wake, "w1")
	waitUntil(t, m, wake, "the second build's step to run", func() bool {
		bs := m.runningBuilds()["w1"]
		if len(bs) != 1 {
			return false
		}
		steps, err := m.store.ListSteps(ctx, bs[0])
		return err == nil && len(steps) == 1 && !steps[0].StartedAt.IsZero()
	})
	if err := m.KillWorker(ctx, "w1", "hung"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the killed worker did not stop")
	}
	waitUntil(t, m, wake, "the killed build's request to be requeued", func() bool {
		r, err := m.store.GetRequest(ctx, second.ID)
		return err == nil && !r.Claimed
	})
	builds, err = m.store.ListBuilds(ctx, store.BuildFilter{RequestID: second.ID})
	if err != nil || len(builds) != 1 || builds[0].Results != result.Retry {
		t.Fatalf("the build running at the kill: %+v, %v; want RETRY", builds, err)
	}
	if r, _ := m.store.GetRequest(ctx, second.ID); r.Claimed || r.Complete {
		t.Errorf("request after the kill: %+v; want it back in the queue", r)
	}
}

// TestWebAuthServed: with web_auth = "users" the master starts, lets
// anybody read, and runs actions only for users whose roles allow them;
// the web UI reaches the master's operations.
func TestWebAuthServed(t *testing.T) {
	dir := writeConfig(t, `master(web_auth = "users", http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")
secrets_dir("secrets")
worker("w1", "pw")
builder("unit", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["unit"])
user("ci", roles = ["developer"], tokens = [secret("ci")])
user("view", roles = ["viewer"], tokens = [secret("view")])
`)
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"ci": "ci-token-0123456789abcdef", "view": "view-token-0123456789abcdef"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", name), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := runMaster(t, dir)
	base := "http://" + m.HTTPAddr()
	call := func(path, token, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	resp, err := http.Get(base + "/api/v2/builders")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("anonymous read: %d", resp.StatusCode)
	}
	force := `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["unit"]}}`
	for token, want := range map[string]int{"": 401, "view-token-0123456789abcdef": 403, "ci-token-0123456789abcdef": 200} {
		if st := call("/api/v2/forceschedulers/force", token, force); st != want {
			t.Errorf("force with token %q: %d, want %d", token, st, want)
		}
	}
	pending, err := m.store.PendingRequests(context.Background())
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending %+v, %v", pending, err)
	}
	if got := pending[0]; got.BuilderName != "unit" {
		t.Errorf("forced %+v", got)
	}
	bs, _ := m.store.GetBuildset(context.Background(), pending[0].BuildsetID)
	if owner := bs.Properties["owner"].Value; owner != "ci" {
		t.Errorf("owner %v, want ci (the token's user)", owner)
	}
	body := `{"jsonrpc":"2.0","method":"set_priority","id":1,"params":{"priority":3}}`
	if st := call(fmt.Sprintf("/api/v2/buildrequests/%d", pending[0].ID), "ci-token-0123456789abcdef", body); st != 200 {
		t.Errorf("set_priority: %d", st)
	}
	if r, _ := m.store.GetRequest(context.Background(), pending[0].ID); r.Priority != 3 {
		t.Errorf("priority %d after set_priority", r.Priority)
	}
}

// TestUnpauseCancelsStop: unpausing a worker that stops when idle
// cancels the stop: it keeps taking builds and stays connected.
func TestUnpauseCancelsStop(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	dir := writeConfig(t, fmt.Sprintf(`master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")
worker("w1", "pw")
builder("slow", workers = ["w1"], steps = [shell("while [ ! -e %s ]; do sleep 0.05; done")])
force_scheduler("force", builders = ["slow"])
`, gate))
	m, wake := runLoggedMaster(t, dir)
	ctx := context.Background()
	runAgent(t, m, wake, "w1")
	first := force(t, m, "slow")
	waitUntil(t, m, wake, "the build to start", func() bool { return len(m.runningBuilds()["w1"]) == 1 })
	if err := m.StopWorker(ctx, "w1", "maybe"); err != nil {
		t.Fatal(err)
	}
	second := force(t, m, "slow")
	if err := m.UnpauseWorker(ctx, "w1", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	if st := m.WorkerStates()["w1"]; st.Paused {
		t.Errorf("worker state after unpausing: %+v", st)
	}
	m.webOps.mu.Lock()
	left := len(m.webOps.stopping) + len(m.webOps.held)
	m.webOps.mu.Unlock()
	if left != 0 {
		t.Errorf("the stop is still recorded after unpausing (%d entries)", left)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := func(id int64) func() bool {
		return func() bool {
			r, err := m.store.GetRequest(ctx, id)
			return err == nil && r.Complete
		}
	}
	waitUntil(t, m, wake, "both builds to end", func() bool { return done(first.ID)() && done(second.ID)() })
	for _, id := range []int64{first.ID, second.ID} {
		if r, _ := m.store.GetRequest(ctx, id); r.Results != result.Success {
			t.Errorf("request %d: %s", id, r.Results)
		}
	}
	if m.reg.Get("w1") == nil {
		t.Error("the worker was shut down after its stop was cancelled")
	}
}
