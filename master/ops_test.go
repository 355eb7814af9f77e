package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

const opsConfig = `master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")
worker("w1", "pw")
worker("w2", "pw")
builder("unit", workers = ["w1"], steps = [shell("true")])
builder("lint", workers = ["w1"], steps = [shell("true")])
builder("docs", workers = ["w2"], steps = [shell("true")])
builder("nightly", workers = ["w2"], steps = [shell("true")])
force_scheduler("force", builders = ["unit", "lint", "docs", "nightly"])
try_scheduler("try", builders = ["unit", "lint"])
try_scheduler("try-docs", builders = ["docs"])
`

// runMaster runs a master on basedir dir (master.star already there)
// until the test ends or the returned stop is called. No worker connects,
// so what is queued stays queued.
func runMaster(t *testing.T, dir string) (*Master, func()) {
	t.Helper()
	m, err := New(Options{Basedir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	}
	return m, stop
}

func httpStatus(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus()
	}
	return 0
}

// queueReason returns the dispatcher's reason for request id, after every
// event sent before.
func queueReason(t *testing.T, m *Master, id int64) (string, bool) {
	t.Helper()
	snap, err := m.disp.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range snap.Pending {
		if r.ID == id {
			return snap.Reasons[id], true
		}
	}
	return "", false
}

