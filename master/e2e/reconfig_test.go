package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReconfigWhileBuildsRun: `starforge reconfig` with an invalid file
// changes nothing and says why (and the API shows the error); with a valid
// one, the running build finishes with the configuration it started with,
// a removed builder's queued request is cancelled with a visible reason,
// and a worker whose password changed is disconnected and refused.
func TestReconfigWhileBuildsRun(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	gate := filepath.Join(dir, "gate")
	head := `master(title="e2e", http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")` + "\n"
	v1 := head + `
worker("w1", password="pw1")
worker("w2", password="pw2")
worker("w3", password="pw3")
builder("keep", workers=["w1"], steps=[shell("while [ ! -e ` + gate + ` ]; do sleep 0.05; done; echo old-steps")])
builder("gone", workers=["w3"], steps=[shell("echo never")])
force_scheduler("force", builders=["keep", "gone"])
`
	writeConfig := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(v1)
	m := startMaster(t, basedir, "")
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"))
	if out, code := cli(t, "force", "--master", m.url, "keep"); code != 0 {
		t.Fatalf("force keep: %s", out)
	}
	m.out.wait(t, `build started.*builder=keep`, 30*time.Second)
	// Someone follows the request that the reconfig will cancel.
	gone := make(chan [2]any, 1)
	go func() {
		out, code := cliNoFatal("force", "--master", m.url, "--wait", "gone")
		gone <- [2]any{out, code}
	}()
	var pending struct {
		Requests []struct{} `json:"buildrequests"`
	}
	for deadline := time.Now().Add(30 * time.Second); len(pending.Requests) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the request for gone was never queued")
		}
		m.getJSON(t, "api/v2/buildrequests?pending=1", &pending)
	}

	// An invalid file: nothing changes, the command says why.
	writeConfig(head + `
worker("w1", password="pw1")
builder("keep", workers=["w9"], steps=[shell("true")])
`)
	out, code := cli(t, "reconfig", "--basedir", basedir)
	if code != 1 || !strings.Contains(out, "master.star:4:8: builder \"keep\": workers: unknown worker") || !strings.Contains(out, `"w9"`) || !strings.Contains(out, "not changed") {
		t.Fatalf("reconfig of an invalid file: exit %d:\n%s", code, out)
	}
	var masters struct {
		Masters []struct {
			ReconfigError *string `json:"reconfig_error"`
			Summary       string  `json:"config_summary"`
		} `json:"masters"`
	}
	m.getJSON(t, "api/v2/masters", &masters)
	if e := masters.Masters[0].ReconfigError; e == nil || !strings.Contains(*e, `"w9"`) {
		t.Fatalf("API reconfig_error = %v", e)
	}
	if masters.Masters[0].Summary != "3 workers, 2 builders, 1 scheduler" {
		t.Fatalf("config after a refused reconfig: %q", masters.Masters[0].Summary)
	}

	// A valid file: builder "gone" removed, w2's password changed, keep's
	// steps changed.
	writeConfig(head + `
worker("w1", password="pw1")
worker("w2", password="pw2-new")
builder("keep", workers=["w1"], steps=[shell("echo new-steps")])
force_scheduler("force", builders=["keep"])
`)
	out, code = cli(t, "reconfig", "--basedir", basedir)
	if code != 0 || !strings.Contains(out, "cancelled 1 pending request") || !strings.Contains(out, "disconnected w2") {
		t.Fatalf("reconfig: exit %d:\n%s", code, out)
	}
	m.out.wait(t, `worker detached.*worker=w2.*password changed`, 30*time.Second)
	m.out.wait(t, `refused worker connection: wrong name or password.*worker=w2`, 30*time.Second)

	var reqs struct {
		Requests []struct {
			BuilderID    int64   `json:"builderid"`
			Complete     bool    `json:"complete"`
			Results      *int    `json:"results"`
			CancelReason *string `json:"cancel_reason"`
		} `json:"buildrequests"`
	}
	m.getJSON(t, "api/v2/buildrequests", &reqs)
	cancelled := 0
	for _, r := range reqs.Requests {
		if r.CancelReason != nil {
			cancelled++
			if !r.Complete || resultOf(r.Results) != 6 || !strings.Contains(*r.CancelReason, "builder gone was removed from the configuration") {
				t.Errorf("cancelled request: %+v reason %q", r, *r.CancelReason)
			}
		}
	}
	if cancelled != 1 {
		t.Fatalf("%d cancelled requests, want 1: %+v", cancelled, reqs.Requests)
	}
	r := <-gone
	if out, code := r[0].(string), r[1].(int); code != 1 || !strings.Contains(out, "ended cancelled without a build of its own: builder gone was removed") {
		t.Fatalf("force --wait of the cancelled request: exit %d:\n%s", code, out)
	}

	// The running build ends with the steps it started with.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=keep.*result=success`, 30*time.Second)
	first := m.builds(t, "keep")[0]
	if log := m.stepLog(t, m.steps(t, first.ID)[0].ID); !strings.Contains(log, "old-steps") {
		t.Fatalf("the running build did not keep its configuration: %q", log)
	}
	// A new build uses the new configuration.
	out, code = m.force(t, "keep")
	if code != 0 {
		t.Fatalf("force after reconfig: %s", out)
	}
	second := m.builds(t, "keep")[0]
	if log := m.stepLog(t, m.steps(t, second.ID)[0].ID); !strings.Contains(log, "new-steps") {
		t.Fatalf("a new build did not use the new configuration: %q", log)
	}
	m.getJSON(t, "api/v2/masters", &masters)
	if masters.Masters[0].Summary != "2 workers, 1 builder, 1 scheduler" {
		t.Fatalf("summary after reconfig = %q", masters.Masters[0].Summary)
	}
}

// TestReconfigWithoutMaster: no master in the basedir → exit 3, saying so.
func TestReconfigWithoutMaster(t *testing.T) {
	out, code := cli(t, "reconfig", "--basedir", t.TempDir())
	if code != 3 || !strings.Contains(out, "no master is running there") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
