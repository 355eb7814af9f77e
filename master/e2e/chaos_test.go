package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
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
	f := writeFarm(t, dir, "chaos", workers, 4, builders, "sleep 0.3")
	basedir, wnames, bnames, workerPort := f.basedir, f.workers, f.builders, f.workerPort
	m := startMaster(t, basedir, "")
	var mu sync.Mutex // guards procs and m
	procs := map[string]*proc{}
	for _, n := range wnames {
		procs[n] = start(t, bin.worker, nil, "--master", m.workers, "--name", n, "--password", "pw", "--basedir", filepath.Join(dir, n))
	}
	m.waitAttached(t, wnames[len(wnames)-1], 1)

	// Queue everything at once, in batches of builders.
	for i := 0; i < total/builders; i++ {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":%s}}`, starList(bnames))
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

	builds, retries := f.audit(t, total)
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