func force(t *testing.T, m *Master, builder string) store.BuildRequest {
	t.Helper()
	_, reqs, err := m.Force(context.Background(), webui.ForceRequest{Scheduler: "force", Builders: []string{builder}, Properties: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return reqs[0]
}

func TestCancelRequest(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	ctx := context.Background()
	r := force(t, m, "unit")
	if _, ok := queueReason(t, m, r.ID); !ok {
		t.Fatal("the forced request is not queued")
	}
	if err := m.CancelRequest(ctx, r.ID, "not needed"); err != nil {
		t.Fatal(err)
	}
	got, err := m.store.GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete || got.Results != result.Cancelled || got.CancelReason != "not needed" {
		t.Errorf("request after cancel: %+v", got)
	}
	if _, ok := queueReason(t, m, r.ID); ok {
		t.Error("the cancelled request is still in the dispatcher's queue")
	}

	// Again: it is complete.
	err = m.CancelRequest(ctx, r.ID, "")
	if httpStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "already complete (cancelled)") {
		t.Errorf("cancel twice: %v", err)
	}
	if err := m.CancelRequest(ctx, 999, ""); httpStatus(err) != http.StatusNotFound {
		t.Errorf("cancel 999: %v", err)
	}

	// A claimed request: the error names the build to stop.
	r2 := force(t, m, "docs")
	if err := m.store.ClaimRequest(ctx, r2.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := m.store.AddBuild(ctx, store.NewBuild{BuilderID: r2.BuilderID, RequestID: r2.ID})
	if err != nil {
		t.Fatal(err)
	}
	err = m.CancelRequest(ctx, r2.ID, "")
	if httpStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "docs #1") || !strings.Contains(err.Error(), "stop the build instead") {
		t.Errorf("cancel a claimed request: %v (build %d)", err, b.ID)
	}
}

func TestRebuild(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	ctx := context.Background()
	changes, err := m.store.AddChanges(ctx, []store.Change{{Author: "bob", Revision: "r1", Branch: "main", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	unit, err := m.store.GetBuilderByName(ctx, "unit")
	if err != nil {
		t.Fatal(err)
	}
	patch := &store.Patch{Level: 1, Body: []byte("--- a/x\n+++ b/x\n"), Author: "alice", Comment: "c"}
	_, reqs, err := m.store.AddBuildset(ctx, store.NewBuildset{
		Reason:       "original",
		Properties:   map[string]store.Property{"owner": {Value: "alice", Source: "Try"}, "extra": {Value: int64(7), Source: "Test"}},
		SourceStamps: []store.SourceStamp{{Repository: "repo", Branch: "main", Revision: "r1", Patch: patch}},
		BuilderIDs:   []int64{unit.ID},
		Priority:     3,
		ChangeIDs:    []int64{changes[0].ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.disp.Remove(reqs[0].ID) // the dispatcher never heard of it: built by hand below
	if err := m.store.ClaimRequest(ctx, reqs[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	old, err := m.store.AddBuild(ctx, store.NewBuild{BuilderID: unit.ID, RequestID: reqs[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.store.FinishBuild(ctx, old.ID, result.Failure, "failed", time.Now()); err != nil {
		t.Fatal(err)
	}

	bs, nreqs, err := m.Rebuild(ctx, old.ID, "carol")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.store.GetBuildset(ctx, bs.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != "rebuild of unit #1" {
		t.Errorf("reason %q", got.Reason)
	}
	if p := got.Properties; p["owner"].Value != "carol" || p["extra"].Value != int64(7) {
		t.Errorf("properties %v", p)
	}
	if len(got.SourceStamps) != 1 {
		t.Fatalf("source stamps %+v", got.SourceStamps)
	}
	ss := got.SourceStamps[0]
	if ss.Revision != "r1" || ss.Branch != "main" || ss.Repository != "repo" || ss.Patch == nil ||
		string(ss.Patch.Body) != string(patch.Body) || ss.Patch.Author != "alice" || ss.Patch.Level != 1 {
		t.Errorf("source stamp %+v patch %+v", ss, ss.Patch)
	}
	cs, err := m.store.BuildsetChanges(ctx, bs.ID)
	if err != nil || len(cs) != 1 || cs[0].ID != changes[0].ID {
		t.Errorf("changes %v, %v", cs, err)
	}
	if len(nreqs) != 1 || nreqs[0].BuilderName != "unit" || nreqs[0].Priority != 3 {
		t.Errorf("requests %+v", nreqs)
	}
	if _, ok := queueReason(t, m, nreqs[0].ID); !ok {
		t.Error("the rebuild is not queued")
	}
	if _, _, err := m.Rebuild(ctx, 999, "x"); httpStatus(err) != http.StatusNotFound {
		t.Errorf("rebuild 999: %v", err)
	}
}

// TestPauseWorker: the pause is stored, shown as the queue's reason and
// in the worker states, and outlives a restart.
func TestPauseWorker(t *testing.T) {
	dir := writeConfig(t, opsConfig)
	m, stop := runMaster(t, dir)
	ctx := context.Background()
	if err := m.PauseWorker(ctx, "w2", "disk full"); err != nil {
		t.Fatal(err)
	}
	if err := m.PauseWorker(ctx, "nope", ""); httpStatus(err) != http.StatusNotFound {
		t.Errorf("pause nope: %v", err)
	}
	m.disp.Attached("w2") // as if it connected: still no build for it
	r := force(t, m, "docs")
	if why, _ := queueReason(t, m, r.ID); why != "worker w2 paused: disk full" {
		t.Errorf("reason %q", why)
	}
	states := map[string]webui.WorkerState{"w2": {Connected: true}}
	m.addPauses(ctx, states)
	if st := states["w2"]; !st.Connected || !st.Paused || st.PauseReason != "disk full" {
		t.Errorf("worker state %+v", st)
	}
	stop()

	m, _ = runMaster(t, dir)
	m.disp.Attached("w2")
	if why, ok := queueReason(t, m, r.ID); !ok || why != "worker w2 paused: disk full" {
		t.Errorf("after a restart: reason %q (queued %v)", why, ok)
	}
	if err := m.UnpauseWorker(ctx, "w2", "disk cleaned"); err != nil {
		t.Fatal(err)
	}
	w, err := m.store.GetWorkerByName(ctx, "w2")
	if err != nil || w.Paused || w.PauseReason != "" {
		t.Errorf("stored worker after unpause: %+v, %v", w, err)
	}
	if why, _ := queueReason(t, m, r.ID); strings.Contains(why, "paused") {
		t.Errorf("reason after unpause: %q", why)
	}
}

func TestTry(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	ctx := context.Background()
	diff := []byte("diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n")
	ok := TryRequest{Builders: []string{"unit", "lint"}, BaseRev: "abc", Branch: "main", Patch: diff, PatchLevel: 1,
		Who: "alice", Comment: "fix the test\nlonger text", Properties: map[string]string{"ticket": "42"}}
	bs, reqs, err := m.Try(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.store.GetBuildset(ctx, bs.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != "try by 'alice': fix the test" {
		t.Errorf("reason %q", got.Reason)
	}
	if p := got.Properties; p["scheduler"].Value != "try" || p["owner"].Value != "alice" || p["ticket"].Value != "42" {
		t.Errorf("properties %v", p)
	}
	ss := got.SourceStamps[0]
	if ss.Revision != "abc" || ss.Branch != "main" || ss.Patch == nil || string(ss.Patch.Body) != string(diff) ||
		ss.Patch.Level != 1 || ss.Patch.Author != "alice" || ss.Patch.Comment != ok.Comment {
		t.Errorf("source stamp %+v patch %+v", ss, ss.Patch)
	}
	if len(reqs) != 2 {
		t.Errorf("requests %+v", reqs)
	}

	with := func(f func(*TryRequest)) TryRequest {
		r := ok
		f(&r)
		return r
	}
	tests := []struct {
		name   string
		req    TryRequest
		status int
		msg    string
	}{
		{"no builders", with(func(r *TryRequest) { r.Builders = nil }), 400, "name at least one builder"},
		{"twice", with(func(r *TryRequest) { r.Builders = []string{"unit", "unit"} }), 400, `"unit" is listed twice`},
		{"unknown", with(func(r *TryRequest) { r.Builders = []string{"unti"} }), 404, `no builder named "unti"`},
		{"not a try builder", with(func(r *TryRequest) { r.Builders = []string{"nightly"} }), 403, "no try_scheduler lists it"},
		{"two schedulers", with(func(r *TryRequest) { r.Builders = []string{"unit", "docs"} }), 403, "no single try_scheduler"},
		{"empty patch", with(func(r *TryRequest) { r.Patch = []byte(" \n") }), 400, "the patch is empty"},
		{"not a diff", with(func(r *TryRequest) { r.Patch = []byte("hello\n") }), 400, "not a unified diff"},
		{"NUL", with(func(r *TryRequest) { r.Patch = []byte("--- a\n+++ b\n\x00") }), 400, "NUL"},
		{"level", with(func(r *TryRequest) { r.PatchLevel = -1 }), 400, "want 0 or more"},
		{"prop name", with(func(r *TryRequest) { r.Properties = map[string]string{"a b": "x"} }), 400, `property name "a b"`},
		{"reserved prop", with(func(r *TryRequest) { r.Properties = map[string]string{"owner": "x"} }), 400, "set by the try job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := m.Try(ctx, tt.req)
			if httpStatus(err) != tt.status || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v (status %d), want %d with %q", err, httpStatus(err), tt.status, tt.msg)
			}
		})
	}
}

// TestCheckPatch accepts what diff -u and git diff make.
func TestCheckPatch(t *testing.T) {
	for _, p := range []string{
		"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n",
		"Some mail text\n\ndiff --git a/old b/new\nsimilarity index 100%\nrename from old\nrename to new\n",
	} {
		if err := checkPatch([]byte(p)); err != nil {
			t.Errorf("checkPatch(%q) = %v", p, err)
		}
	}
	if err := checkPatch(make([]byte, MaxPatchSize+1)); err == nil {
		t.Error("a patch over the limit was accepted")
	}
}

func TestSSHAddrUnset(t *testing.T) {
	m, _ := runMaster(t, writeConfig(t, opsConfig))
	if m.SSHAddr() != "" {
		t.Errorf("SSHAddr = %q without ssh_addr", m.SSHAddr())
	}
	if _, err := os.Stat(filepath.Join(m.opts.Basedir, "ssh_host_ed25519_key")); err == nil {
		t.Error("a host key was made although ssh_addr is not set")
	}
}
