package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStepLocks: two builders on two workers each have a step that takes
// the same master_lock(max_count=1). The second build's step waits, and
// its state says so, while the first's runs; both then succeed.
func TestStepLocks(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1")
worker("w2", password="pw2")
db = master_lock("db", max_count=1)
builder("first", workers=["w1"], steps=[
    shell("echo before", name="before"),
    shell("while [ ! -e `+gate+` ]; do sleep 0.05; done", name="migrate", locks=[db]),
])
builder("second", workers=["w2"], steps=[
    shell("echo unlocked", name="unlocked"),
    shell("echo got-the-lock", name="query", locks=[db.access("exclusive")]),
])
force_scheduler("force", builders=["first", "second"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"))
	if out, code := cli(t, "force", "--master", m.url, "first"); code != 0 {
		t.Fatalf("force first: %s", out)
	}
	// The first build's locked step runs.
	waitStep(t, m, "first", "migrate", func(s step) bool { return s.StateString == "running" })
	if out, code := cli(t, "force", "--master", m.url, "second"); code != 0 {
		t.Fatalf("force second: %s", out)
	}
	// The second build started (builder locks are not involved) and its
	// locked step waits.
	waitStep(t, m, "second", "query", func(s step) bool { return s.StateString == "waiting for lock db" })
	bs := m.builds(t, "second")
	if len(bs) != 1 || !strings.Contains(bs[0].StateString, "waiting for lock db") {
		t.Errorf("second build = %+v, want its state to say it waits for lock db", bs)
	}
	if st := m.steps(t, bs[0].ID); st[0].Results == nil || *st[0].Results != 0 {
		t.Errorf("the unlocked step did not run first: %+v", st)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=first.*result=success`, 30*time.Second)
	m.out.wait(t, `build finished.*builder=second.*result=success`, 30*time.Second)
	bs = m.builds(t, "second")
	st := m.steps(t, bs[0].ID)
	if len(st) != 2 || st[1].Results == nil || *st[1].Results != 0 {
		t.Fatalf("second's steps = %+v", st)
	}
	if got := m.stepLog(t, st[1].ID); !strings.Contains(got, "got-the-lock") {
		t.Errorf("query log = %q", got)
	}
}

// waitStep waits until the named step of the builder's latest build
// satisfies ok.
func waitStep(t *testing.T, m *master, builder, name string, ok func(step) bool) step {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []step
	for time.Now().Before(deadline) {
		if bs := m.builds(t, builder); len(bs) > 0 {
			last = m.steps(t, bs[0].ID)
			for _, s := range last {
				if s.Name == name && ok(s) {
					return s
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("step %s of %s never got there; steps: %+v\nmaster output:\n%s", name, builder, last, m.out)
	return step{}
}

// TestStepLockStopWhileWaiting: a build stopped while a step waits for a
// lock gives up its place: the step is skipped, the build is cancelled,
// and the lock is not leaked.
func TestStepLockStopWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1")
worker("w2", password="pw2")
db = master_lock("db")
builder("first", workers=["w1"], steps=[
    shell("while [ ! -e `+gate+` ]; do sleep 0.05; done", name="migrate", locks=[db]),
])
builder("second", workers=["w2"], steps=[
    shell("echo got-the-lock", name="query", locks=[db]),
    shell("echo cleanup", name="cleanup", always_run=True),
])
force_scheduler("force", builders=["first", "second"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"))
	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"))
	if out, code := cli(t, "force", "--master", m.url, "first"); code != 0 {
		t.Fatalf("force first: %s", out)
	}
	waitStep(t, m, "first", "migrate", func(s step) bool { return s.StateString == "running" })
	if out, code := cli(t, "force", "--master", m.url, "second"); code != 0 {
		t.Fatalf("force second: %s", out)
	}
	waitStep(t, m, "second", "query", func(s step) bool { return s.StateString == "waiting for lock db" })
	bs := m.builds(t, "second")
	if code := m.post(t, fmt.Sprintf("api/v2/builds/%d", bs[0].ID), `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"test stop"}}`); code != 200 {
		t.Fatalf("stop build: HTTP %d", code)
	}
	m.out.wait(t, `build finished.*builder=second.*result=cancelled`, 30*time.Second)
	st := m.steps(t, bs[0].ID)
	if len(st) != 2 || resultOf(st[0].Results) != 3 || st[0].StateString != "skipped: test stop" || resultOf(st[1].Results) != 0 {
		t.Fatalf("steps after the stop = %+v; want query skipped, cleanup run", st)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=first.*result=success`, 30*time.Second)
	if out, code := m.force(t, "second"); code != 0 || !strings.Contains(out, "success") {
		t.Fatalf("second again: exit %d:\n%s", code, out)
	}
}
