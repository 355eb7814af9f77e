package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master"
)

var latentWorkerBin struct {
	once sync.Once
	path string
	err  error
}

// workerBinary builds starforge-worker for the process driver, once.
func workerBinary(b *testing.B) string {
	latentWorkerBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "starforge-bench-worker-")
		if err != nil {
			latentWorkerBin.err = err
			return
		}
		latentWorkerBin.path = filepath.Join(dir, "starforge-worker")
		cmd := exec.Command("go", "build", "-o", latentWorkerBin.path, "../../worker/cmd/starforge-worker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			latentWorkerBin.err = fmt.Errorf("build starforge-worker: %v\n%s", err, out)
		}
	})
	if latentWorkerBin.err != nil {
		b.Fatal(latentWorkerBin.err)
	}
	return latentWorkerBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if p := latentWorkerBin.path; p != "" {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// startLatentFarm runs a master whose only worker is the process latent
// worker "lat" with build_wait_timeout wait.
func startLatentFarm(b *testing.B, wait string) *farm {
	b.Helper()
	dir := b.TempDir()
	cfg := fmt.Sprintf(`master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")
latent_worker("lat", process_driver(worker_path=%q), build_wait_timeout=%s)
builder("trivial", workers=["lat"], steps=[mkdir("out")])
force_scheduler("force", builders=["trivial"])
`, workerBinary(b), wait)
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	w := newWatcher()
	m, err := master.New(master.Options{Basedir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: w})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	<-m.Ready()
	b.Cleanup(func() { cancel(); <-done })
	return &farm{m: m, w: w}
}

// latentState is the state of slot "lat" as the API shows it.
func (f *farm) latentState() string {
	if l := f.m.WorkerStates()["lat"].Latent; l != nil {
		return l.State
	}
	return ""
}

// awaitLatentState polls until slot "lat" is in state s; it returns when
// it saw it. Polling at 0.2 ms adds at most that to the figure.
func (f *farm) awaitLatentState(b *testing.B, s string) time.Time {
	deadline := time.Now().Add(time.Minute)
	for f.latentState() != s {
		if time.Now().After(deadline) {
			b.Fatalf("latent worker not %s within a minute (it is %s)", s, f.latentState())
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Now()
}

// BenchmarkLatentRequestToCommand: a build forced for a process latent
// worker with no instance running (build_wait_timeout = 0: every build
// gets a fresh one), from the request to the instance accepting its first
// command: the start of the process, its connection and handshake. Also
// reported: how long the stop after the build takes (build finished →
// slot stopped: disconnect, SIGTERM, the worker's exit, directory removed).
func BenchmarkLatentRequestToCommand(b *testing.B) {
	f := startLatentFarm(b, "0")
	f.force(b, "trivial") // warm up: the binary in the page cache
	f.waitFinished(b, 1)
	f.awaitLatentState(b, "stopped")
	f.w.mu.Lock()
	f.w.latency = nil
	f.w.mu.Unlock()
	var stops []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.forceTimed(b, "trivial")
		f.waitFinished(b, 1)
		t0 := time.Now()
		stops = append(stops, f.awaitLatentState(b, "stopped").Sub(t0))
	}
	b.StopTimer()
	f.reportLatency(b)
	b.ReportMetric(float64(percentile(stops, 0.50).Microseconds())/1000, "stop-p50-ms")
	b.ReportMetric(float64(percentile(stops, 0.99).Microseconds())/1000, "stop-p99-ms")
}

// BenchmarkLatentWarmRequestToCommand: as BenchmarkRequestToCommand, on a
// latent worker whose instance is still up from the previous build
// (build_wait_timeout = 10 minutes): what reusing an instance saves.
func BenchmarkLatentWarmRequestToCommand(b *testing.B) {
	f := startLatentFarm(b, `"10m"`)
	f.force(b, "trivial")
	f.waitFinished(b, 1)
	f.w.mu.Lock()
	f.w.latency = nil
	f.w.mu.Unlock()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.forceTimed(b, "trivial")
		f.waitFinished(b, 1)
	}
	b.StopTimer()
	f.reportLatency(b)
}
