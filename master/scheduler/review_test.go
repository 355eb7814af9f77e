package scheduler

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// newManager returns a Manager on e's store, not running.
func (e *env) newManager() *Manager {
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return New(Options{Store: e.st, Queue: e.q, Clock: e.clk, Logger: log})
}

// run runs m as e's Manager, which e.stop stops.
func (e *env) run(m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e.mu.Lock()
	e.m, e.cancel, e.done = m, cancel, done
	e.mu.Unlock()
}

// A change stored after SetConfig and before Run applied it is built by a
// new scheduler: SetConfig's contract, and what a git poller that polls at
// launch (or a webhook at a reconfig) relies on, since Run applies the
// configuration concurrently with them.
func TestNewSchedulerSeesChangesStoredAfterSetConfig(t *testing.T) {
	e := newEnv(t, `triggerable("t", ["b"])`)
	e.stop()
	e.cfg = e.load(`single_branch_scheduler("main", ["b"], branch = "main")`)
	m := e.newManager()
	m.SetConfig(e.cfg)
	c := e.store(onMain("r1")) // before Run applies the configuration
	e.run(m)
	wantChanges(t, e.next(), ids(c...))
	e.none()
}

// failInserts makes every insert into table fail until the returned
// function is called: a store that refuses writes for a while (disk full,
// I/O errors), on the real database.
func (e *env) failInserts(table string) (restore func()) {
	e.t.Helper()
	db, err := sql.Open("sqlite3", e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	trigger := "fail_" + table
	if _, err := db.Exec(`CREATE TRIGGER ` + trigger + ` BEFORE INSERT ON ` + table + ` BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		e.t.Helper()
		defer db.Close()
		if _, err := db.Exec(`DROP TRIGGER ` + trigger); err != nil {
			e.t.Fatal(err)
		}
	}
}

// A buildset that could not be added for one branch does not keep
// another branch's change from being built.
func TestFailedGroupDoesNotHoldOthers(t *testing.T) {
	e := newEnv(t, `any_branch_scheduler("any", ["b"])`)
	restore := e.failInserts("buildsets")
	cs := e.change(onBranch("a", "a1"), onBranch("b", "b1"))
	e.none()
	restore()
	e.advance(retryDelay)
	e.fired()
	got := map[int64]bool{}
	for range 2 {
		b := e.next()
		for _, id := range b.changes {
			got[id] = true
		}
	}
	for _, c := range cs {
		if !got[c.ID] {
			t.Errorf("change %d (branch %s) was not built", c.ID, c.Branch)
		}
	}
	e.none()
}

// A tree-stable timer that fires fine does not make the scheduler forget
// that another branch's buildset failed and must be retried.
func TestRetryAfterAnotherGroupSucceeded(t *testing.T) {
	e := newEnv(t, `any_branch_scheduler("any", ["b"], tree_stable_timer = "1m")`)
	a := e.change(onBranch("a", "a1"))
	e.advance(10 * time.Second)
	b := e.change(onBranch("b", "b1"))
	restore := e.failInserts("buildsets")
	e.advance(50 * time.Second) // a's timer: its buildset fails; retry at +30s
	e.fired()
	e.none()
	restore()
	e.advance(10 * time.Second) // b's timer: fine
	wantChanges(t, e.next(), ids(b...))
	e.advance(retryDelay)
	wantChanges(t, e.next(), ids(a...))
	e.none()
}

// The record that a dependent scheduler waits for an upstream buildset is
// stored with the buildset: a store that fails (or a master that dies)
// between the two must not leave a buildset whose dependents never run.
func TestDependentSubscriptionWithTheBuildset(t *testing.T) {
	e := newEnv(t, `
up = single_branch_scheduler("up", ["b"], branch = "main")
dependent("down", up, ["c"])
`)
	db, err := sql.Open("sqlite3", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER fail_sub BEFORE INSERT ON object_state WHEN NEW.name LIKE 'upstream:%'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	c := e.change(onMain("r1"))
	// Either no buildset yet (it is retried), or one with its dependents.
	if _, err := db.Exec(`DROP TRIGGER fail_sub`); err != nil {
		t.Fatal(err)
	}
	e.advance(retryDelay)
	up := e.next()
	wantChanges(t, up, ids(c...))
	e.complete(up, result.Success)
	down := e.next()
	if down.reqs[0].BuilderName != "c" {
		t.Errorf("dependent buildset on %s", down.reqs[0].BuilderName)
	}
	e.none()
}

// A dependent scheduler added by a configuration is subscribed to its
// upstream's buildsets from SetConfig on, though it starts only when Run
// applies the configuration: starting must keep those subscriptions.
func TestNewDependentKeepsEarlySubscriptions(t *testing.T) {
	e := newEnv(t, `triggerable("up", ["b"])`)
	e.stop()
	e.cfg = e.load(`
triggerable("up", ["b"])
dependent("down", "up", ["c"])
`)
	m := e.newManager()
	m.SetConfig(e.cfg)
	if _, _, err := m.Trigger(context.Background(), TriggerRequest{Scheduler: "up"}); err != nil {
		t.Fatal(err)
	}
	up := e.next()
	e.run(m)
	e.flush()
	e.complete(up, result.Success)
	if down := e.next(); down.reqs[0].BuilderName != "c" {
		t.Errorf("dependent buildset on %s", down.reqs[0].BuilderName)
	}
	e.none()
}

// A reconfig that turns only_if_changed on, and whose change collector
// cannot start (the store failed), is retried: the nightly scheduler must
// not run on without looking at changes, never building again.
func TestNightlyOnlyIfChangedRetriedAfterReconfig(t *testing.T) {
	e := newEnv(t, `nightly("n", ["b"], hour = 3, time_zone = "UTC", branch = "main")`)
	restore := e.failInserts("object_state")
	e.reconfig(`nightly("n", ["b"], hour = 3, time_zone = "UTC", branch = "main", only_if_changed = True)`)
	if st := e.status("n"); st.Error == "" {
		t.Errorf("status %+v, want the error", st)
	}
	restore()
	e.advance(retryDelay)
	e.fired()
	if st := e.status("n"); st.Error != "" {
		t.Errorf("status after the retry %+v", st)
	}
	c := e.change(onMain("r1"))
	e.clk.Set(time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC))
	wantChanges(t, e.next(), ids(c...))
	e.none()
}

// A scheduler whose start failed after it had armed its timers, and that a
// reconfig then starts anew, does not leave the first attempt's timers
// running: each would build the same changes.
func TestFailedStartThenReconfigBuildsOnce(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	c := e.change(onMain("r1"))
	e.stop()
	ctx := context.Background()
	// A stale deadline, which start drops, and a store that fails then.
	if err := e.st.SetState(ctx, store.StateValue{Object: "scheduler:main", Name: "timer:x", Value: t0}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER fail_delete BEFORE DELETE ON object_state BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	e.start()
	if st := e.status("main"); st.Error == "" {
		t.Fatalf("status %+v, want a start error", st)
	}
	if _, err := db.Exec(`DROP TRIGGER fail_delete`); err != nil {
		t.Fatal(err)
	}
	e.reconfig(`single_branch_scheduler("main", ["c"], branch = "main", tree_stable_timer = "1m")`)
	e.advance(retryDelay)
	e.fired()
	if n := e.clk.Pending(); n != 1 {
		t.Errorf("%d timers armed, want the tree-stable timer alone", n)
	}
	e.advance(time.Minute - retryDelay)
	wantChanges(t, e.next(), ids(c...))
	e.none()
}
