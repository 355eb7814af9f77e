package dispatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

type started struct {
	req    store.BuildRequest
	worker string
	finish chan bool // send requeue to end the build
}

// fakeStarter reports each start and holds the build until told to end it
// (or until the test ends).
type fakeStarter struct {
	starts chan started
	quit   chan struct{}
}

func (f *fakeStarter) RunBuild(req store.BuildRequest, worker string) bool {
	s := started{req: req, worker: worker, finish: make(chan bool)}
	f.starts <- s
	select {
	case requeue := <-s.finish:
		return requeue
	case <-f.quit:
		return false
	}
}

func setup(t *testing.T, cfg Config) (*Dispatcher, *fakeStarter) {
	t.Helper()
	f := &fakeStarter{starts: make(chan started, 100), quit: make(chan struct{})}
	d := New(f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		close(f.quit) // release whatever still runs so Run can return
		<-done
	})
	d.SetConfig(cfg)
	return d, f
}

func req(id int64, builder string, prio int, age time.Duration) store.BuildRequest {
	return store.BuildRequest{ID: id, BuilderName: builder, Priority: prio, SubmittedAt: time.Unix(1e9, 0).Add(-age)}
}

func next(t *testing.T, f *fakeStarter) started {
	t.Helper()
	select {
	case s := <-f.starts:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no build started")
	}
	return started{}
}

// settle waits until the dispatcher processed every event sent so far.
func settle(t *testing.T, d *Dispatcher) Snapshot {
	t.Helper()
	s, err := d.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noStart(t *testing.T, d *Dispatcher, f *fakeStarter) {
	t.Helper()
	settle(t, d)
	select {
	case s := <-f.starts:
		t.Fatalf("unexpected start of request %d on %s", s.req.ID, s.worker)
	default:
	}
}

func TestWaitsForWorkerAndSaysWhy(t *testing.T) {
	d, f := setup(t, Config{Builders: []Builder{{Name: "b", Workers: []string{"w1", "w2"}}}})
	d.Add(req(1, "b", 0, 0))
	noStart(t, d, f)
	snap := settle(t, d)
	if len(snap.Pending) != 1 || !strings.Contains(snap.Reasons[1], "no worker connected for builder b") {
		t.Fatalf("snapshot = %+v", snap)
	}
	d.Attached("w2")
	if s := next(t, f); s.req.ID != 1 || s.worker != "w2" {
		t.Fatalf("started %d on %s", s.req.ID, s.worker)
	}
}

func TestMaxBuildsAndOneBuildPerBuilderPerWorker(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{{Name: "a", Workers: []string{"w"}}, {Name: "b", Workers: []string{"w"}}, {Name: "c", Workers: []string{"w"}}},
		Workers:  []Worker{{Name: "w", MaxBuilds: 2}},
	})
	d.Attached("w")
	d.Add(req(1, "a", 0, 3*time.Second), req(2, "a", 0, 2*time.Second), req(3, "b", 0, time.Second), req(4, "c", 0, 0))
	s1, s2 := next(t, f), next(t, f)
	if s1.req.ID > s2.req.ID { // they start concurrently
		s1, s2 = s2, s1
	}
	if s1.req.ID != 1 || s2.req.ID != 3 {
		t.Fatalf("started %d and %d, want 1 and 3 (2 waits: same builder on the same worker)", s1.req.ID, s2.req.ID)
	}
	noStart(t, d, f)
	if r := settle(t, d).Reasons[4]; !strings.Contains(r, "busy") {
		t.Errorf("reason for 4 = %q", r)
	}
	s1.finish <- false
	if s := next(t, f); s.req.ID != 2 {
		t.Fatalf("after a build ended, started %d, want 2", s.req.ID)
	}
}

func TestRequeueGoesToHead(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{{Name: "b", Workers: []string{"w"}}},
		Workers:  []Worker{{Name: "w", MaxBuilds: 1}},
	})
	d.Attached("w")
	d.Add(req(1, "b", 0, 0))
	first := next(t, f)
	d.Add(req(2, "b", 0, time.Hour)) // older than 1, but 1 is requeued to the head
	settle(t, d)
	first.finish <- true
	if s := next(t, f); s.req.ID != 1 {
		t.Fatalf("after requeue started %d, want 1 again", s.req.ID)
	}
}

func TestPriorityThenAge(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{{Name: "b", Workers: []string{"w"}}},
		Workers:  []Worker{{Name: "w", MaxBuilds: 1}},
	})
	d.Add(req(1, "b", 0, time.Hour), req(2, "b", 5, 0), req(3, "b", 0, 2*time.Hour))
	settle(t, d)
	d.Attached("w")
	var got []int64
	for i := 0; i < 3; i++ {
		s := next(t, f)
		got = append(got, s.req.ID)
		s.finish <- false
	}
	if got[0] != 2 || got[1] != 3 || got[2] != 1 {
		t.Fatalf("order %v, want [2 3 1]", got)
	}
}

func TestDetachedWorkerGetsNothing(t *testing.T) {
	d, f := setup(t, Config{Builders: []Builder{{Name: "b", Workers: []string{"w"}}}})
	d.Attached("w")
	d.Detached("w")
	d.Add(req(1, "b", 0, 0))
	noStart(t, d, f)
	if r := settle(t, d).Reasons[1]; !strings.Contains(r, "no worker connected") {
		t.Errorf("reason = %q", r)
	}
}

func TestUnknownBuilderWaitsWithReason(t *testing.T) {
	d, f := setup(t, Config{})
	d.Attached("w")
	d.Add(req(1, "gone", 0, 0))
	noStart(t, d, f)
	if r := settle(t, d).Reasons[1]; !strings.Contains(r, "not in the configuration") {
		t.Errorf("reason = %q", r)
	}
}

