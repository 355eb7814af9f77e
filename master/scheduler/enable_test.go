package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

func (e *env) setEnabled(name string, on bool, why string) {
	e.t.Helper()
	if err := e.manager().SetEnabled(context.Background(), name, on, why); err != nil {
		e.t.Fatal(err)
	}
	e.flush()
}

// TestDisabledSchedulerDropsChanges: a disabled change-driven scheduler
// builds nothing, neither what arrives nor what it kept; enabled again,
// it builds the changes that come after, not those it passed over. The
// flag outlives a restart.
func TestDisabledSchedulerDropsChanges(t *testing.T) {
	e := newEnv(t, `single_branch_scheduler("main", ["b"], branch = "main", tree_stable_timer = "1m")`)
	if !e.manager().Enabled("main") {
		t.Fatal("a new scheduler is disabled")
	}
	kept := e.change(onMain("r1")) // kept, its timer running
	e.setEnabled("main", false, "disabled by ann: release freeze")
	st := e.status("main")
	if !st.Disabled || st.Waiting != "disabled: disabled by ann: release freeze" {
		t.Errorf("status %+v, want disabled with who and why", st)
	}
	e.change(onMain("r2"))
	e.advance(time.Minute)
	e.fired()
	e.none()
	if ks, _ := e.st.SchedulerChanges(context.Background(), "main"); len(ks) != 0 {
		t.Errorf("changes still kept after the timer of a disabled scheduler: %v (kept before: %v)", ks, ids(kept...))
	}

	e.restart()
	if e.manager().Enabled("main") || !e.status("main").Disabled {
		t.Fatal("the disabled flag was lost in a restart")
	}
	e.change(onMain("r3"))
	e.advance(time.Minute)
	e.none()

	e.setEnabled("main", true, "")
	if st := e.status("main"); st.Disabled || strings.Contains(st.Waiting, "disabled") {
		t.Errorf("status %+v after enabling", st)
	}
	c := e.change(onMain("r4"))
	e.advance(time.Minute)
	e.fired()
	wantChanges(t, e.next(), ids(c...))
	e.none()
	e.restart()
	if !e.manager().Enabled("main") {
		t.Error("enabled again, then disabled by a restart")
	}
}

// TestDisabledTimedAndTriggered: a periodic run that comes due while
// disabled is skipped, not made up later; a trigger of a disabled
// triggerable fails; a dependent ignores its upstream.
func TestDisabledTimedAndTriggered(t *testing.T) {
	e := newEnv(t, `
periodic("hourly", ["b"], interval = "1h")
triggerable("t", ["b"])
dependent("down", "t", ["c"])
`)
	e.next() // never ran: runs at once
	e.flush()
	<-e.timers // that run's
	e.setEnabled("hourly", false, "")
	e.advance(time.Hour)
	e.fired()
	e.none()
	if st := e.status("hourly"); !st.LastRun.Equal(e.clk.Now()) || !st.Next.Equal(e.clk.Now().Add(time.Hour)) {
		t.Errorf("status %+v: the skipped run must count as the last one", st)
	}
	e.setEnabled("hourly", true, "")
	e.none() // no catch-up run
	e.advance(time.Hour)
	e.next()

	e.setEnabled("t", false, "maintenance")
	_, _, err := e.manager().Trigger(context.Background(), TriggerRequest{Scheduler: "t"})
	if err == nil || !strings.Contains(err.Error(), `scheduler "t" is disabled (maintenance)`) {
		t.Errorf("Trigger of a disabled scheduler: %v", err)
	}
	e.setEnabled("t", true, "")
	e.setEnabled("down", false, "")
	bs, reqs, err := e.manager().Trigger(context.Background(), TriggerRequest{Scheduler: "t"})
	if err != nil {
		t.Fatal(err)
	}
	up := e.next()
	if up.bs.ID != bs.ID || len(reqs) != 1 {
		t.Fatalf("queued %d, triggered %d", up.bs.ID, bs.ID)
	}
	e.complete(up, result.Success)
	e.none() // down is disabled
	if err := e.manager().SetEnabled(context.Background(), "nope", false, ""); !errors.Is(err, ErrNoScheduler) {
		t.Errorf("SetEnabled(nope) = %v, want ErrNoScheduler", err)
	}
}
