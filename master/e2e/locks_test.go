package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMasterLockInConfig: two builders on two workers share a master_lock
// of one; the second waits, the queue says for what, and it runs once the
// first releases the lock.
func TestMasterLockInConfig(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1")
worker("w2", password="pw2")
db = master_lock("db", max_count=1)
builder("first", workers=["w1"], locks=[db], steps=[shell("while [ ! -e `+gate+` ]; do sleep 0.05; done")])
builder("second", workers=["w2"], locks=[db.access("counting")], steps=[shell("echo got-the-lock")])
force_scheduler("force", builders=["first", "second"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"))
	if out, code := cli(t, "force", "--master", m.url, "first"); code != 0 {
		t.Fatalf("force first: %s", out)
	}
	m.out.wait(t, `build started.*builder=first`, 30*time.Second)
	if out, code := cli(t, "force", "--master", m.url, "second"); code != 0 {
		t.Fatalf("force second: %s", out)
	}
	var q struct {
		Requests []struct {
			WaitingReason *string `json:"waiting_reason"`
		} `json:"buildrequests"`
	}
	m.getJSON(t, "api/v2/buildrequests?pending=1", &q)
	if len(q.Requests) != 1 || q.Requests[0].WaitingReason == nil || *q.Requests[0].WaitingReason != "waiting for lock db" {
		t.Fatalf("pending = %+v, want one waiting for lock db", q.Requests)
	}
	if strings.Contains(m.out.String(), "builder=second") {
		t.Fatal("second started while first held the lock")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=second.*result=success`, 30*time.Second)
}