func TestRemoveDropsPending(t *testing.T) {
	d, f := setup(t, Config{Builders: []Builder{{Name: "b", Workers: []string{"w"}}}})
	d.Add(req(1, "b", 0, time.Second), req(2, "b", 0, 0))
	d.Remove(1)
	if snap := settle(t, d); len(snap.Pending) != 1 || snap.Pending[0].ID != 2 {
		t.Fatalf("pending after Remove(1) = %+v", snap.Pending)
	}
	d.Attached("w")
	if s := next(t, f); s.req.ID != 2 {
		t.Fatalf("started %d, want 2", s.req.ID)
	}
}

func TestMasterLockSharedAcrossWorkers(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{
			{Name: "a", Workers: []string{"w1"}, Locks: []LockAccess{{Lock: "db"}}},
			{Name: "b", Workers: []string{"w2"}, Locks: []LockAccess{{Lock: "db"}}},
		},
		Locks: []Lock{{Name: "db", MaxCount: 1}},
	})
	d.Attached("w1")
	d.Attached("w2")
	d.Add(req(1, "a", 0, time.Second), req(2, "b", 0, 0))
	first := next(t, f)
	if first.req.ID != 1 {
		t.Fatalf("started %d first, want 1", first.req.ID)
	}
	noStart(t, d, f)
	if r := settle(t, d).Reasons[2]; r != "waiting for lock db" {
		t.Fatalf("reason = %q", r)
	}
	first.finish <- false
	if s := next(t, f); s.req.ID != 2 || s.worker != "w2" {
		t.Fatalf("after release started %d on %s", s.req.ID, s.worker)
	}
}

func TestWorkerLockIsPerWorker(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{
			{Name: "a", Workers: []string{"w1", "w2"}, Locks: []LockAccess{{Lock: "cpu"}}},
			{Name: "b", Workers: []string{"w1", "w2"}, Locks: []LockAccess{{Lock: "cpu"}}},
			{Name: "c", Workers: []string{"w1", "w2"}, Locks: []LockAccess{{Lock: "cpu"}}},
		},
		Locks: []Lock{{Name: "cpu", PerWorker: true, MaxCount: 1, MaxCountForWorker: map[string]int{"w2": 2}}},
	})
	d.Attached("w1")
	d.Attached("w2")
	d.Add(req(1, "a", 0, 3*time.Second), req(2, "b", 0, 2*time.Second), req(3, "c", 0, time.Second))
	// w1 takes one build (its lock allows one), w2 two (its override).
	got := map[string]int{}
	for i := 0; i < 3; i++ {
		got[next(t, f).worker]++
	}
	if got["w1"] != 1 || got["w2"] != 2 {
		t.Fatalf("builds per worker = %v, want w1:1 w2:2", got)
	}
}

func TestExclusiveWaitsForCounting(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{
			{Name: "x1", Workers: []string{"w"}, Locks: []LockAccess{{Lock: "l"}}},
			{Name: "x2", Workers: []string{"w"}, Locks: []LockAccess{{Lock: "l"}}},
			{Name: "y", Workers: []string{"w"}, Locks: []LockAccess{{Lock: "l", Exclusive: true}}},
			{Name: "x3", Workers: []string{"w"}, Locks: []LockAccess{{Lock: "l"}}},
		},
		Locks: []Lock{{Name: "l", MaxCount: 2}},
	})
	d.Attached("w")
	d.Add(req(1, "x1", 0, 4*time.Second), req(2, "x2", 0, 3*time.Second), req(3, "y", 0, 2*time.Second))
	a, b := next(t, f), next(t, f)
	noStart(t, d, f) // y needs the lock alone
	a.finish <- false
	noStart(t, d, f)
	b.finish <- false
	y := next(t, f)
	if y.req.ID != 3 {
		t.Fatalf("started %d, want the exclusive 3", y.req.ID)
	}
	d.Add(req(4, "x3", 0, 0))
	noStart(t, d, f) // counting waits while exclusive is held
	y.finish <- false
	if s := next(t, f); s.req.ID != 4 {
		t.Fatalf("started %d, want 4", s.req.ID)
	}
}

func TestBuilderPriority(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{
			{Name: "low", Workers: []string{"w"}},
			{Name: "high", Workers: []string{"w"}, Priority: 10},
		},
		Workers: []Worker{{Name: "w", MaxBuilds: 1}},
	})
	d.Add(req(1, "low", 0, time.Hour), req(2, "high", 0, 0))
	settle(t, d)
	d.Attached("w")
	if s := next(t, f); s.req.ID != 2 {
		t.Fatalf("started %d first, want the high-priority builder's 2", s.req.ID)
	}
}

func TestWorkerLevelLock(t *testing.T) {
	d, f := setup(t, Config{
		Builders: []Builder{{Name: "a", Workers: []string{"w"}}, {Name: "b", Workers: []string{"w"}}},
		Workers:  []Worker{{Name: "w", Locks: []LockAccess{{Lock: "one-at-a-time", Exclusive: true}}}},
		Locks:    []Lock{{Name: "one-at-a-time", PerWorker: true, MaxCount: 1}},
	})
	d.Attached("w")
	d.Add(req(1, "a", 0, time.Second), req(2, "b", 0, 0))
	first := next(t, f)
	noStart(t, d, f)
	if r := settle(t, d).Reasons[2]; r != "waiting for lock one-at-a-time" {
		t.Fatalf("reason = %q", r)
	}
	first.finish <- false
	if s := next(t, f); s.req.ID != 2 {
		t.Fatalf("started %d, want 2", s.req.ID)
	}
}
