package dispatch

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/master/store"
)

// fakeLatent records the starts the dispatcher asks for; refuse, if set,
// makes Startable say no with that reason.
type fakeLatent struct {
	mu     sync.Mutex
	starts []string // "slot:request"
	refuse string
}

func (l *fakeLatent) Startable(slot string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refuse != "" {
		return false, l.refuse
	}
	return true, ""
}

func (l *fakeLatent) Start(slot string, r store.BuildRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts = append(l.starts, slot+":"+itoa(r.ID))
}

func (l *fakeLatent) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.starts...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func latentSetup(t *testing.T, builders ...Builder) (*Dispatcher, *fakeStarter, *fakeLatent) {
	t.Helper()
	l := &fakeLatent{}
	f := &fakeStarter{starts: make(chan started, 100), quit: make(chan struct{})}
	d := New(f, nil)
	d.SetLatent(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		close(f.quit)
		<-done
	})
	d.SetConfig(Config{
		Builders: builders,
		Workers: []Worker{
			{Name: "w1", MaxBuilds: 1},
			{Name: "vm", MaxBuilds: 1, Latent: "vm"},
			{Name: "vm/2", MaxBuilds: 1, Latent: "vm"},
		},
	})
	return d, f, l
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestLatentStartsAnInstancePerRequest(t *testing.T) {
	d, f, l := latentSetup(t, Builder{Name: "b", Workers: []string{"vm", "vm/2"}})
	d.Add(req(1, "b", 0, 2), req(2, "b", 0, 1), req(3, "b", 0, 0))
	snap := settle(t, d)
	if got := l.got(); !equal(got, []string{"vm:1", "vm/2:2"}) {
		t.Fatalf("starts = %v, want an instance in each slot for the two oldest requests", got)
	}
	if r := snap.Reasons[1]; r != "preparing worker vm" {
		t.Errorf("reason of request 1 = %q", r)
	}
	if r := snap.Reasons[3]; !strings.Contains(r, "every instance that may run is starting") {
		t.Errorf("reason of request 3 = %q", r)
	}
	// The second slot's instance connects first: the oldest request takes it.
	d.Attached("vm/2")
	if s := next(t, f); s.req.ID != 1 || s.worker != "vm/2" {
		t.Fatalf("started %d on %s", s.req.ID, s.worker)
	}
	// Request 2 now waits for the first slot's instance, started for 1.
	if r := settle(t, d).Reasons[2]; r != "preparing worker vm" {
		t.Errorf("reason of request 2 after 1 took the other instance = %q", r)
	}
	noStart(t, d, f)
	if got := l.got(); len(got) != 2 {
		t.Errorf("starts = %v: no third instance may start (max 2)", got)
	}
}

func TestLatentFailedStartsMoveRequestToOtherWorker(t *testing.T) {
	d, f, l := latentSetup(t,
		Builder{Name: "mixed", Workers: []string{"vm", "w1"}},
		Builder{Name: "only", Workers: []string{"vm/2"}})
	d.Add(req(1, "mixed", 0, 1))
	for i := 1; i <= MaxRequestStarts; i++ {
		settle(t, d)
		if got := l.got(); len(got) != i || got[i-1] != "vm:1" {
			t.Fatalf("after %d failures, starts = %v", i-1, got)
		}
		d.LatentStopping("vm")
		d.LatentStopped("vm", errors.New("did not connect"))
	}
	snap := settle(t, d)
	if got := l.got(); len(got) != MaxRequestStarts {
		t.Fatalf("starts = %v: the request must leave vm after %d failed starts", got, MaxRequestStarts)
	}
	if r := snap.Reasons[1]; !strings.Contains(r, "failed to start 3 times") || !strings.Contains(r, "did not connect") || !strings.Contains(r, "no worker connected") {
		t.Errorf("reason = %q", r)
	}
	d.Attached("w1")
	if s := next(t, f); s.req.ID != 1 || s.worker != "w1" {
		t.Fatalf("started %d on %s", s.req.ID, s.worker)
	}

	// A builder with no other worker keeps trying, and says so.
	d.Add(req(2, "only", 0, 0))
	for i := 1; i <= MaxRequestStarts+1; i++ {
		settle(t, d)
		d.LatentStopped("vm/2", errors.New("boom"))
	}
	snap = settle(t, d)
	if got := l.got(); len(got) != 2*MaxRequestStarts+2 {
		t.Errorf("starts = %v", got)
	}
	if r := snap.Reasons[2]; !strings.Contains(r, "preparing worker vm/2 (4 failed starts before; last: boom)") {
		t.Errorf("reason = %q", r)
	}
}

func TestLatentRefusedSaysWhyAndKickRetries(t *testing.T) {
	d, _, l := latentSetup(t, Builder{Name: "b", Workers: []string{"vm"}})
	l.refuse = "worker vm is quarantined until 12:00:00"
	d.Add(req(1, "b", 0, 0))
	if r := settle(t, d).Reasons[1]; r != l.refuse {
		t.Fatalf("reason = %q", r)
	}
	l.mu.Lock()
	l.refuse = ""
	l.mu.Unlock()
	d.Kick()
	settle(t, d)
	if got := l.got(); !equal(got, []string{"vm:1"}) {
		t.Fatalf("starts after Kick = %v", got)
	}
}

func TestLatentStoppingSlotGetsNoBuild(t *testing.T) {
	d, f, l := latentSetup(t, Builder{Name: "b", Workers: []string{"vm"}})
	d.Attached("vm")
	d.LatentStopping("vm")
	d.Add(req(1, "b", 0, 0))
	noStart(t, d, f)
	if len(l.got()) != 0 {
		t.Fatalf("starts = %v while the slot's instance stops", l.got())
	}
	d.LatentStopped("vm", nil)
	settle(t, d)
	if got := l.got(); !equal(got, []string{"vm:1"}) {
		t.Fatalf("starts once stopped = %v", got)
	}
}
