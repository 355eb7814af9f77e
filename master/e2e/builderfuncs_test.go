package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNextWorkerByProperty: next_worker picks the worker whose properties
// fit, although the default would pick the first idle one; can_start
// keeps the builder off a worker.
func TestNextWorkerByProperty(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1", properties={"gpu": False})
worker("w2", password="pw2", properties={"gpu": True})
worker("w3", password="pw3", properties={"gpu": True})

def gpu_first(builder, workers, request):
    for w in reversed(workers):  # w3 first, but can_start refuses it
        if w.properties["gpu"]:
            return w
    return None

def not_w3(builder, worker, request):
    return worker.name != "w3"

builder("render", workers=["w1", "w2", "w3"], steps=[shell("echo drawing")],
        next_worker=gpu_first, can_start=not_w3)
force_scheduler("force", builders=["render"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	m.startWorker(t, "w3", "pw3", filepath.Join(dir, "w3"))
	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"))
	for i := range 2 {
		out, code := m.force(t, "render")
		if code != 0 {
			t.Fatalf("force %d: exit %d:\n%s", i, code, out)
		}
	}
	bs := m.builds(t, "render")
	if len(bs) != 2 {
		t.Fatalf("builds = %+v", bs)
	}
	for _, b := range bs {
		if b.WorkerName != "w2" || b.Results == nil || *b.Results != 0 {
			t.Errorf("build %+v: want a success on w2", b)
		}
	}
}

// TestCollapseRequests: with collapse_requests=True, a build that starts
// completes the builder's other pending requests for the same sources as
// SKIPPED; a collapse function decides otherwise for another builder.
func TestCollapseRequests(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1")
builder("proj", workers=["w1"], collapse_requests=True,
        steps=[shell("while [ ! -e `+gate+` ]; do sleep 0.05; done")])
force_scheduler("force", builders=["proj"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	for i := range 4 {
		if out, code := cli(t, "force", "--master", m.url, "proj"); code != 0 {
			t.Fatalf("force %d: %s", i, out)
		}
		if i == 0 {
			m.out.wait(t, `build started.*builder=proj`, 30*time.Second)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `collapsed requests into the build`, 30*time.Second)
	m.out.wait(t, `build finished.*builder=proj.*number=2`, 30*time.Second)
	var q struct {
		Requests []struct {
			ID           int64   `json:"buildrequestid"`
			Complete     bool    `json:"complete"`
			Results      *int    `json:"results"`
			CancelReason *string `json:"cancel_reason"`
		} `json:"buildrequests"`
	}
	m.getJSON(t, "api/v2/buildrequests", &q)
	if len(q.Requests) != 4 {
		t.Fatalf("requests = %+v", q.Requests)
	}
	// Newest first: 4 and 3 were collapsed into build 2 (request 2).
	for _, r := range q.Requests[:2] {
		if !r.Complete || r.Results == nil || *r.Results != 3 || r.CancelReason == nil || *r.CancelReason != "collapsed into build 2" {
			t.Errorf("request %d = %+v, want SKIPPED, collapsed into build 2", r.ID, r)
		}
	}
	if bs := m.builds(t, "proj"); len(bs) != 2 {
		t.Errorf("builds = %+v, want 2", bs)
	}
}
