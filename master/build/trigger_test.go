package build

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// fakeTriggerer adds real buildsets for the builder "kid" and answers
// WaitBuildset from results, or, while block is set, waits until the step
// gives up.
type fakeTriggerer struct {
	st      *store.Store
	waiting chan int64 // the buildset of each WaitBuildset call

	mu        sync.Mutex
	triggered []int64
	results   map[int64]result.Result
	block     bool
}

func (f *fakeTriggerer) Trigger(ctx context.Context, r TriggerRequest) (store.Buildset, []store.BuildRequest, error) {
	b, err := f.st.GetBuilderByName(ctx, "kid")
	if err != nil {
		return store.Buildset{}, nil, err
	}
	props := maps.Clone(r.Properties)
	if props == nil {
		props = map[string]store.Property{}
	}
	props["scheduler"] = store.Property{Value: r.Scheduler, Source: "Scheduler"}
	bs, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{Reason: r.Reason, Properties: props, SourceStamps: r.SourceStamps,
		ChangeIDs: r.ChangeIDs, ParentBuildID: r.ParentBuildID, ParentRelationship: r.ParentRelationship, BuilderIDs: []int64{b.ID}})
	if err == nil {
		f.mu.Lock()
		f.triggered = append(f.triggered, bs.ID)
		f.mu.Unlock()
	}
	return bs, reqs, err
}

func (f *fakeTriggerer) WaitBuildset(ctx context.Context, id int64) (result.Result, error) {
	f.waiting <- id
	f.mu.Lock()
	res, ok := f.results[id]
	block := f.block
	f.mu.Unlock()
	if ok {
		return res, nil
	}
	if !block {
		return result.None, errors.New("no result for this buildset")
	}
	<-ctx.Done()
	return result.None, ctx.Err()
}

// CancelBuildset cancels nothing, as a master that dies cancels nothing.
func (f *fakeTriggerer) CancelBuildset(context.Context, int64, string) error { return nil }

// A parent build interrupted while it waits for the builds it triggered
// (the master stopped, or died and marked it RETRY at start) runs again:
// its trigger step resumes the buildsets it had triggered rather than
// triggering them again, unless they were cancelled with it.
func TestTriggerResumesAfterRetry(t *testing.T) {
	for _, tt := range []struct {
		name      string
		cancelled bool // the child buildset was cancelled with its parent
	}{
		{"resumed", false},
		{"cancelled child triggered again", true},
	} {
		t.Run(tt.name, func(t *testing.T) { testTriggerResumes(t, tt.cancelled) })
	}
}

func testTriggerResumes(t *testing.T, cancelled bool) {
	h := newHarness(t, `
worker("w", "p")
builder("parent", ["w"], [trigger(["kids"], wait_for_finish = True, set_properties = {"x": "1"}, name = "kick")])
builder("kid", ["w"], [shell("true")])
triggerable("kids", ["kid"])
`)
	h.startAgent("w")
	f := &fakeTriggerer{st: h.st, waiting: make(chan int64, 4), results: map[int64]result.Result{}, block: true}
	h.runner.Triggerer = f
	ctx := context.Background()
	parent, err := h.st.GetBuilderByName(ctx, "parent")
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := h.st.AddBuildset(ctx, store.NewBuildset{Reason: "test", BuilderIDs: []int64{parent.ID},
		SourceStamps: []store.SourceStamp{{Branch: "main", Revision: "abc"}}})
	if err != nil {
		t.Fatal(err)
	}
	req := reqs[0]

	done := make(chan bool, 1)
	go func() { done <- h.runner.RunBuild(req, "w") }()
	var child int64
	select {
	case child = <-f.waiting:
	case <-time.After(60 * time.Second):
		t.Fatal("the trigger step did not wait")
	}
	h.runner.mu.Lock()
	var first *run
	for _, b := range h.runner.running {
		first = b
	}
	h.runner.mu.Unlock()
	first.stop("the master is stopping", result.Retry)
	<-done
	if cancelled {
		creqs, err := h.st.BuildsetRequests(ctx, child)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.st.CancelRequest(ctx, creqs[0].ID, "its parent was stopped", time.Now()); err != nil {
			t.Fatal(err)
		}
	}

	want := child
	f.mu.Lock()
	f.results[child] = result.Warnings
	if cancelled {
		want = child + 1 // the next buildset, triggered again
		f.results[want] = result.Warnings
	}
	f.block = false
	f.mu.Unlock()
	if requeue := h.runner.RunBuild(req, "w"); requeue {
		t.Fatal("the second attempt was requeued")
	}
	if got := <-f.waiting; got != want {
		t.Errorf("the second attempt waited for buildset %d, want %d", got, want)
	}
	f.mu.Lock()
	triggered := f.triggered
	f.mu.Unlock()
	if wantN := map[bool]int{false: 1, true: 2}[cancelled]; len(triggered) != wantN {
		t.Errorf("triggered buildsets %v, want %d", triggered, wantN)
	}
	builds, err := h.st.ListBuilds(ctx, store.BuildFilter{RequestID: req.ID})
	if err != nil || len(builds) != 2 {
		t.Fatalf("builds %+v, %v", builds, err)
	}
	if builds[1].Results != result.Retry || builds[0].Results != result.Warnings {
		t.Errorf("results %v then %v, want retry then warnings", builds[1].Results, builds[0].Results)
	}
	steps, err := h.st.ListSteps(ctx, builds[0].ID)
	if err != nil || len(steps) == 0 {
		t.Fatalf("steps %v, %v", steps, err)
	}
	if log := h.log(steps[0]); strings.Contains(log, "resumed kids: buildset") == cancelled {
		t.Errorf("step log:\n%s", log)
	}
}
