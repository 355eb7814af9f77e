package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// TestMasterKilledWith200Builds kills the master with SIGKILL while 200
// builds run or wait, and starts it again: every request completes with a
// real result (the interrupted builds are visibly RETRY and run again), no
// build stays running, and the database passes integrity_check.
func TestMasterKilledWith200Builds(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a master with 200 builds; not in -short")
	}
	const (
		workers  = 5
		builders = 20
		each     = 10 // requests per builder
	)
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fixed ports, so that the workers find the restarted master.
	httpPort, workerPort := freePort(t), freePort(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "master(title=\"crash\", http_addr=\"127.0.0.1:%d\", worker_addr=\"127.0.0.1:%d\")\n", httpPort, workerPort)
	var names, bnames []string
	for i := 1; i <= workers; i++ {
		n := fmt.Sprintf("w%d", i)
		names = append(names, n)
		fmt.Fprintf(&cfg, "worker(%q, password=\"pw\", max_builds=%d)\n", n, builders)
	}
	for i := 1; i <= builders; i++ {
		n := fmt.Sprintf("b%02d", i)
		bnames = append(bnames, n)
		fmt.Fprintf(&cfg, "builder(%q, workers=%s, steps=[shell(\"sleep 1\", name=\"work\")])\n", n, starList(names))
	}
	fmt.Fprintf(&cfg, "force_scheduler(\"force\", builders=%s)\n", starList(bnames))
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	m := startMaster(t, basedir, "")
	for _, n := range names {
		m.startWorker(t, n, "pw", filepath.Join(dir, n))
	}
	for _, b := range bnames {
		for range each {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":[%q]}}`, b)
			if code := m.post(t, "api/v2/forceschedulers/force", body); code != 200 {
				t.Fatalf("force %s: HTTP %d", b, code)
			}
		}
	}
	// Kill it while many builds run and the rest wait.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var r struct {
			Builds []build `json:"builds"`
		}
		m.getJSON(t, "api/v2/builds?running=1&limit=1000", &r)
		if len(r.Builds) >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d builds running after 60s", len(r.Builds))
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.kill()

	m = startMaster(t, basedir, "")
	// The workers reconnect by themselves, with backoff.
	for _, n := range names {
		m.waitAttached(t, n, 1)
	}
	deadline = time.Now().Add(5 * time.Minute)
	for {
		var pending struct {
			Requests []struct{ ID int64 } `json:"buildrequests"`
		}
		m.getJSON(t, "api/v2/buildrequests?pending=1&limit=1000", &pending)
		var running struct {
			Builds []build `json:"builds"`
		}
		m.getJSON(t, "api/v2/builds?running=1&limit=1000", &running)
		if len(pending.Requests) == 0 && len(running.Builds) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 minutes, %d requests pending and %d builds running", len(pending.Requests), len(running.Builds))
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.stop(t)

	st, err := store.Open(filepath.Join(basedir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	reqs, err := st.ListRequests(ctx, store.RequestFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != builders*each {
		t.Fatalf("%d requests, want %d", len(reqs), builders*each)
	}
	retried := 0
	for _, r := range reqs {
		if !r.Complete || r.Results != result.Success {
			t.Errorf("request %d of %s: complete=%v result %v", r.ID, r.BuilderName, r.Complete, r.Results)
			continue
		}
		builds, err := st.ListBuilds(ctx, store.BuildFilter{RequestID: r.ID})
		if err != nil {
			t.Fatal(err)
		}
		var ok int
		for _, b := range builds {
			switch {
			case b.CompleteAt.IsZero():
				t.Errorf("build %d of request %d is still running", b.ID, r.ID)
			case b.Results == result.Success:
				ok++
			case b.Results == result.Retry:
				retried++
			default:
				t.Errorf("build %d of request %d: %v (%s)", b.ID, r.ID, b.Results, b.StateString)
			}
		}
		if ok != 1 {
			t.Errorf("request %d has %d successful builds, want exactly 1", r.ID, ok)
		}
	}
	if retried == 0 {
		t.Error("no build was interrupted: the kill came too late to test anything")
	}
	t.Logf("%d builds interrupted by the kill ran again", retried)
}

// starList writes names as a Starlark list of strings.
func starList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
