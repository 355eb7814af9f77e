package dispatch

import (
	"errors"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

func TestCanStart(t *testing.T) {
	var asked []string
	b := Builder{Name: "b", Workers: []string{"w1", "w2"}, CanStart: func(w Candidate, r store.BuildRequest) (bool, error) {
		asked = append(asked, w.Name)
		return w.Name == "w2" && r.ID == 1, nil
	}}
	d, f := setup(t, Config{Builders: []Builder{b}})
	d.Attached("w1")
	d.Attached("w2")
	d.Add(req(2, "b", 0, time.Hour)) // refused everywhere
	d.Add(req(1, "b", 0, 0))
	if s := next(t, f); s.req.ID != 1 || s.worker != "w2" {
		t.Fatalf("started %d on %s, want 1 on w2", s.req.ID, s.worker)
	}
	noStart(t, d, f)
	if r := settle(t, d).Reasons[2]; r != "can_start refused every available worker" {
		t.Errorf("reason = %q", r)
	}
}

func TestNextWorker(t *testing.T) {
	var offered []Candidate
	b := Builder{Name: "b", Workers: []string{"w1", "w2", "w3"}, NextWorker: func(ws []Candidate, r store.BuildRequest) (string, error) {
		offered = ws
		if r.ID == 9 {
			return "", nil
		}
		return "w3", nil
	}}
	d, f := setup(t, Config{Builders: []Builder{b}})
	d.Attached("w1")
	d.Attached("w3")
	d.Add(req(1, "b", 0, 0))
	if s := next(t, f); s.worker != "w3" {
		t.Fatalf("started on %s, want w3", s.worker)
	}
	if len(offered) != 2 || offered[0].Name != "w1" || offered[1].Name != "w3" || offered[1].Running != 0 {
		t.Errorf("offered %+v", offered)
	}
	d.Add(req(9, "b", 0, 0))
	noStart(t, d, f)
	if r := settle(t, d).Reasons[9]; r != "next_worker chose no worker" {
		t.Errorf("reason = %q", r)
	}
}

type btErr struct{ error }

func (btErr) Backtrace() string { return "Traceback: ...\n  fail" }

func TestNextWorkerErrorFallsBack(t *testing.T) {
	fail := true
	b := Builder{Name: "b", Workers: []string{"w1"}, NextWorker: func(ws []Candidate, r store.BuildRequest) (string, error) {
		if fail {
			return "", btErr{errors.New("boom")}
		}
		return "nope", nil
	}}
	cfg := Config{Builders: []Builder{b}, Workers: []Worker{{Name: "w1", MaxBuilds: 1}}, Locks: nil}
	d, f := setup(t, cfg)
	d.Attached("w1")
	d.Add(req(1, "b", 0, 0))
	s := next(t, f) // the default: the least busy worker
	if s.worker != "w1" {
		t.Fatalf("started on %s", s.worker)
	}
	fail = false // read on the dispatcher's goroutine only after the next event
	d.Add(req(2, "b", 0, 0))
	noStart(t, d, f)
	s.finish <- false
	s2 := next(t, f) // "nope" is not a worker: default again
	if s2.req.ID != 2 || s2.worker != "w1" {
		t.Fatalf("started %d on %s", s2.req.ID, s2.worker)
	}
}

// TestFailureIsTheWaitingReason: a function that failed is logged and the
// default used; if the request still waits, its reason names the failure.
func TestFailureIsTheWaitingReason(t *testing.T) {
	b := Builder{
		Name: "b", Workers: []string{"w1"},
		NextBuild: func(rs []store.BuildRequest) (int64, error) { return 0, btErr{errors.New("boom")} },
		CanStart:  func(w Candidate, r store.BuildRequest) (bool, error) { return false, nil },
	}
	d, f := setup(t, Config{Builders: []Builder{b}})
	d.Attached("w1")
	d.Add(req(1, "b", 0, 0))
	noStart(t, d, f)
	if r := settle(t, d).Reasons[1]; r != "next_build failed: boom" {
		t.Errorf("reason = %q", r)
	}
}

func TestBothFailStartsWithDefault(t *testing.T) {
	b := Builder{
		Name: "b", Workers: []string{"w1"},
		CanStart:   func(w Candidate, r store.BuildRequest) (bool, error) { return false, errors.New("boom") },
		NextWorker: func(ws []Candidate, r store.BuildRequest) (string, error) { return "", errors.New("bad pick") },
	}
	d, f := setup(t, Config{Builders: []Builder{b}})
	d.Add(req(1, "b", 0, 0))
	d.Attached("w1")
	if s := next(t, f); s.worker != "w1" {
		t.Fatal(s.worker)
	}
}

func TestNextBuild(t *testing.T) {
	var offered []int64
	choose := int64(3)
	b := Builder{Name: "b", Workers: []string{"w1"}, NextBuild: func(rs []store.BuildRequest) (int64, error) {
		offered = offered[:0]
		for _, r := range rs {
			offered = append(offered, r.ID)
		}
		return choose, nil
	}}
	d, f := setup(t, Config{Builders: []Builder{b}, Workers: []Worker{{Name: "w1", MaxBuilds: 1}}})
	d.Add(req(1, "b", 0, 3*time.Hour), req(2, "b", 0, 2*time.Hour), req(3, "b", 0, time.Hour))
	settle(t, d)
	d.Attached("w1")
	s := next(t, f)
	if s.req.ID != 3 {
		t.Fatalf("started %d, want 3", s.req.ID)
	}
	if len(offered) != 3 || offered[0] != 1 {
		t.Errorf("offered %v", offered)
	}
	snap := settle(t, d)
	if len(snap.Pending) != 2 || snap.Pending[0].ID != 1 {
		t.Fatalf("pending %+v", snap.Pending)
	}
	choose = 0 // none now
	s.finish <- false
	eventually(t, func() bool { return settle(t, d).Reasons[1] == "next_build chose no request to start now" })
	noStart(t, d, f)
	choose = 99 // not pending: the default, the oldest
	d.Add(req(4, "b", 0, 0))
	if s := next(t, f); s.req.ID != 1 {
		t.Fatalf("started %d, want 1", s.req.ID)
	}
}

// TestNextBuildSeveralWorkers: next_build is asked again for each start in
// one pass; requests passed over stay in order.
func TestNextBuildSeveralWorkers(t *testing.T) {
	b := Builder{Name: "b", Workers: []string{"w1", "w2"}, NextBuild: func(rs []store.BuildRequest) (int64, error) {
		return rs[len(rs)-1].ID, nil // the newest
	}}
	d, f := setup(t, Config{Builders: []Builder{b}})
	d.Add(req(1, "b", 0, 3*time.Hour), req(2, "b", 0, 2*time.Hour), req(3, "b", 0, time.Hour))
	settle(t, d)
	d.Attached("w1")
	d.Attached("w2")
	s1, s2 := next(t, f), next(t, f)
	ids := map[int64]bool{s1.req.ID: true, s2.req.ID: true}
	if !ids[3] || !ids[2] {
		t.Fatalf("started %d and %d, want 3 and 2", s1.req.ID, s2.req.ID)
	}
	if p := settle(t, d).Pending; len(p) != 1 || p[0].ID != 1 {
		t.Fatalf("pending %+v", p)
	}
}

// eventually waits until ok holds (events sent by other goroutines, such
// as a build's end, arrive in their own time).
func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
