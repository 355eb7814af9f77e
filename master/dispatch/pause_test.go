package dispatch

import (
	"testing"
	"time"
)

// TestPause: a paused worker gets no new build but keeps the one it runs;
// the waiting reason names the pause; the pause outlives a reconnection;
// unpausing lets the queue move.
func TestPause(t *testing.T) {
	d, f := setup(t, Config{Builders: []Builder{
		{Name: "a", Workers: []string{"w1", "w2"}},
		{Name: "b", Workers: []string{"w1"}},
	}})
	d.Attached("w1")
	d.Add(req(1, "b", 0, 2*time.Second))
	running := next(t, f) // b on w1, before the pause
	if running.worker != "w1" {
		t.Fatalf("started on %s", running.worker)
	}

	d.Pause("w1", "disk full")
	d.Add(req(2, "a", 0, time.Second))
	noStart(t, d, f)
	if got, want := settle(t, d).Reasons[2], "worker w1 paused: disk full"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}

	// Another worker that is busy: both facts are told.
	d.Attached("w2")
	s := next(t, f)
	if s.req.ID != 2 || s.worker != "w2" {
		t.Fatalf("started %d on %s, want 2 on w2", s.req.ID, s.worker)
	}
	d.Add(req(3, "a", 0, 0))
	noStart(t, d, f)
	if got, want := settle(t, d).Reasons[3], "worker w2 is busy; worker w1 paused: disk full"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}

	// The build that ran before the pause ends normally; the pause stays
	// across a reconnection.
	running.finish <- false
	d.Detached("w1")
	d.Attached("w1")
	noStart(t, d, f)

	d.Pause("w1", "") // no reason
	d.Pause("w2", "")
	s.finish <- false
	noStart(t, d, f)
	if got, want := settle(t, d).Reasons[3], "worker w1 paused; worker w2 paused"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}

	d.Unpause("w1")
	if s := next(t, f); s.req.ID != 3 || s.worker != "w1" {
		t.Fatalf("started %d on %s, want 3 on w1", s.req.ID, s.worker)
	}
}
