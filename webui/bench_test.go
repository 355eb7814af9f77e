package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// The benchmarks share one store of benchBuilds builds, made once per run
// of the test binary (about 10 s) in a directory TestMain removes.
const (
	benchBuilds   = 100_000
	benchBuilders = 10
	benchRunning  = 20
)

var (
	benchOnce sync.Once
	benchDir  string
	benchSrv  http.Handler
	benchPath struct{ builder, build string }
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	cleanupPagesBench()
	os.Exit(code)
}

// benchServer returns a handler over the shared 100,000-build store.
func benchServer(b *testing.B) http.Handler {
	b.Helper()
	benchOnce.Do(func() { benchErr = makeBenchStore() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

func makeBenchStore() error {
	ctx := context.Background()
	var err error
	if benchDir, err = os.MkdirTemp("", "webui-bench-"); err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(benchDir, "state.sqlite"))
	if err != nil {
		return err
	}
	var builders, workers []int64
	for i := range benchBuilders {
		id, err := st.EnsureBuilder(ctx, store.Builder{Name: fmt.Sprintf("builder-%02d", i), Tags: []string{"bench"}})
		if err != nil {
			return err
		}
		builders = append(builders, id)
		w, err := st.EnsureWorker(ctx, fmt.Sprintf("worker-%02d", i))
		if err != nil {
			return err
		}
		if err := st.SetWorkerConnected(ctx, w, true, map[string]any{"os": "linux", "numcpus": 2}, time.Now()); err != nil {
			return err
		}
		workers = append(workers, w)
	}

	// Concurrent writers let the store batch many builds per transaction.
	const writers = 64
	start := time.Now().Add(-benchBuilds * time.Second)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < benchBuilds-benchRunning; i += writers {
				k := i % benchBuilders
				at := start.Add(time.Duration(i) * time.Second)
				bd, err := st.AddBuild(ctx, store.NewBuild{BuilderID: builders[k], WorkerID: workers[k], StartedAt: at})
				if err == nil {
					err = st.FinishBuild(ctx, bd.ID, result.Result(i%7), "done", at.Add(90*time.Second))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	// Running builds with a few steps each, and a queue.
	var last store.Build
	for i := range benchRunning {
		k := i % benchBuilders
		bd, err := st.AddBuild(ctx, store.NewBuild{BuilderID: builders[k], WorkerID: workers[k]})
		if err != nil {
			return err
		}
		for n := 1; n <= 10; n++ {
			sp, err := st.AddStep(ctx, bd.ID, n, fmt.Sprintf("step-%d", n))
			if err != nil {
				return err
			}
			if n <= 5 {
				if err := st.StartStep(ctx, sp.ID, time.Now()); err != nil {
					return err
				}
				l, err := st.AddLog(ctx, sp.ID, "stdio", store.LogStdio)
				if err != nil {
					return err
				}
				if _, _, err := st.AppendLog(ctx, l.ID, []byte("ohello\n")); err != nil {
					return err
				}
			}
			if n < 5 {
				if err := st.FinishStep(ctx, sp.ID, result.Success, "ok", time.Now()); err != nil {
					return err
				}
			}
		}
		last = bd
	}
	for range 50 {
		if _, _, err := st.AddBuildset(ctx, store.NewBuildset{Reason: "bench", BuilderIDs: builders}); err != nil {
			return err
		}
	}
	if last.ID < benchBuilds {
		return fmt.Errorf("bench store holds %d builds, want %d", last.ID, benchBuilds)
	}
	benchPath.builder = fmt.Sprintf("/builders/%d", builders[0])
	benchPath.build = fmt.Sprintf("/builders/%d/builds/%d", last.BuilderID, last.Number)
	m := &fakeMaster{st: st, forces: []ForceScheduler{{Name: "force", Builders: []string{"builder-00"}}}}
	benchSrv = New(m, Options{}).Handler()
	return nil
}

// benchGet measures the server time of GET path: the handler called
// directly, without a network in between.
func benchGet(b *testing.B, path string) {
	h := benchServer(b)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: status %d: %s", path, w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}

func BenchmarkAPIBuilds(b *testing.B)        { benchGet(b, "/api/v2/builds?limit=50") }
func BenchmarkAPIBuildsRunning(b *testing.B) { benchGet(b, "/api/v2/builds?running=1") }
func BenchmarkAPIBuildsDeep(b *testing.B)    { benchGet(b, "/api/v2/builds?limit=50&before=1000") }
func BenchmarkAPIBuilderBuilds(b *testing.B) {
	benchGet(b, "/api/v2/builders/builder-03/builds?limit=50&before=5000")
}
func BenchmarkHomePage(b *testing.B) { benchGet(b, "/") }
func BenchmarkBuilderPage(b *testing.B) {
	benchServer(b)
	benchGet(b, benchPath.builder)
}
func BenchmarkBuildPage(b *testing.B) {
	benchServer(b)
	benchGet(b, benchPath.build)
}
func BenchmarkWorkersPage(b *testing.B) { benchGet(b, "/workers") }
