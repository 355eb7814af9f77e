package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
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
	f := writeFarm(t, dir, "crash", workers, builders, builders, "sleep 1")
	basedir, names, bnames := f.basedir, f.workers, f.builders
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

	_, retried := f.audit(t, builders*each)
	if retried == 0 {
		t.Error("no build was interrupted: the kill came too late to test anything")
	}
	t.Logf("%d builds interrupted by the kill ran again", retried)
}
