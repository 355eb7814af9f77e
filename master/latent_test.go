package master

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/worker"
)

// The tests of this file run a real master in the test's process, with a
// fake clock for the latent workers' timers, real starforge-worker
// processes started by the process driver, a real SQLite file and real
// sockets.

var workerBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// workerBinary builds starforge-worker once for the package's tests.
func workerBinary(t *testing.T) string {
	t.Helper()
	workerBin.once.Do(func() {
		workerBin.dir, workerBin.err = os.MkdirTemp("", "starforge-latent-test-")
		if workerBin.err != nil {
			return
		}
		workerBin.path = filepath.Join(workerBin.dir, "starforge-worker")
		cmd := exec.Command("go", "build", "-o", workerBin.path, "../worker/cmd/starforge-worker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			workerBin.err = fmt.Errorf("build starforge-worker: %v\n%s", err, out)
		}
	})
	if workerBin.err != nil {
		t.Fatal(workerBin.err)
	}
	return workerBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if workerBin.dir != "" {
		os.RemoveAll(workerBin.dir)
	}
	os.Exit(code)
}

// builds relays build progress to a test.
type builds struct {
	finished chan store.Build
	commands chan int64 // build ids, as their commands start
}

func newBuilds() *builds {
	return &builds{finished: make(chan store.Build, 100), commands: make(chan int64, 100)}
}

func (b *builds) BuildStarted(store.Build)                        {}
func (b *builds) StepChanged(int64, store.Step)                   {}
func (b *builds) CommandStarted(id int64, _ store.Step, _ string) { b.commands <- id }
func (b *builds) BuildFinished(x store.Build)                     { b.finished <- x }

func (b *builds) next(t *testing.T) store.Build {
	t.Helper()
	select {
	case x := <-b.finished:
		return x
	case <-time.After(60 * time.Second):
		t.Fatal("no build finished within 60s")
	}
	return store.Build{}
}

// runLatentMaster runs a master whose latent workers use clk.
func runLatentMaster(t *testing.T, cfg string, clk clock.Clock) (*Master, *builds) {
	t.Helper()
	dir := writeConfig(t, `master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")`+"\n"+cfg)
	b := newBuilds()
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := New(Options{Basedir: dir, Logger: logger, ShutdownTimeout: 20 * time.Second, Observer: b, Clock: clk})
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
	})
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	}
	return m, b
}

// awaitLatent waits until cond holds for the latent slots' states.
func awaitLatent(t *testing.T, m *Master, what string, cond func(map[string]latent.SlotState) bool) map[string]latent.SlotState {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		ch := m.latent.Changes()
		st := m.latent.States()
		if cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; latent states: %+v", what, st)
		}
	}
}

func slotIs(slot string, s latent.State) func(map[string]latent.SlotState) bool {
	return func(m map[string]latent.SlotState) bool { return m[slot].State == s }
}

// instanceDir is where the process driver keeps an instance.
func instanceDir(m *Master, name string) string {
	return filepath.Join(m.opts.Basedir, "latent", "process", name)
}

