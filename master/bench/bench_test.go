// Package bench measures the figures DESIGN.md sets targets for, with a
// real master (SQLite file, websockets on 127.0.0.1) and real worker
// agents. `make bench` runs it; the numbers are reported as metrics, never
// asserted.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
	"github.com/starforge/starforge/worker"
)

// watcher collects build progress from the master.
type watcher struct {
	mu        sync.Mutex
	reqOf     map[int64]int64     // build → request
	submitted map[int64]time.Time // request → when forced
	latency   []time.Duration     // request → first command started
	finished  chan store.Build
	// since, when set, times the next build's first command from it
	// instead of from its request (a webhook's arrival).
	since time.Time
}

func newWatcher() *watcher {
	return &watcher{reqOf: map[int64]int64{}, submitted: map[int64]time.Time{}, finished: make(chan store.Build, 100000)}
}

func (w *watcher) BuildStarted(b store.Build) {
	w.mu.Lock()
	w.reqOf[b.ID] = b.RequestID
	w.mu.Unlock()
}

func (w *watcher) StepChanged(int64, store.Step) {}

func (w *watcher) CommandStarted(buildID int64, s store.Step, _ string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	req := w.reqOf[buildID]
	if !w.since.IsZero() && s.Number == 0 {
		w.latency = append(w.latency, now.Sub(w.since))
		w.since = time.Time{}
		return
	}
	if t0, ok := w.submitted[req]; ok && s.Number == 0 {
		w.latency = append(w.latency, now.Sub(t0))
		delete(w.submitted, req)
	}
}

func (w *watcher) BuildFinished(b store.Build) { w.finished <- b }

type farm struct {
	m *master.Master
	w *watcher
}

// startFarm runs a master with cfg (builders and schedulers; workers
// w1..wN with password "pw" are added) and n connected worker agents.
func startFarm(b *testing.B, n int, cfg string) *farm {
	b.Helper()
	dir := b.TempDir()
	var sb strings.Builder
	sb.WriteString(`master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")` + "\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sb, "worker(%q, password=\"pw\")\n", fmt.Sprintf("w%d", i))
	}
	sb.WriteString(cfg)
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := newWatcher()
	m, err := master.New(master.Options{Basedir: dir, Logger: quiet, Observer: w})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	<-m.Ready()
	var agents sync.WaitGroup
	for i := 1; i <= n; i++ {
		a := &worker.Agent{Master: m.WorkerAddr(), Name: fmt.Sprintf("w%d", i), Password: "pw",
			Basedir: filepath.Join(dir, fmt.Sprintf("w%d", i)), Logger: quiet}
		agents.Add(1)
		go func() { defer agents.Done(); a.Run(ctx) }()
	}
	b.Cleanup(func() { cancel(); <-done; agents.Wait() })
	// Wait until every worker is attached.
	for {
		if len(m.WorkerStates()) == n {
			break
		}
		time.Sleep(5 * time.Millisecond) // a one-off setup wait, outside the timed part
	}
	return &farm{m: m, w: w}
}

func (f *farm) force(b *testing.B, builder string) {
	_, reqs, err := f.m.Force(context.Background(), webui.ForceRequest{Scheduler: "force", Builders: []string{builder}})
	if err != nil {
		b.Fatal(err)
	}
	_ = reqs
}

func (f *farm) forceTimed(b *testing.B, builder string) {
	// Record the submit time before the dispatcher can see the request.
	t0 := time.Now()
	_, reqs, err := f.m.Force(context.Background(), webui.ForceRequest{Scheduler: "force", Builders: []string{builder}})
	if err != nil {
		b.Fatal(err)
	}
	f.w.mu.Lock()
	for _, r := range reqs {
		f.w.submitted[r.ID] = t0
	}
	f.w.mu.Unlock()
}

func (f *farm) waitFinished(b *testing.B, n int) {
	for i := 0; i < n; i++ {
		select {
		case bd := <-f.w.finished:
			if bd.Results != 0 {
				b.Fatalf("build %d of %s: result %v (%s)", bd.Number, bd.BuilderName, bd.Results, bd.StateString)
			}
		case <-time.After(2 * time.Minute):
			b.Fatalf("only %d of %d builds finished", i, n)
		}
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

// BenchmarkRequestToCommand: a build forced for an idle connected worker,
// from the request to the worker accepting its first command. Target:
// p50 ≤ 2 ms, p99 ≤ 10 ms.
func BenchmarkRequestToCommand(b *testing.B) {
	f := startFarm(b, 1, `
builder("trivial", workers=["w1"], steps=[mkdir("out")])
force_scheduler("force", builders=["trivial"])
`)
	f.force(b, "trivial") // warm up
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

// reportLatency reports the percentiles of the latencies the watcher saw.
func (f *farm) reportLatency(b *testing.B) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	b.ReportMetric(float64(percentile(f.w.latency, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(f.w.latency, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkTrivialBuilds: trivial builds (one mkdir step) through 10
// workers. Target (with 50 workers): ≥ 500 builds/s.
func BenchmarkTrivialBuilds(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			var names []string
			for i := 1; i <= n; i++ {
				names = append(names, fmt.Sprintf("%q", fmt.Sprintf("w%d", i)))
			}
			f := startFarm(b, n, fmt.Sprintf(`
builder("trivial", workers=[%s], steps=[mkdir("out")])
force_scheduler("force", builders=["trivial"])
`, strings.Join(names, ", ")))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				f.force(b, "trivial")
			}
			f.waitFinished(b, b.N)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "builds/s")
		})
	}
}

// BenchmarkLogIngest: a step printing 64 MiB of 100-byte lines, from the
// worker through the master into the store. Target: ≥ 200 MB/s.
func BenchmarkLogIngest(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "out.txt")
	line := strings.Repeat("x", 99) + "\n"
	const size = 64 << 20
	fh, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	chunk := strings.Repeat(line, 10000)
	for written := 0; written < size; written += len(chunk) {
		fh.WriteString(chunk)
	}
	fh.Close()
	fi, _ := os.Stat(src)
	f := startFarm(b, 1, fmt.Sprintf(`
builder("log", workers=["w1"], steps=[shell(["cat", %q], log_environ=False)])
force_scheduler("force", builders=["log"])
`, src))
	b.SetBytes(fi.Size())
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.force(b, "log")
		f.waitFinished(b, 1)
	}
	b.ReportMetric(float64(fi.Size())*float64(b.N)/time.Since(start).Seconds()/1e6, "log-MB/s")
}
