package donate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/clock"
)

// fakeIdle is an owner the test moves.
type fakeIdle struct {
	mu   sync.Mutex
	last time.Time // last input
	err  error
}

func (f *fakeIdle) Name() string { return "fake" }
func (f *fakeIdle) Idle(now time.Time) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return now.Sub(f.last), f.err
}
func (f *fakeIdle) input(at time.Time) { f.mu.Lock(); f.last = at; f.mu.Unlock() }

// fakeSystem counts its scans.
type fakeSystem struct {
	mu    sync.Mutex
	scans int
	ours  []int
}

func (f *fakeSystem) Processes(ours []int, _ []string) (ProcStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	f.ours = ours
	return ProcStats{ForeignLoad: 1, LoadKnown: true}, nil
}
func (f *fakeSystem) Power() (Power, error)          { return Power{Charge: -1}, nil }
func (f *fakeSystem) FreeDisk(string) (int64, error) { return 0, errors.New("no disk here") }
func (f *fakeSystem) count() int                     { f.mu.Lock(); defer f.mu.Unlock(); return f.scans }

// fakeTarget records decisions.
type fakeTarget struct {
	mu      sync.Mutex
	builds  []Build
	applied chan Decision
}

func (f *fakeTarget) Builds() ([]Build, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.builds, []int{4242}
}
func (f *fakeTarget) Apply(d Decision, _ Observation) { f.applied <- d }
func (f *fakeTarget) set(b []Build)                   { f.mu.Lock(); f.builds = b; f.mu.Unlock() }

func TestMonitorPollsFastOnlyWhileBuilding(t *testing.T) {
	clk := clock.NewFake(t0)
	owner := &fakeIdle{last: t0.Add(-time.Hour)}
	sys := &fakeSystem{}
	tgt := &fakeTarget{applied: make(chan Decision, 16)}
	m := &Monitor{Policy: NewPolicy(DefaultSettings()), Idle: owner, System: sys, DiskPath: "/", Target: tgt, Clock: clk}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	added := clk.Added()
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	next := func() Decision {
		t.Helper()
		select {
		case d := <-tgt.applied:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("no decision")
		}
		return Decision{}
	}
	// armed waits until the monitor armed its next timer.
	armed := func() {
		t.Helper()
		select {
		case <-added:
		case <-time.After(10 * time.Second):
			t.Fatal("no timer armed")
		}
		added = clk.Added()
	}
	if d := next(); !d.Status.Accepting {
		t.Fatalf("first decision %+v", d.Status)
	}
	armed()
	// Waiting: nothing happens within Fast, the next sample comes at Slow.
	clk.Advance(DefaultFast)
	select {
	case d := <-tgt.applied:
		t.Fatalf("a waiting monitor polled after %s: %+v", DefaultFast, d.Status)
	default:
	}
	clk.Advance(DefaultSlow - DefaultFast)
	next()
	armed()

	// A build starts: Kick decides at once, then every Fast.
	tgt.set([]Build{{Key: "b", Builder: "proj"}})
	m.Kick()
	if d := next(); d.Modes["b"] != Running {
		t.Fatalf("modes %v", d.Modes)
	}
	armed()
	scans := sys.count()
	owner.input(clk.Now())
	clk.Advance(DefaultFast)
	if d := next(); d.Modes["b"] != Frozen || d.Status.Reason != "owner active" {
		t.Fatalf("owner back: %+v %v", d.Status, d.Modes)
	}
	if sys.count() != scans {
		t.Fatalf("processes scanned again within %s while building", DefaultSampleEvery)
	}
	// All builds frozen: back to slow polling, sparing the owner.
	armed()
	clk.Advance(DefaultFast)
	select {
	case d := <-tgt.applied:
		t.Fatalf("polled fast with every build frozen: %+v", d.Status)
	default:
	}
	clk.Advance(DefaultSlow)
	next()
}

func TestMonitorIdleErrorMeansOwnerActive(t *testing.T) {
	tgt := &fakeTarget{applied: make(chan Decision, 4)}
	m := &Monitor{Policy: NewPolicy(DefaultSettings()), Idle: &fakeIdle{err: errors.New("boom")}, Target: tgt, Clock: clock.NewFake(t0)}
	m.Step()
	if d := <-tgt.applied; d.Status.Reason != "owner active" {
		t.Fatalf("status %+v", d.Status)
	}
}

func TestMonitorWithoutIdleSourceGoesByLoad(t *testing.T) {
	tgt := &fakeTarget{applied: make(chan Decision, 4)}
	m := &Monitor{Policy: NewPolicy(DefaultSettings()), System: &fakeSystem{}, Target: tgt, Clock: clock.NewFake(t0)}
	m.Step()
	if d := <-tgt.applied; !d.Status.Accepting {
		t.Fatalf("status %+v", d.Status)
	}
}