func instancePid(t *testing.T, m *Master, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(instanceDir(m, name), "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

func stepLog(t *testing.T, m *Master, buildID int64) string {
	t.Helper()
	ctx := context.Background()
	steps, err := m.store.ListSteps(ctx, buildID)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, s := range steps {
		logs, err := m.store.ListLogs(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs {
			if _, err := m.store.ReadLog(ctx, l.ID, 0, -1, &sb); err != nil {
				t.Fatal(err)
			}
		}
	}
	return sb.String()
}

// TestLatentProcessBuildAndIdleStop: a build runs on a process latent
// worker started for it; its instance waits build_wait_timeout for the
// next build, then is stopped and its directory removed; the next build
// gets a new instance, and the old one's password no longer logs in.
func TestLatentProcessBuildAndIdleStop(t *testing.T) {
	clk := clock.NewFake(time.Now())
	m, b := runLatentMaster(t, fmt.Sprintf(`
latent_worker("lat", process_driver(worker_path = %q), build_wait_timeout = "10m", missing_timeout = "5m", properties = {"flavour": "fresh"})
builder("b", workers = ["lat"], steps = [shell(interpolate("echo %%(prop:flavour)s on %%(prop:workername)s"), name = "hello")])
force_scheduler("force", builders = ["b"])
`, workerBinary(t)), clk)

	r := force(t, m, "b")
	b1 := b.next(t)
	if b1.Results != result.Success || b1.WorkerName != "lat" {
		t.Fatalf("build = %+v", b1)
	}
	if log := stepLog(t, m, b1.ID); !strings.Contains(log, "fresh on lat") {
		t.Errorf("log = %q: the latent worker's properties are the build's", log)
	}
	if got, _ := m.store.GetRequest(context.Background(), r.ID); got.Results != result.Success {
		t.Errorf("request = %+v", got)
	}
	st := awaitLatent(t, m, "the build released", func(s map[string]latent.SlotState) bool {
		return s["lat"].State == latent.Running && s["lat"].Builds == 0
	})
	inst := st["lat"].Instance
	pid := instancePid(t, m, inst)
	if _, err := os.Stat(filepath.Join(instanceDir(m, inst), "basedir")); err != nil {
		t.Errorf("the instance's basedir: %v", err)
	}
	ws := m.WorkerStates()["lat"]
	if !ws.Connected || ws.Latent == nil || ws.Latent.State != "running" || ws.Latent.Instance != inst {
		t.Errorf("WorkerStates = %+v (latent %+v)", ws, ws.Latent)
	}
	if page := getText(t, m, "/workers"); !strings.Contains(page, `<span class="pill latent running"`) || !strings.Contains(page, inst) {
		t.Errorf("the workers page does not show the running instance:\n%s", page)
	}

	clk.Advance(10*time.Minute - time.Second)
	if s := m.latent.States()["lat"].State; s != latent.Running {
		t.Fatalf("stopped before build_wait_timeout: %s", s)
	}
	clk.Advance(time.Second)
	awaitLatent(t, m, "idle stop", slotIs("lat", latent.Stopped))
	if processAlive(pid) {
		t.Error("the worker process still runs after the idle stop")
	}
	if _, err := os.Stat(instanceDir(m, inst)); !os.IsNotExist(err) {
		t.Errorf("the instance's directory is still there: %v", err)
	}

	force(t, m, "b")
	b2 := b.next(t)
	st = m.latent.States()
	if b2.Results != result.Success || st["lat"].Instance == inst || st["lat"].Instance == "" {
		t.Errorf("second build %+v on instance %q (first %q)", b2, st["lat"].Instance, inst)
	}
}

// TestLatentStalePasswordRefused: the registry refuses a connection with
// the password of an instance that was stopped.
func TestLatentStalePasswordRefused(t *testing.T) {
	clk := clock.NewFake(time.Now())
	m, _ := runLatentMaster(t, `
latent_worker("lat", command_driver(start = "echo $STARFORGE_PASSWORD > pw", stop = "true"), missing_timeout = "1m")
builder("b", workers = ["lat"], steps = [shell("true")])
force_scheduler("force", builders = ["b"])
`, clk)
	force(t, m, "b")
	awaitLatent(t, m, "starting", slotIs("lat", latent.Starting))
	pwFile := filepath.Join(filepath.Dir(m.Config().Path), "pw")
	var pw string
	for i := 0; pw == "" && i < 1000; i++ {
		b, _ := os.ReadFile(pwFile)
		pw = strings.TrimSpace(string(b))
		if pw == "" {
			time.Sleep(10 * time.Millisecond) // written by the start command
		}
	}
	status := func() int {
		req, _ := http.NewRequest("GET", "http://"+m.WorkerAddr()+"/", nil)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("lat:"+pw)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status(); s == http.StatusUnauthorized {
		t.Fatalf("the starting instance's password was refused")
	}
	clk.Advance(time.Minute) // it never connects
	awaitLatent(t, m, "stopped", slotIs("lat", latent.Stopped))
	if s := status(); s != http.StatusUnauthorized {
		t.Errorf("stale password: status %d, want 401", s)
	}
}

// TestLatentKilledMidBuild: the instance dies during a build; the build
// ends RETRY, the instance is cleaned up, and after the quarantine a new
// instance runs the request to success.
func TestLatentKilledMidBuild(t *testing.T) {
	clk := clock.NewFake(time.Now())
	marker := filepath.Join(t.TempDir(), "marker")
	m, b := runLatentMaster(t, fmt.Sprintf(`
latent_worker("lat", process_driver(worker_path = %q), build_wait_timeout = 0)
builder("b", workers = ["lat"], steps = [shell("if [ -f %s ]; then echo second run; else touch %s; sleep 600; fi", name = "work")])
force_scheduler("force", builders = ["b"])
`, workerBinary(t), marker, marker), clk)
	r := force(t, m, "b")
	<-b.commands
	st := awaitLatent(t, m, "the build running", func(s map[string]latent.SlotState) bool { return s["lat"].Builds == 1 })
	first := st["lat"].Instance
	for i := 0; i < 1000; i++ {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // the step's shell writes it
	}
	pid := instancePid(t, m, first)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // the worker only; its step lives on
		t.Fatal(err)
	}
	b1 := b.next(t)
	if b1.Results != result.Retry {
		t.Fatalf("build on the killed instance: %s, want RETRY", b1.Results)
	}
	st = awaitLatent(t, m, "the failure counted", func(s map[string]latent.SlotState) bool {
		return s["lat"].Failures == 1 && s["lat"].State == latent.Stopped
	})
	if !strings.Contains(st["lat"].LastError, "exited") {
		t.Errorf("last error = %q", st["lat"].LastError)
	}
	if _, err := os.Stat(instanceDir(m, first)); !os.IsNotExist(err) {
		t.Errorf("the dead instance's directory is still there")
	}
	if reason, _ := queueReason(t, m, r.ID); !strings.Contains(reason, "quarantined") {
		t.Errorf("waiting reason during the quarantine = %q", reason)
	}
	clk.Advance(latent.MinQuarantine)
	b2 := b.next(t)
	if b2.Results != result.Success || b2.RequestID != r.ID {
		t.Fatalf("second build = %+v", b2)
	}
	if log := stepLog(t, m, b2.ID); !strings.Contains(log, "second run") {
		t.Errorf("log = %q", log)
	}
	st = awaitLatent(t, m, "stopped after the build (build_wait_timeout 0)", slotIs("lat", latent.Stopped))
	if st["lat"].Failures != 0 {
		t.Errorf("failures after a successful build = %d", st["lat"].Failures)
	}
}

// TestLatentNeverConnects: a command driver whose start does nothing. Each
// start fails after missing_timeout; the request moves to the builder's
// other worker after three, the latent worker is disabled after five, with
// the reason in the API, and the enable action lets it start again.
func TestLatentNeverConnects(t *testing.T) {
	clk := clock.NewFake(time.Now())
	m, b := runLatentMaster(t, `
worker("w1", "pw")
latent_worker("lat", command_driver(start = "true", stop = "true"), missing_timeout = "1m", build_wait_timeout = 0)
builder("mixed", workers = ["lat", "w1"], steps = [shell("true")])
builder("only", workers = ["lat"], steps = [shell("true")])
force_scheduler("force", builders = ["mixed", "only"])
`, clk)
	ra := force(t, m, "mixed")
	rb := force(t, m, "only")
	backoff := latent.MinQuarantine
	for i := 1; i <= latent.MaxFailures; i++ {
		awaitLatent(t, m, fmt.Sprintf("start %d", i), slotIs("lat", latent.Starting))
		if i == 1 {
			if why, _ := queueReason(t, m, ra.ID); why != "preparing worker lat" {
				t.Errorf("reason while the instance starts = %q", why)
			}
		}
		clk.Advance(time.Minute)
		awaitLatent(t, m, fmt.Sprintf("failure %d", i), func(s map[string]latent.SlotState) bool {
			return s["lat"].Failures == i && s["lat"].State == latent.Stopped
		})
		if i < latent.MaxFailures {
			clk.Advance(backoff)
			backoff *= 2
		}
	}
	why, _ := queueReason(t, m, ra.ID)
	if !strings.Contains(why, "instances of lat failed to start 3 times for this request") || !strings.Contains(why, "waiting for another worker") {
		t.Errorf("reason of the request with another worker = %q", why)
	}
	why, _ = queueReason(t, m, rb.ID)
	if !strings.Contains(why, "worker lat is disabled: 5 failures in a row") || !strings.Contains(why, "did not connect within 1m0s") {
		t.Errorf("reason of the request with only the latent worker = %q", why)
	}

	// The API shows it.
	var ws struct {
		Workers []struct {
			Name           string  `json:"name"`
			State          *string `json:"latent_state"`
			Disabled       bool    `json:"latent_disabled"`
			DisabledReason *string `json:"latent_disabled_reason"`
			Failures       int     `json:"latent_failures"`
		} `json:"workers"`
	}
	getJSON(t, m, "/api/v2/workers?name=lat", &ws)
	if len(ws.Workers) != 1 || !ws.Workers[0].Disabled || ws.Workers[0].Failures != 5 || ws.Workers[0].DisabledReason == nil ||
		!strings.Contains(*ws.Workers[0].DisabledReason, "did not connect") || *ws.Workers[0].State != "stopped" {
		t.Errorf("API worker = %+v", ws.Workers)
	}

	if page := getText(t, m, "/workers"); !strings.Contains(page, `<span class="pill disabled"`) || !strings.Contains(page, `data-method="enable"`) {
		t.Errorf("the workers page shows no disabled latent worker with its Enable button:\n%s", page)
	}
	if page := getText(t, m, "/queue"); !strings.Contains(page, "worker lat is disabled") {
		t.Errorf("the queue page does not say why:\n%s", page)
	}

	// The other worker takes the first request.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &worker.Agent{Master: m.WorkerAddr(), Name: "w1", Password: "pw", Basedir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	agentDone := make(chan struct{})
	go func() { a.Run(ctx); close(agentDone) }()
	defer func() { cancel(); <-agentDone }()
	if x := b.next(t); x.RequestID != ra.ID || x.WorkerName != "w1" || x.Results != result.Success {
		t.Errorf("build = %+v", x)
	}

	// An admin enables the latent worker: it starts an instance again.
	resp, err := http.Post("http://"+m.HTTPAddr()+"/api/v2/workers/lat", "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","method":"enable","id":1,"params":{"reason":"fixed the image"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("enable: %s: %s", resp.Status, body)
	}
	awaitLatent(t, m, "started after enable", slotIs("lat", latent.Starting))
	if st := m.latent.States()["lat"]; st.Disabled != "" || st.Failures != 0 {
		t.Errorf("after enable: %+v", st)
	}
	// Enabling a plain worker is refused.
	resp, err = http.Post("http://"+m.HTTPAddr()+"/api/v2/workers/w1", "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","method":"enable","id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("enable of a plain worker: %s", resp.Status)
	}
}

func getJSON(t *testing.T, m *Master, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

func getText(t *testing.T, m *Master, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}
