package store

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/starforge/starforge/master/result"
)

// TestRecover simulates a master that dies mid-build: the store is closed
// with builds, steps and logs running and requests claimed, then reopened
// and recovered as the next master would.
func TestRecover(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "master.db")
	s := must(Open(path))(t)
	bid := addBuilders(t, s, "b")[0]
	w1 := must(s.EnsureWorker(ctx, "w1"))(t)
	w2 := must(s.EnsureWorker(ctx, "w2"))(t)
	ok(t, s.SetWorkerConnected(ctx, w1, true, nil, at(0)))
	ok(t, s.SetWorkerConnected(ctx, w2, true, nil, at(0)))

	add := func(sec int) int64 {
		_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bid}, SubmittedAt: at(sec)})
		if err != nil {
			t.Fatal(err)
		}
		return reqs[0].ID
	}
	// done: a build that finished normally before the crash.
	done := add(1)
	ok(t, s.ClaimRequest(ctx, done, at(2)))
	doneBuild := must(s.AddBuild(ctx, NewBuild{BuilderID: bid, RequestID: done, WorkerID: w1, StartedAt: at(2)}))(t)
	ok(t, s.FinishBuild(ctx, doneBuild.ID, result.Success, "build successful", at(3)))
	must(s.CompleteRequest(ctx, done, result.Success, at(3)))(t)

	// running: a build in its second step, with an open log.
	running := add(4)
	pending := add(5)
	ok(t, s.ClaimRequest(ctx, running, at(6)))
	rb := must(s.AddBuild(ctx, NewBuild{BuilderID: bid, RequestID: running, WorkerID: w2, StartedAt: at(6)}))(t)
	st1 := must(s.AddStep(ctx, rb.ID, 1, "git"))(t)
	ok(t, s.StartStep(ctx, st1.ID, at(6)))
	ok(t, s.FinishStep(ctx, st1.ID, result.Success, "updated", at(7)))
	st2 := must(s.AddStep(ctx, rb.ID, 2, "make"))(t)
	ok(t, s.StartStep(ctx, st2.ID, at(7)))
	lg := must(s.AddLog(ctx, st2.ID, "stdio", LogStdio))(t)
	must2(t)(s.AppendLog(ctx, lg.ID, []byte("ocompiling\n")))

	// orphan: claimed, but the master died before it recorded a build.
	orphan := add(8)
	ok(t, s.ClaimRequest(ctx, orphan, at(9)))
	ok(t, s.Close()) // the crash: nothing else gets finished

	s = must(Open(path))(t)
	defer s.Close()
	stats := must(s.Recover(ctx, at(100)))(t)
	if want := (RecoverStats{Builds: 1, Requests: 2, Workers: 2}); stats != want {
		t.Errorf("Recover = %+v, want %+v", stats, want)
	}

	b := must(s.GetBuild(ctx, rb.ID))(t)
	if b.Results != result.Retry || b.StateString != InterruptedState || !b.CompleteAt.Equal(at(100)) {
		t.Errorf("running build after Recover = %+v", b)
	}
	if b := must(s.GetBuild(ctx, doneBuild.ID))(t); b.Results != result.Success || !b.CompleteAt.Equal(at(3)) {
		t.Errorf("finished build touched by Recover: %+v", b)
	}
	steps := must(s.ListSteps(ctx, rb.ID))(t)
	if steps[0].Results != result.Success || !steps[0].CompleteAt.Equal(at(7)) {
		t.Errorf("finished step touched by Recover: %+v", steps[0])
	}
	if steps[1].Results != result.Retry || !steps[1].CompleteAt.Equal(at(100)) {
		t.Errorf("running step after Recover = %+v", steps[1])
	}
	if l := must(s.GetLog(ctx, lg.ID))(t); !l.Complete || l.NumLines != 1 {
		t.Errorf("log after Recover = %+v", l)
	}

	// Both claimed requests are back, ahead of the pending one, oldest first.
	var ids []int64
	for _, br := range must(s.PendingRequests(ctx))(t) {
		ids = append(ids, br.ID)
	}
	if want := []int64{running, orphan, pending}; !slices.Equal(ids, want) {
		t.Errorf("pending after Recover = %v, want %v", ids, want)
	}
	if br := must(s.GetRequest(ctx, done))(t); !br.Complete || br.Results != result.Success {
		t.Errorf("complete request touched by Recover: %+v", br)
	}

	for _, w := range must(s.ListWorkers(ctx))(t) {
		if w.Connected || !w.LastDisconnected.Equal(at(100)) {
			t.Errorf("worker after Recover = %+v", w)
		}
	}

	// The retried build gets the next number; a second Recover finds nothing.
	ok(t, s.ClaimRequest(ctx, running, at(101)))
	if nb := must(s.AddBuild(ctx, NewBuild{BuilderID: bid, RequestID: running, WorkerID: w1}))(t); nb.Number != 3 {
		t.Errorf("retry build number %d, want 3", nb.Number)
	}
	ok(t, s.UnclaimRequest(ctx, running, true, at(102)))
	stats = must(s.Recover(ctx, at(200)))(t)
	if want := (RecoverStats{Builds: 1}); stats != want {
		t.Errorf("second Recover = %+v, want %+v", stats, want)
	}
}

// TestRecoverSettlesFinishedBuilds: a master that died after recording a
// build's end but before completing its request must not build it again.
func TestRecoverSettlesFinishedBuilds(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "b")
	_, reqs := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids, SourceStamps: []SourceStamp{{}}})
	ok(t, s.ClaimRequest(ctx, reqs[0].ID, at(1)))
	b := must(s.AddBuild(ctx, NewBuild{BuilderID: bids[0], RequestID: reqs[0].ID}))(t)
	ok(t, s.FinishBuild(ctx, b.ID, result.Success, "success", at(2)))
	st := must(s.Recover(ctx, at(3)))(t)
	if st.Requests != 0 {
		t.Errorf("Recover requeued %d requests, want none", st.Requests)
	}
	r := must(s.GetRequest(ctx, reqs[0].ID))(t)
	if !r.Complete || r.Results != result.Success {
		t.Errorf("request = %+v, want complete SUCCESS", r)
	}
}
