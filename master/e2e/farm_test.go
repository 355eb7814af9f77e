package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// farm is a master.star for fault tests: workers w1..wN and builders
// b01..bM running one shell step on all of them, on fixed ports so that
// workers find a restarted master.
type farm struct {
	basedir              string
	workers, builders    []string
	httpPort, workerPort int
}

func writeFarm(t *testing.T, dir, title string, workers, maxBuilds, builders int, step string) farm {
	t.Helper()
	f := farm{basedir: filepath.Join(dir, "master"), httpPort: freePort(t), workerPort: freePort(t)}
	if err := os.MkdirAll(f.basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "master(title=%q, http_addr=\"127.0.0.1:%d\", worker_addr=\"127.0.0.1:%d\")\n", title, f.httpPort, f.workerPort)
	for i := 1; i <= workers; i++ {
		n := fmt.Sprintf("w%02d", i)
		f.workers = append(f.workers, n)
		fmt.Fprintf(&cfg, "worker(%q, password=\"pw\", max_builds=%d)\n", n, maxBuilds)
	}
	for i := 1; i <= builders; i++ {
		n := fmt.Sprintf("b%02d", i)
		f.builders = append(f.builders, n)
		fmt.Fprintf(&cfg, "builder(%q, workers=%s, steps=[shell(%q, name=\"work\")])\n", n, starList(f.workers), step)
	}
	fmt.Fprintf(&cfg, "force_scheduler(\"force\", builders=%s)\n", starList(f.builders))
	if err := os.WriteFile(filepath.Join(f.basedir, "master.star"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// audit opens the stopped master's database and checks the promise of
// the fault tests: the database is sound, there are total requests, each
// completed SUCCESS with exactly one build that did not end RETRY, and no
// build is left running. It returns the number of builds and of RETRY
// builds.
func (f farm) audit(t *testing.T, total int) (builds, retries int) {
	t.Helper()
	st, err := store.Open(filepath.Join(f.basedir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	var reqs []store.BuildRequest
	for before := int64(0); ; {
		page, err := st.ListRequests(ctx, store.RequestFilter{Before: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		reqs = append(reqs, page...)
		before = page[len(page)-1].ID
	}
	if len(reqs) != total {
		t.Fatalf("%d requests, want %d", len(reqs), total)
	}
	for _, r := range reqs {
		if !r.Complete || r.Results != result.Success {
			t.Errorf("request %d of %s: complete=%v result %v", r.ID, r.BuilderName, r.Complete, r.Results)
		}
		bs, err := st.ListBuilds(ctx, store.BuildFilter{RequestID: r.ID})
		if err != nil {
			t.Fatal(err)
		}
		final := 0
		for _, b := range bs {
			builds++
			switch {
			case b.CompleteAt.IsZero():
				t.Errorf("build %d of request %d never ended", b.ID, r.ID)
			case b.Results == result.Retry:
				retries++
			case b.Results == result.Success:
				final++
			default:
				t.Errorf("build %d of request %d: %v (%s)", b.ID, r.ID, b.Results, b.StateString)
			}
		}
		if final != 1 {
			t.Errorf("request %d has %d builds that did not end RETRY, want exactly 1", r.ID, final)
			for _, b := range bs {
				t.Logf("  build %d on %s: %v %q, %s → %s", b.ID, b.WorkerName, b.Results, b.StateString,
					b.StartedAt.Format("15:04:05.000"), b.CompleteAt.Format("15:04:05.000"))
			}
		}
	}
	if builds != total+retries {
		t.Errorf("%d builds, want %d requests + %d retries", builds, total, retries)
	}
	return builds, retries
}

// starList writes names as a Starlark (and JSON) list of strings.
func starList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
