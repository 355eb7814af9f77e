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

// The benchmarks of the builders, console, grid and stats pages share a
// store shaped like a busy week: pagesBenchSets changes, each built by a
// buildset on every one of pagesBenchBuilders builders, one buildset a
// minute over the last 7 days: 100,000 requests, each claimed after a
// wait of up to a minute and built in 1 to 10 minutes. It takes about a
// minute to make, once per run of the test binary, in a directory
// TestMain removes.
const (
	pagesBenchBuilders = 10
	pagesBenchSets     = 10_000
)

var (
	pagesBenchOnce sync.Once
	pagesBenchDir  string
	pagesBenchSrv  http.Handler
	pagesBenchErr  error
)

// cleanupPagesBench removes the store of the pages' benchmarks.
func cleanupPagesBench() {
	if pagesBenchDir != "" {
		os.RemoveAll(pagesBenchDir)
	}
}

func pagesBenchServer(b *testing.B) http.Handler {
	b.Helper()
	pagesBenchOnce.Do(func() { pagesBenchErr = makePagesBenchStore() })
	if pagesBenchErr != nil {
		b.Fatal(pagesBenchErr)
	}
	return pagesBenchSrv
}

func makePagesBenchStore() error {
	ctx := context.Background()
	var err error
	if pagesBenchDir, err = os.MkdirTemp("", "webui-pages-bench-"); err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(pagesBenchDir, "state.sqlite"))
	if err != nil {
		return err
	}
	var builders, workers []int64
	for i := range pagesBenchBuilders {
		tags := []string{"bench", fmt.Sprintf("group-%d", i%3)}
		id, err := st.EnsureBuilder(ctx, store.Builder{Name: fmt.Sprintf("builder-%02d", i), Tags: tags})
		if err != nil {
			return err
		}
		builders = append(builders, id)
		w, err := st.EnsureWorker(ctx, fmt.Sprintf("worker-%02d", i))
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	now := time.Now()
	start := now.Add(-7*24*time.Hour + time.Hour)
	step := 7 * 24 * time.Hour / pagesBenchSets
	var changes []store.Change
	for i := range pagesBenchSets {
		changes = append(changes, store.Change{Author: fmt.Sprintf("dev%d <dev%d@example.org>", i%17, i%17),
			Comments: fmt.Sprintf("Change %d\n\nWith a body.", i), Branch: "main", Revision: fmt.Sprintf("%040x", i+1),
			Repository: "https://git.example.org/app.git", Files: []string{fmt.Sprintf("src/f%d.c", i%100)},
			When: start.Add(time.Duration(i) * step)})
	}
	var stored []store.Change
	for i := 0; i < len(changes); i += 1000 {
		cs, err := st.AddChanges(ctx, changes[i:min(i+1000, len(changes))])
		if err != nil {
			return err
		}
		stored = append(stored, cs...)
	}

	// Concurrent writers let the store batch many writes per transaction.
	const writers = 64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < pagesBenchSets; i += writers {
				c := stored[i]
				sub := c.When
				_, reqs, err := st.AddBuildset(ctx, store.NewBuildset{Reason: "bench", BuilderIDs: builders, ChangeIDs: []int64{c.ID},
					SourceStamps: []store.SourceStamp{{Repository: c.Repository, Branch: c.Branch, Revision: c.Revision}}, SubmittedAt: sub})
				if err != nil {
					errs <- err
					return
				}
				for k, rq := range reqs {
					claimed := sub.Add(time.Duration((i*7+k*13)%60) * time.Second)
					took := time.Duration(60+(i*31+k*17)%540) * time.Second
					res := result.Success
					switch (i + k) % 10 {
					case 0:
						res = result.Failure
					case 1:
						res = result.Warnings
					}
					latest := i >= pagesBenchSets-3 && k < 5 // a few still running
					if err := st.ClaimRequest(ctx, rq.ID, claimed); err != nil {
						errs <- err
						return
					}
					bd, err := st.AddBuild(ctx, store.NewBuild{BuilderID: builders[k], RequestID: rq.ID, WorkerID: workers[k], StartedAt: claimed})
					if err != nil {
						errs <- err
						return
					}
					if latest {
						continue
					}
					if err := st.FinishBuild(ctx, bd.ID, res, "build "+res.String(), claimed.Add(took)); err != nil {
						errs <- err
						return
					}
					if _, err := st.CompleteRequest(ctx, rq.ID, res, claimed.Add(took)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	last, err := st.ListBuilds(ctx, store.BuildFilter{Limit: 1})
	if err != nil {
		return err
	}
	if len(last) == 0 || last[0].ID < pagesBenchSets*pagesBenchBuilders {
		return fmt.Errorf("bench store holds too few builds: %v", last)
	}
	m := &fakeMaster{st: st}
	pagesBenchSrv = New(m, Options{}).Handler()
	return nil
}

// pagesBenchGet measures the server time of GET path on the pages' store.
func pagesBenchGet(b *testing.B, path string) {
	h := pagesBenchServer(b)
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

func BenchmarkBuildersPage(b *testing.B)       { pagesBenchGet(b, "/builders") }
func BenchmarkBuildersPageTagged(b *testing.B) { pagesBenchGet(b, "/builders?tag=group-1") }
func BenchmarkConsolePage(b *testing.B)        { pagesBenchGet(b, "/console") }
func BenchmarkConsolePage100(b *testing.B)     { pagesBenchGet(b, "/console?limit=100") }
func BenchmarkConsolePageDeep(b *testing.B)    { pagesBenchGet(b, "/console?before=1000") }
func BenchmarkGridPage(b *testing.B)           { pagesBenchGet(b, "/grid?hours=6") }
func BenchmarkGridPageHour(b *testing.B)       { pagesBenchGet(b, "/grid?hours=1") }
func BenchmarkStatsPage(b *testing.B)          { noStatsCache(b); pagesBenchGet(b, "/stats") }
func BenchmarkStatsPageCached(b *testing.B)    { pagesBenchGet(b, "/stats") }
func BenchmarkAPIStats(b *testing.B)           { noStatsCache(b); pagesBenchGet(b, "/api/v2/stats") }
func BenchmarkAPIStatsBuilder(b *testing.B) {
	noStatsCache(b)
	pagesBenchGet(b, "/api/v2/stats?builder=builder-03")
}

// noStatsCache makes the benchmark compute the statistics every time, as
// the first request after statsTTL does.
func noStatsCache(b *testing.B) {
	statsNoCache = true
	b.Cleanup(func() { statsNoCache = false })
}
func BenchmarkAPIBuildsFiltered(b *testing.B) {
	pagesBenchGet(b, "/api/v2/builds?results=2&limit=50&field=buildid,results,started_at")
}
func BenchmarkAPIBuildsRare(b *testing.B) {
	// A filter few builds pass reads its whole scan cap (5,000 rows).
	pagesBenchGet(b, "/api/v2/builds?state_string=never&limit=50")
}
func BenchmarkAPIBuildsOrdered(b *testing.B) {
	pagesBenchGet(b, "/api/v2/builders/builder-03/builds?order=number&buildid__gt=50000&limit=100")
}
func BenchmarkAPIChangesFiltered(b *testing.B) {
	pagesBenchGet(b, "/api/v2/changes?author__contains=dev3&limit=20")
}
func BenchmarkAPIRequestsFiltered(b *testing.B) {
	pagesBenchGet(b, "/api/v2/buildrequests?results__ne=0&limit=100")
}
