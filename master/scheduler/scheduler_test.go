package scheduler

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// fakeQueue records the requests a Manager queues.
type fakeQueue struct{ ch chan []store.BuildRequest }

func (q *fakeQueue) Add(reqs ...store.BuildRequest) { q.ch <- reqs }

// env is a Manager on a real SQLite store with a fake clock, restartable.
type env struct {
	t    *testing.T
	dir  string
	path string // the database
	st   *store.Store
	clk  *clock.Fake
	q    *fakeQueue
	cfg  *config.Config

	timers chan struct{} // a timer's event was handled

	mu     sync.Mutex
	m      *Manager // the running one, for the store's completion hook
	cancel context.CancelFunc
	done   chan error
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const preamble = `
worker("w", "p")
builder("b", ["w"], [shell("make")])
builder("c", ["w"], [shell("make c")])
`

func newEnv(t *testing.T, src string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: clock.NewFake(t0), q: &fakeQueue{ch: make(chan []store.BuildRequest, 100)},
		timers: make(chan struct{}, 100)}
	e.path = filepath.Join(e.dir, "state.sqlite")
	e.open()
	e.cfg = e.load(src)
	for _, b := range e.cfg.Builders {
		if _, err := e.st.EnsureBuilder(context.Background(), store.Builder{Name: b.Name}); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	t.Cleanup(func() {
		e.stop()
		e.st.Close()
	})
	return e
}

func (e *env) open() {
	st, err := store.Open(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	st.OnBuildsetComplete(func(id int64, r result.Result) {
		e.mu.Lock()
		m := e.m
		e.mu.Unlock()
		if m != nil {
			m.BuildsetComplete(id, r)
		}
	})
	e.st = st
}

func (e *env) load(src string) *config.Config {
	e.t.Helper()
	file := filepath.Join(e.dir, "master.star")
	if err := os.WriteFile(file, []byte(preamble+src), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

func (e *env) start() {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m := New(Options{Store: e.st, Queue: e.q, Clock: e.clk, Logger: log})
	m.timerDone = func() {
		select {
		case e.timers <- struct{}{}:
		default:
		}
	}
	m.SetConfig(e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e.mu.Lock()
	e.m, e.cancel, e.done = m, cancel, done
	e.mu.Unlock()
	e.flush()
}

func (e *env) stop() {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.m, e.cancel = nil, nil
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	if err := <-done; err != nil {
		e.t.Errorf("Run: %v", err)
	}
}

// restart stops the Manager, reopens the store and starts a new Manager,
// as a master restart does.
func (e *env) restart() {
	e.stop()
	e.st.Close()
	e.open()
	e.start()
}

func (e *env) manager() *Manager {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m
}

func (e *env) flush() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.manager().flush(ctx); err != nil {
		e.t.Fatal("scheduler did not become idle:", err)
	}
}

func (e *env) reconfig(src string) {
	e.cfg = e.load(src)
	e.manager().SetConfig(e.cfg)
	e.flush()
}

// store adds changes without telling the Manager.
func (e *env) store(cs ...store.Change) []store.Change {
	e.t.Helper()
	out, err := e.st.AddChanges(context.Background(), cs)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// change adds changes and tells the Manager, which handles them.
func (e *env) change(cs ...store.Change) []store.Change {
	e.t.Helper()
	out := e.store(cs...)
	e.manager().ChangesAdded(out)
	e.flush()
	return out
}

func (e *env) advance(d time.Duration) {
	e.clk.Advance(d)
}

// fired waits until the Manager has handled a timer that fired.
func (e *env) fired() {
	e.t.Helper()
	select {
	case <-e.timers:
	case <-time.After(10 * time.Second):
		e.t.Fatal("no timer fired")
	}
}

type built struct {
	bs      store.Buildset
	reqs    []store.BuildRequest
	changes []int64
}

// next waits for the next buildset queued.
func (e *env) next() built {
	e.t.Helper()
	select {
	case reqs := <-e.q.ch:
		ctx := context.Background()
		bs, err := e.st.GetBuildset(ctx, reqs[0].BuildsetID)
		if err != nil {
			e.t.Fatal(err)
		}
		cs, err := e.st.BuildsetChanges(ctx, bs.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		var ids []int64
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		return built{bs, reqs, ids}
	case <-time.After(10 * time.Second):
		e.t.Fatal("no buildset was queued")
	}
	return built{}
}

// none checks that nothing was queued once the Manager is idle.
func (e *env) none() {
	e.t.Helper()
	e.flush()
	select {
	case reqs := <-e.q.ch:
		bs, _ := e.st.GetBuildset(context.Background(), reqs[0].BuildsetID)
		e.t.Fatalf("unexpected buildset %d: %s", bs.ID, bs.Reason)
	default:
	}
}

func (e *env) status(name string) Status {
	e.t.Helper()
	e.flush()
	for _, s := range e.manager().Status() {
		if s.Name == name {
			return s
		}
	}
	e.t.Fatalf("no status for %s", name)
	return Status{}
}

// complete completes every request of buildset bs with r.
func (e *env) complete(b built, r result.Result) {
	e.t.Helper()
	for _, req := range b.reqs {
		if _, err := e.st.CompleteRequest(context.Background(), req.ID, r, time.Time{}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func ids(cs ...store.Change) []int64 {
	var out []int64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func onMain(rev string, files ...string) store.Change {
	return store.Change{Branch: "main", Revision: rev, Repository: "https://git.example/r", Project: "p",
		Author: "A <a@example.org>", Files: files}
}

func onBranch(branch, rev string, files ...string) store.Change {
	c := onMain(rev, files...)
	c.Branch = branch
	return c
}

func wantChanges(t *testing.T, b built, want []int64) {
	t.Helper()
	if !slices.Equal(b.changes, want) {
		t.Fatalf("buildset %d builds changes %v, want %v", b.bs.ID, b.changes, want)
	}
}

func TestOneBuildsetPerChange(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b", "c"], branch = "main", priority = 3)`)
	c := e.change(onMain("r1", "a.go"))
	b := e.next()
	wantChanges(t, b, ids(c...))
	if len(b.reqs) != 2 || b.reqs[0].BuilderName != "b" || b.reqs[1].BuilderName != "c" || b.reqs[0].Priority != 3 {
		t.Errorf("requests %+v", b.reqs)
	}
	ss := b.bs.SourceStamps
	if len(ss) != 1 || ss[0].Revision != "r1" || ss[0].Branch != "main" || ss[0].Repository != "https://git.example/r" || ss[0].Project != "p" {
		t.Errorf("source stamps %+v", ss)
	}
	if p := b.bs.Properties["scheduler"]; p.Value != "main" || p.Source != "Scheduler" {
		t.Errorf("scheduler property %+v", p)
	}
	if b.bs.Reason != "The SingleBranchScheduler 'main' triggered this build" {
		t.Errorf("reason %q", b.bs.Reason)
	}

	e.change(onBranch("dev", "d1"))
	e.none()

	// Two changes at once: two buildsets, in order.
	cs := e.change(onMain("r2"), onBranch("dev", "d2"), onMain("r3"))
	wantChanges(t, e.next(), ids(cs[0]))
	wantChanges(t, e.next(), ids(cs[2]))
	e.none()
	if kept, _ := e.st.SchedulerChanges(context.Background(), "main"); len(kept) != 0 {
		t.Errorf("changes still kept: %v", kept)
	}
}

func TestChangePropertiesReachTheBuildset(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	c1 := onMain("r1")
	c1.Properties = map[string]store.Property{"x": {Value: "old", Source: "Change"}, "y": {Value: "y", Source: "Change"}}
	c2 := onMain("r2")
	c2.Properties = map[string]store.Property{"x": {Value: "new", Source: "Change"}, "scheduler": {Value: "evil", Source: "Change"}}
	e.change(c1, c2)
	e.advance(time.Minute)
	b := e.next()
	p := b.bs.Properties
	if p["x"].Value != "new" || p["y"].Value != "y" || p["scheduler"].Value != "main" {
		t.Errorf("properties %v", p)
	}
}

func TestTreeStableTimer(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "60s")`)
	c1 := e.change(onMain("r1"))
	if st := e.status("main"); st.Waiting != "tree stable until 12:01:00 (1 change)" && !strings.Contains(st.Waiting, "(1 change)") {
		t.Errorf("status %+v", st)
	}
	e.advance(30 * time.Second)
	e.none()
	c2 := e.change(onMain("r2"))
	st := e.status("main")
	if !st.Next.Equal(t0.Add(90*time.Second)) || st.Pending != 2 || !strings.Contains(st.Waiting, "tree stable until") || !strings.Contains(st.Waiting, "(2 changes)") {
		t.Errorf("status after the second change: %+v", st)
	}
	e.advance(59 * time.Second) // the first change's deadline passed; the timer restarted
	e.none()
	e.advance(time.Second)
	b := e.next()
	wantChanges(t, b, ids(append(c1, c2...)...))
	if ss := b.bs.SourceStamps; len(ss) != 1 || ss[0].Revision != "r2" {
		t.Errorf("source stamps %+v, want the latest change's", ss)
	}
	e.none()
	if st := e.status("main"); st.Pending != 0 || st.Waiting != "waiting for changes on main" || !st.Next.IsZero() {
		t.Errorf("status after the build: %+v", st)
	}
	if state, _ := e.st.ObjectState(context.Background(), "scheduler:main"); state["timer:"] != nil {
		t.Errorf("the timer's deadline is still stored: %s", state["timer:"])
	}
}

func TestUnimportantChanges(t *testing.T) {
	const fn = `
def code(change):
    return any([f.endswith(".go") for f in change.files])
`
	t.Run("timer", func(t *testing.T) {
		e := newEnv(t, fn+`single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m", file_is_important = code)`)
		u := e.change(onMain("r1", "README"))
		if st := e.status("main"); st.Waiting != "waiting for an important change (1 unimportant change kept)" || !st.Next.IsZero() {
			t.Errorf("status %+v", st)
		}
		e.advance(time.Hour)
		e.none()
		i := e.change(onMain("r2", "x.go"))
		e.advance(30 * time.Second)
		u2 := e.change(onMain("r3", "docs/x")) // restarts the running timer
		e.advance(30 * time.Second)
		e.none()
		e.advance(30 * time.Second)
		b := e.next()
		wantChanges(t, b, ids(u[0], i[0], u2[0]))
		if b.bs.SourceStamps[0].Revision != "r3" {
			t.Errorf("stamp %+v", b.bs.SourceStamps)
		}
	})
	t.Run("no timer", func(t *testing.T) {
		e := newEnv(t, fn+`single_branch_scheduler("main", ["b"], branch = "main", file_is_important = code)`)
		u := e.change(onMain("r1", "README"))
		e.none()
		i := e.change(onMain("r2", "x.go"))
		wantChanges(t, e.next(), ids(u[0], i[0]))
	})
	t.Run("only important", func(t *testing.T) {
		e := newEnv(t, fn+`single_branch_scheduler("main", ["b"], branch = "main", file_is_important = code, only_important = True)`)
		e.change(onMain("r1", "README"))
		if st := e.status("main"); st.Pending != 0 {
			t.Errorf("unimportant change kept with only_important: %+v", st)
		}
		i := e.change(onMain("r2", "x.go"))
		wantChanges(t, e.next(), ids(i[0]))
	})
	t.Run("failing function", func(t *testing.T) {
		e := newEnv(t, `
def boom(change):
    return 1 // 0
single_branch_scheduler("main", ["b"], branch = "main", file_is_important = boom, only_important = True)`)
		i := e.change(onMain("r1", "README"))
		wantChanges(t, e.next(), ids(i[0])) // an error counts as important
	})
}

func TestChangeFiltersAndCodebases(t *testing.T) {
	e := newEnv(t, `
def not_wip(change):
    return not change.comments.startswith("WIP")
single_branch_scheduler("rel", ["b"], change_filter = change_filter(branch_re = "^release/", files = ["src/*"], fn = not_wip))
single_branch_scheduler("cb", ["c"], branch = "main", codebases = ["lib"])
`)
	ok := onBranch("release/1", "r1", "src/a.c")
	wip := onBranch("release/1", "r2", "src/a.c")
	wip.Comments = "WIP: later"
	docs := onBranch("release/1", "r3", "doc/a")
	other := onBranch("main", "r4", "src/a.c")
	cs := e.change(ok, wip, docs, other)
	b := e.next()
	wantChanges(t, b, ids(cs[0]))
	if b.bs.Properties["scheduler"].Value != "rel" {
		t.Errorf("built by %v", b.bs.Properties["scheduler"])
	}
	e.none() // "cb" takes only the codebase "lib"
	lib := onMain("l1")
	lib.Codebase = "lib"
	cs = e.change(lib)
	b = e.next()
	wantChanges(t, b, ids(cs[0]))
	if ss := b.bs.SourceStamps; len(ss) != 1 || ss[0].Codebase != "lib" {
		t.Errorf("stamps %+v", ss)
	}
}

func TestAnyBranchTimers(t *testing.T) {
	e := newEnv(t, `any_branch_scheduler("any", ["b"], tree_stable_timer = "1m",
    change_filter = change_filter(branch = ["a", "b"]))`)
	a1 := e.change(onBranch("a", "a1"))
	e.advance(30 * time.Second)
	b1 := e.change(onBranch("b", "b1"))
	e.change(onBranch("c", "c1")) // filtered out
	st := e.status("any")
	if !strings.HasPrefix(st.Waiting, "a: tree stable until") || !strings.Contains(st.Waiting, "; b: tree stable until") || st.Pending != 2 {
		t.Errorf("status %+v", st)
	}
	e.advance(30 * time.Second)
	ba := e.next()
	wantChanges(t, ba, ids(a1...))
	if ba.bs.Reason != "The AnyBranchScheduler 'any' triggered this build" || ba.bs.SourceStamps[0].Branch != "a" {
		t.Errorf("buildset %+v", ba.bs)
	}
	e.none()
	a2 := e.change(onBranch("a", "a2"))
	e.advance(30 * time.Second)
	wantChanges(t, e.next(), ids(b1...))
	e.advance(30 * time.Second)
	wantChanges(t, e.next(), ids(a2...))
	e.none()
}

func TestAnyBranchWithoutTimer(t *testing.T) {
	e := newEnv(t, `
def code(change):
    return "x.go" in change.files
any_branch_scheduler("any", ["b"], file_is_important = code)`)
	ua := e.change(onBranch("a", "a1", "README"))
	ib := e.change(onBranch("b", "b1", "x.go"))
	wantChanges(t, e.next(), ids(ib...)) // not a's unimportant change
	ia := e.change(onBranch("a", "a2", "x.go"))
	wantChanges(t, e.next(), ids(ua[0], ia[0]))
	e.none()
}

func TestRestartWithPendingTimer(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	c := e.change(onMain("r1"), onMain("r2"))
	e.advance(20 * time.Second)
	e.restart()
	if e.clk.Pending() != 1 {
		t.Fatalf("%d timers armed after the restart, want 1", e.clk.Pending())
	}
	e.advance(39 * time.Second)
	e.none()
	e.advance(time.Second)
	wantChanges(t, e.next(), ids(c...))
	e.restart()
	e.advance(time.Hour)
	e.none()

	// Down past the deadline: it fires at once, once.
	c = e.change(onMain("r3"))
	e.stop()
	e.advance(10 * time.Minute)
	e.restart()
	wantChanges(t, e.next(), ids(c...))
	e.none()
}

func TestRestartPicksUpStoredChangesOnce(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main")`)
	e.stop()
	c := e.store(onMain("r1"), onBranch("dev", "d1"), onMain("r2")) // while down, or before ChangesAdded
	e.restart()
	wantChanges(t, e.next(), ids(c[0]))
	wantChanges(t, e.next(), ids(c[2]))
	e.none()
	e.restart()
	e.manager().ChangesAdded(c) // late and repeated: nothing new
	e.none()

	// Classified, then the master died before the buildset was added.
	c = e.store(onMain("r3"))
	e.stop()
	ctx := context.Background()
	err := e.st.ClassifyChanges(ctx, "main", []store.SchedulerChange{{ChangeID: c[0].ID, Important: true}},
		store.StateValue{Object: "scheduler:main", Name: "last_change", Value: c[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	wantChanges(t, e.next(), ids(c...))
	e.restart()
	e.none()
}

func TestNewSchedulerDoesNotBuildHistory(t *testing.T) {
	e := newEnv(t, `triggerable("t", ["b"])`)
	e.change(onMain("old"))
	e.reconfig(`single_branch_scheduler("main", ["b"], branch = "main")`)
	e.none()
	e.restart()
	e.none()
	c := e.change(onMain("new"))
	wantChanges(t, e.next(), ids(c...))
}

func TestReconfigKeepsTimers(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	c1 := e.change(onMain("r1"))
	e.advance(30 * time.Second)
	// A shorter timer applies from the next change; the running one keeps
	// its deadline.
	e.reconfig(`single_branch_scheduler("main", ["c"], branch = "main", tree_stable_timer = "10s")`)
	e.advance(29 * time.Second)
	e.none()
	e.advance(time.Second)
	b := e.next()
	wantChanges(t, b, ids(c1...))
	if b.reqs[0].BuilderName != "c" {
		t.Errorf("built on %s, want the new builders", b.reqs[0].BuilderName)
	}
	c2 := e.change(onMain("r2"))
	e.advance(10 * time.Second)
	wantChanges(t, e.next(), ids(c2...))
}

func TestReconfigRemovalCancels(t *testing.T) {
	e := newEnv(t, `
single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")
triggerable("t", ["b"])`)
	e.change(onMain("r1"))
	e.reconfig(`triggerable("t", ["b"])`)
	e.advance(time.Hour)
	e.none()
	ctx := context.Background()
	if kept, _ := e.st.SchedulerChanges(ctx, "main"); len(kept) != 0 {
		t.Errorf("kept changes of a removed scheduler: %v", kept)
	}
	if state, _ := e.st.ObjectState(ctx, "scheduler:main"); len(state) != 0 {
		t.Errorf("state of a removed scheduler: %v", state)
	}
	if st := e.manager().Status(); len(st) != 1 || st[0].Name != "t" {
		t.Errorf("status %+v", st)
	}
	// Back again: a new scheduler, from now on.
	e.reconfig(`single_branch_scheduler("main", ["b"], branch = "main")`)
	e.none()
	c := e.change(onMain("r2"))
	wantChanges(t, e.next(), ids(c...))
}

func TestReconfigChangesKind(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("s", ["b"], branch = "main", tree_stable_timer = "1m")`)
	e.change(onMain("r1"))
	e.reconfig(`periodic("s", ["b"], interval = "1h")`)
	b := e.next() // a new periodic scheduler runs at once
	if len(b.changes) != 0 || !strings.HasPrefix(b.bs.Reason, "The Periodic scheduler 's'") {
		t.Errorf("buildset %+v with changes %v", b.bs, b.changes)
	}
	e.advance(time.Minute)
	e.none()
}

func TestPeriodic(t *testing.T) {
	e := newEnv(t, `periodic("hourly", ["b"], interval = "1h", branch = "main", priority = 2)`)
	b := e.next() // never ran: runs at once
	if ss := b.bs.SourceStamps; len(ss) != 1 || ss[0].Branch != "main" || b.reqs[0].Priority != 2 {
		t.Errorf("buildset %+v %+v", b.bs, b.reqs)
	}
	if st := e.status("hourly"); !st.Next.Equal(t0.Add(time.Hour)) || !st.LastRun.Equal(t0) {
		t.Errorf("status %+v", st)
	}
	e.advance(59 * time.Minute)
	e.none()
	e.advance(time.Minute)
	e.next()
	e.advance(30 * time.Minute)
	e.restart() // the next run stays at last + 1h
	e.advance(29 * time.Minute)
	e.none()
	e.advance(time.Minute)
	e.next()
	// Down for five intervals: one run at start, then every hour from it.
	e.stop()
	e.advance(5*time.Hour + 10*time.Minute)
	e.restart()
	e.next()
	e.none()
	if st := e.status("hourly"); !st.Next.Equal(e.clk.Now().Add(time.Hour)) {
		t.Errorf("next run %s, want an hour from now (%s)", st.Next, e.clk.Now())
	}
	e.restart()
	e.none()
}

func TestNightly(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	e := newEnv(t, `nightly("n", ["b"], hour = 3, time_zone = "Europe/Paris", branch = "main")`)
	st := e.status("n")
	want := time.Date(2026, 11, 23, 3, 0, 0, 0, paris)
	if st.Waiting != "next run 2026-11-23 03:00 Europe/Paris" || !st.Next.Equal(want) {
		t.Fatalf("status %+v", st)
	}
	e.clk.Set(want.Add(-time.Second))
	e.none()
	e.clk.Set(want)
	b := e.next()
	if b.bs.Reason != "The Nightly scheduler 'n' triggered this build" || b.bs.SourceStamps[0].Branch != "main" {
		t.Errorf("buildset %+v", b.bs)
	}
	if st := e.status("n"); !st.Next.Equal(want.AddDate(0, 0, 1)) || !st.LastRun.Equal(want) {
		t.Errorf("status %+v", st)
	}

	// Down over three nights: one run at start, then the next night.
	e.stop()
	e.clk.Set(want.AddDate(0, 0, 3).Add(5 * time.Hour))
	e.restart()
	e.next()
	e.none()
	if st := e.status("n"); !st.Next.Equal(want.AddDate(0, 0, 4)) {
		t.Errorf("next run after the catch-up: %s", st.Next)
	}
	e.restart()
	e.none()
}

func TestNightlyNeverRunMissedWhileDown(t *testing.T) {
	e := newEnv(t, `nightly("n", ["b"], hour = 3, time_zone = "UTC")`)
	e.none()
	e.stop()
	e.clk.Set(t0.AddDate(0, 0, 1)) // past 03:00 the next day
	e.restart()
	e.next() // its first run was missed: it runs now
	e.none()
}

func TestNightlyOnlyIfChanged(t *testing.T) {
	e := newEnv(t, `nightly("n", ["b"], hour = 3, time_zone = "UTC", branch = "main", only_if_changed = True)`)
	night := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	if st := e.status("n"); st.Waiting != "next run 2026-11-23 03:00 UTC, if there is a change on main by then" {
		t.Errorf("status %q", st.Waiting)
	}
	e.clk.Set(night)
	e.fired()
	e.none() // no change: no build
	if st := e.status("n"); !st.LastRun.Equal(night) || !st.Next.Equal(night.AddDate(0, 0, 1)) {
		t.Errorf("status %+v", st)
	}
	e.change(onBranch("dev", "d1"))
	c := e.change(onMain("r1"), onMain("r2"))
	if st := e.status("n"); st.Pending != 2 || !strings.Contains(st.Waiting, "(2 changes on main so far)") {
		t.Errorf("status %+v", st)
	}
	e.restart() // kept changes survive
	e.clk.Set(night.AddDate(0, 0, 1))
	b := e.next()
	wantChanges(t, b, ids(c...))
	if b.bs.SourceStamps[0].Revision != "r2" {
		t.Errorf("stamps %+v", b.bs.SourceStamps)
	}
	for len(e.timers) > 0 {
		<-e.timers
	}
	e.clk.Set(night.AddDate(0, 0, 2))
	e.fired()
	e.none()
}

func TestDependent(t *testing.T) {
	e := newEnv(t, `
up = single_branch_scheduler("up", ["b"], branch = "main")
dependent("down", up, ["c"])
dependent("further", "down", ["b"])
`)
	c := e.change(onMain("r1"))
	up := e.next()
	e.complete(up, result.Warnings)
	down := e.next()
	wantChanges(t, down, ids(c...))
	if down.reqs[0].BuilderName != "c" || down.bs.Properties["scheduler"].Value != "down" ||
		!slices.EqualFunc(down.bs.SourceStamps, up.bs.SourceStamps, func(a, b store.SourceStamp) bool { return a.ID == b.ID }) {
		t.Errorf("dependent buildset %+v", down.bs)
	}
	if !strings.HasPrefix(down.bs.Reason, "The Dependent scheduler 'down' triggered this build") {
		t.Errorf("reason %q", down.bs.Reason)
	}
	e.complete(down, result.Failure)
	e.none() // "further" does not run after a failure

	e.change(onMain("r2"))
	up = e.next()
	e.complete(up, result.Exception)
	e.none()

	// Completed while the master is down: built at start, once.
	e.change(onMain("r3"))
	up = e.next()
	e.stop()
	e.complete(up, result.Success)
	e.restart()
	e.next()
	e.none()
	e.restart()
	e.none()
}

func TestDependentCarriesProperties(t *testing.T) {
	e := newEnv(t, `
triggerable("up", ["b"])
dependent("down", "up", ["c"])
`)
	bs, _, err := e.manager().Trigger(context.Background(), TriggerRequest{Scheduler: "up",
		Properties:   map[string]store.Property{"x": {Value: "1", Source: "Trigger"}},
		SourceStamps: []store.SourceStamp{{Branch: "main", Revision: "abc"}}})
	if err != nil {
		t.Fatal(err)
	}
	up := e.next()
	if up.bs.ID != bs.ID {
		t.Fatalf("queued %d, Trigger returned %d", up.bs.ID, bs.ID)
	}
	e.complete(up, result.Success)
	down := e.next()
	p := down.bs.Properties
	if p["x"].Value != "1" || p["x"].Source != "Trigger" || p["scheduler"].Value != "down" {
		t.Errorf("properties %v", p)
	}
	if ss := down.bs.SourceStamps; len(ss) != 1 || ss[0].Revision != "abc" {
		t.Errorf("stamps %+v", ss)
	}
}

func TestTriggerAndWait(t *testing.T) {
	e := newEnv(t, `
triggerable("t", ["b", "c"])
single_branch_scheduler("main", ["b"], branch = "main")
`)
	ctx := context.Background()
	m := e.manager()
	if _, _, err := m.Trigger(ctx, TriggerRequest{Scheduler: "nope"}); err == nil ||
		err.Error() != `trigger: no scheduler named "nope" (triggerable schedulers: t)` {
		t.Errorf("unknown scheduler: %v", err)
	}
	if _, _, err := m.Trigger(ctx, TriggerRequest{Scheduler: "main"}); err == nil ||
		err.Error() != `trigger: scheduler "main" is a single_branch_scheduler, not a triggerable (triggerable schedulers: t)` {
		t.Errorf("not triggerable: %v", err)
	}
	e.none()

	parent := e.parentBuild()
	bs, reqs, err := m.Trigger(ctx, TriggerRequest{Scheduler: "t", Reason: "child", ParentBuildID: parent,
		ParentRelationship: "trigger", SourceStamps: []store.SourceStamp{{Branch: "main", Revision: "abc"}}})
	if err != nil {
		t.Fatal(err)
	}
	b := e.next()
	if b.bs.ID != bs.ID || len(reqs) != 2 || b.bs.Reason != "child" || b.bs.ParentBuildID != parent || b.bs.Properties["scheduler"].Value != "t" {
		t.Errorf("buildset %+v", b.bs)
	}
	waited := make(chan result.Result, 1)
	go func() {
		r, err := m.WaitBuildset(ctx, bs.ID)
		if err != nil {
			t.Error(err)
		}
		waited <- r
	}()
	e.complete(built{reqs: reqs[:1]}, result.Success)
	select {
	case r := <-waited:
		t.Fatalf("WaitBuildset returned %s before the buildset completed", r)
	default:
	}
	e.complete(built{reqs: reqs[1:]}, result.Warnings)
	if r := <-waited; r != result.Warnings {
		t.Errorf("WaitBuildset = %s, want warnings", r)
	}
	// Already complete: at once.
	if r, err := m.WaitBuildset(ctx, bs.ID); r != result.Warnings || err != nil {
		t.Errorf("WaitBuildset of a complete buildset = %s, %v", r, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	bs2, _, _ := m.Trigger(ctx, TriggerRequest{Scheduler: "t"})
	e.next()
	cancel()
	if _, err := m.WaitBuildset(cctx, bs2.ID); err == nil {
		t.Error("WaitBuildset with a cancelled context returned no error")
	}
	if _, err := m.WaitBuildset(ctx, 9999); err == nil {
		t.Error("WaitBuildset of an unknown buildset returned no error")
	}
}

// parentBuild adds a build for Trigger's ParentBuildID.
func (e *env) parentBuild() int64 {
	e.t.Helper()
	ctx := context.Background()
	b, err := e.st.GetBuilderByName(ctx, "b")
	if err != nil {
		e.t.Fatal(err)
	}
	build, err := e.st.AddBuild(ctx, store.NewBuild{BuilderID: b.ID})
	if err != nil {
		e.t.Fatal(err)
	}
	return build.ID
}

func TestStatusKinds(t *testing.T) {
	e := newEnv(t, `
triggerable("t", ["b"])
force_scheduler("f", ["b"])
up = single_branch_scheduler("s", ["b"], branch = "main")
dependent("d", up, ["c"])
any_branch_scheduler("a", ["b"])
`)
	got := map[string]string{}
	for _, s := range e.manager().Status() {
		got[s.Name+" "+s.Kind] = s.Waiting
	}
	want := map[string]string{
		"t triggerable":             "waiting for a trigger step",
		"f force_scheduler":         "waiting for someone to force a build",
		"s single_branch_scheduler": "waiting for changes on main",
		"d dependent":               "waiting for a buildset of s to succeed",
		"a any_branch_scheduler":    "waiting for changes",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// A force scheduler's buildsets are added by the master, not the Manager:
// its dependents act when such a buildset completes.
func TestDependentOfForceScheduler(t *testing.T) {
	e := newEnv(t, `
force_scheduler("f", ["b"])
dependent("after-force", "f", ["c"])
`)
	ctx := context.Background()
	b, err := e.st.GetBuilderByName(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	bs, reqs, err := e.st.AddBuildset(ctx, store.NewBuildset{BuilderIDs: []int64{b.ID}, Reason: "forced",
		SourceStamps: []store.SourceStamp{{}},
		Properties:   map[string]store.Property{"scheduler": {Value: "f", Source: "Scheduler"}, "owner": {Value: "me", Source: "Force Build Form"}}})
	if err != nil {
		t.Fatal(err)
	}
	e.complete(built{bs: bs, reqs: reqs}, result.Success)
	down := e.next()
	if down.reqs[0].BuilderName != "c" || down.bs.Properties["owner"].Value != "me" || down.bs.Properties["scheduler"].Value != "after-force" {
		t.Errorf("dependent buildset %+v", down.bs)
	}
	e.none()
}

// A scheduler removed while the master was down loses its state at start:
// back later, it does not build the changes made meanwhile.
func TestRemovedWhileDown(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	e.change(onMain("r1"))
	e.stop()
	e.cfg = e.load(`triggerable("t", ["b"])`)
	e.restart()
	ctx := context.Background()
	if names, _ := e.st.StoredSchedulers(ctx); len(names) != 0 {
		t.Errorf("stored schedulers after the restart: %q", names)
	}
	e.advance(time.Hour)
	e.store(onMain("r2"))
	e.reconfig(`single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	e.advance(time.Hour)
	e.none()
}
