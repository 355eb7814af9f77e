package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// TestChaos runs 2,000 builds on 50 worker processes while workers are
// killed with SIGKILL at random and started again, and the master is
// killed once and restarted. At the end every request has exactly one
// build that did not end RETRY, and it succeeded; the other builds of a
// request are RETRY; nothing is still running; the counts add up.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 builds on 50 workers; not in -short")
	}
	const (
		workers  = 50
		builders = 10
		total    = 2000
	)
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	httpPort, workerPort := freePort(t), freePort(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "master(title=\"chaos\", http_addr=\"127.0.0.1:%d\", worker_addr=\"127.0.0.1:%d\")\n", httpPort, workerPort)
	var wnames, bnames []string
	for i := 1; i <= workers; i++ {
		n := fmt.Sprintf("w%02d", i)
		wnames = append(wnames, n)
		fmt.Fprintf(&cfg, "worker(%q, password=\"pw\", max_builds=4)\n", n)
	}
	for i := 1; i <= builders; i++ {
		n := fmt.Sprintf("b%02d", i)
		bnames = append(bnames, n)
		fmt.Fprintf(&cfg, "builder(%q, workers=%s, steps=[shell(\"sleep 0.3\", name=\"work\")])\n", n, starList(wnames))
	}
	fmt.Fprintf(&cfg, "force_scheduler(\"force\", builders=%s)\n", starList(bnames))
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	m := startMaster(t, basedir, "")
	var mu sync.Mutex // guards procs and m
	procs := map[string]*proc{}
	for _, n := range wnames {
		procs[n] = start(t, bin.worker, nil, "--master", m.workers, "--name", n, "--password", "pw", "--basedir", filepath.Join(dir, n))
	}
	m.waitAttached(t, wnames[len(wnames)-1], 1)

	// Queue everything at once, in batches of builders.
	for i := 0; i < total/builders; i++ {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":%s}}`, starJSON(bnames))
		if code := m.post(t, "api/v2/forceschedulers/force", body); code != 200 {
			t.Fatalf("force: HTTP %d", code)
		}
	}

	// Chaos: kill a random worker every 150 ms and start it again, for as
	// long as the builds run; kill the master once a third of the way.
	ctx, stopChaos := context.WithCancel(context.Background())
	chaosDone := make(chan int)
	go func() {
		kills := 0
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				chaosDone <- kills
				return
			case <-tick.C:
			}
			n := wnames[rng.IntN(len(wnames))]
			mu.Lock()
			procs[n].kill()
			procs[n] = start(t, bin.worker, nil, "--master", fmt.Sprintf("127.0.0.1:%d", workerPort), "--name", n, "--password", "pw", "--basedir", filepath.Join(dir, n))
			mu.Unlock()
			kills++
		}
	}()

	finished := func() (done int, pending, running int) {
		st := m.status(t)
		return st.done, st.pending, st.running
	}
	restarted := false
	deadline := time.Now().Add(8 * time.Minute)
	for {
		done, pending, running := finished()
		if !restarted && done >= total/3 {
			m.kill()
			m = startMaster(t, basedir, "")
			restarted = true
			continue
		}
		if restarted && pending == 0 && running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 8 minutes: %d requests done, %d pending, %d builds running", done, pending, running)
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopChaos()
	kills := <-chaosDone
	m.stop(t)

	st, err := store.Open(filepath.Join(basedir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bctx := context.Background()
	if err := st.IntegrityCheck(bctx); err != nil {
		t.Fatal(err)
	}
	var reqs []store.BuildRequest
	for before := int64(0); ; {
		page, err := st.ListRequests(bctx, store.RequestFilter{Before: before, Limit: 1000})
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
	builds, retries := 0, 0
	for _, r := range reqs {
		if !r.Complete || r.Results != result.Success {
			t.Errorf("request %d: complete=%v result %v", r.ID, r.Complete, r.Results)
		}
		bs, err := st.ListBuilds(bctx, store.BuildFilter{RequestID: r.ID})
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
		}
	}
	if builds != total+retries {
		t.Errorf("%d builds, want %d requests + %d retries", builds, total, retries)
	}
	if retries == 0 {
		t.Error("no build was interrupted: the chaos did nothing")
	}
	t.Logf("%d worker kills, 1 master kill: %d builds for %d requests, %d of them RETRY", kills, builds, total, retries)
}

type farmStatus struct{ done, pending, running int }

// status counts complete and pending requests and running builds through
// the API.
func (m *master) status(t *testing.T) farmStatus {
	t.Helper()
	var pending struct {
		Requests []struct{ ID int64 } `json:"buildrequests"`
	}
	m.getJSON(t, "api/v2/buildrequests?pending=1&limit=1000", &pending)
	var running struct {
		Builds []build `json:"builds"`
	}
	m.getJSON(t, "api/v2/builds?running=1&limit=1000", &running)
	var all struct {
		Builds []build `json:"builds"`
	}
	done := 0
	for before := int64(0); ; {
		q := "api/v2/builds?limit=1000"
		if before > 0 {
			q += fmt.Sprintf("&before=%d", before)
		}
		m.getJSON(t, q, &all)
		if len(all.Builds) == 0 {
			break
		}
		for _, b := range all.Builds {
			if b.Complete && resultOf(b.Results) == 0 {
				done++
			}
		}
		before = all.Builds[len(all.Builds)-1].ID
	}
	return farmStatus{done: done, pending: len(pending.Requests), running: len(running.Builds)}
}

// starJSON writes names as a JSON list of strings.
func starJSON(names []string) string { return starList(names) }
