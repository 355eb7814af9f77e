package store

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/starforge/starforge/master/result"
)

func TestBuildLifecycle(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "proj")[0]
	wid := must(s.EnsureWorker(ctx, "linux-1"))(t)
	bs, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bid}})
	if err != nil {
		t.Fatal(err)
	}
	b := must(s.AddBuild(ctx, NewBuild{BuilderID: bid, RequestID: reqs[0].ID, WorkerID: wid, StartedAt: at(5),
		Properties: map[string]Property{"buildnumber": {1, "Build"}}}))(t)
	want := Build{ID: b.ID, Number: 1, BuilderID: bid, BuilderName: "proj", RequestID: reqs[0].ID, BuildsetID: bs.ID,
		WorkerID: wid, WorkerName: "linux-1", StartedAt: at(5), StateString: "starting", Results: result.None}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("AddBuild = %+v\nwant %+v", b, want)
	}
	if g := must(s.GetBuild(ctx, b.ID))(t); !reflect.DeepEqual(g, want) {
		t.Errorf("GetBuild = %+v\nwant %+v", g, want)
	}
	if g := must(s.GetBuildByNumber(ctx, bid, 1))(t); g.ID != b.ID {
		t.Errorf("GetBuildByNumber = %+v", g)
	}
	ok(t, s.SetBuildState(ctx, b.ID, "building"))
	ok(t, s.SetBuildProperty(ctx, b.ID, "got_revision", Property{"abc123", "Git"}))
	ok(t, s.SetBuildProperty(ctx, b.ID, "buildnumber", Property{1.5, "Override"}))
	props := must(s.BuildProperties(ctx, b.ID))(t)
	wantProps := map[string]Property{"buildnumber": {1.5, "Override"}, "got_revision": {"abc123", "Git"}}
	if !reflect.DeepEqual(props, wantProps) {
		t.Errorf("BuildProperties = %v, want %v", props, wantProps)
	}
	if g := must(s.GetBuild(ctx, b.ID))(t); g.StateString != "building" {
		t.Errorf("state = %q", g.StateString)
	}
	ok(t, s.FinishBuild(ctx, b.ID, result.Warnings, "build warnings", at(9)))
	g := must(s.GetBuild(ctx, b.ID))(t)
	if g.Results != result.Warnings || !g.CompleteAt.Equal(at(9)) || g.StateString != "build warnings" {
		t.Errorf("finished build = %+v", g)
	}
	if err := s.FinishBuild(ctx, b.ID, result.Success, "", at(10)); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("second FinishBuild: %v, want ErrAlreadyFinished", err)
	}

	notFound := []struct {
		name string
		err  error
	}{
		{"GetBuild", func() error { _, err := s.GetBuild(ctx, 999); return err }()},
		{"GetBuildByNumber", func() error { _, err := s.GetBuildByNumber(ctx, bid, 2); return err }()},
		{"SetBuildState", s.SetBuildState(ctx, 999, "x")},
		{"FinishBuild", s.FinishBuild(ctx, 999, result.Success, "", at(1))},
		{"SetBuildProperty", s.SetBuildProperty(ctx, 999, "p", Property{1, "x"})},
		{"AddBuild unknown builder", func() error { _, err := s.AddBuild(ctx, NewBuild{BuilderID: 999}); return err }()},
		{"AddBuild unknown worker", func() error { _, err := s.AddBuild(ctx, NewBuild{BuilderID: bid, WorkerID: 999}); return err }()},
		{"AddStep", func() error { _, err := s.AddStep(ctx, 999, 1, "x"); return err }()},
	}
	for _, tt := range notFound {
		if !errors.Is(tt.err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", tt.name, tt.err)
		}
	}
}

// Build numbers are 1, 2, 3, ... per builder, without gaps or repeats, when
// many goroutines add builds at once.
func TestBuildNumbersConcurrent(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "a", "b", "c")
	const goroutines, perG = 30, 10
	var mu sync.Mutex
	numbers := map[int64][]int{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				bid := bids[(g+i)%len(bids)]
				b, err := s.AddBuild(ctx, NewBuild{BuilderID: bid})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				numbers[bid] = append(numbers[bid], b.Number)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for bid, ns := range numbers {
		slices.Sort(ns)
		for i, n := range ns {
			if n != i+1 {
				t.Fatalf("builder %d numbers %v: not 1..%d", bid, ns, len(ns))
			}
		}
		total += len(ns)
	}
	if total != goroutines*perG {
		t.Errorf("%d builds, want %d", total, goroutines*perG)
	}
}

// addBuilds inserts n builds round-robin over builders and workers in one
// transaction (much faster than n AddBuild calls) and returns their ids.
// Every runningEvery'th build, starting with the first, is left running.
func addBuilds(t testing.TB, s *Store, n int, builders, workers []int64, runningEvery int) []int64 {
	t.Helper()
	ids := make([]int64, 0, n)
	next := map[int64]int{}
	err := s.write(t.Context(), 0, func(tx *wtx) error {
		ids = ids[:0]
		clear(next)
		for i := range n {
			bid := builders[i%len(builders)]
			next[bid]++
			var completeAt, results any
			if i%runningEvery != 0 {
				completeAt, results = int64(i+1), int64(result.Success)
			}
			var id int64
			if err := tx.queryRow(`INSERT INTO builds (number, builderid, workerid, started_at, complete_at, results, state_string)
				VALUES (?, ?, ?, ?, ?, ?, 'x') RETURNING id`, next[bid], bid, workers[i%len(workers)], int64(i), completeAt, results).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestListBuildsPagination(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "a", "b", "c")
	w1, w2 := must(s.EnsureWorker(ctx, "w1"))(t), must(s.EnsureWorker(ctx, "w2"))(t)
	ids := addBuilds(t, s, 1000, bids, []int64{w1, w2}, 3)

	// want returns the ids of builds matching keep, newest first.
	want := func(keep func(i int) bool) []int64 {
		var out []int64
		for i := len(ids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	tests := []struct {
		f    BuildFilter
		want []int64
	}{
		{BuildFilter{}, want(func(int) bool { return true })},
		{BuildFilter{Limit: 7}, want(func(int) bool { return true })},
		{BuildFilter{Limit: 5000}, want(func(int) bool { return true })},
		{BuildFilter{BuilderID: bids[1], Limit: 33}, want(func(i int) bool { return i%3 == 1 })},
		{BuildFilter{WorkerID: w2, Limit: 50}, want(func(i int) bool { return i%2 == 1 })},
		{BuildFilter{RunningOnly: true, Limit: 25}, want(func(i int) bool { return i%3 == 0 })},
		{BuildFilter{BuilderID: bids[0], WorkerID: w1, RunningOnly: true, Limit: 10}, want(func(i int) bool { return i%3 == 0 && i%2 == 0 })},
		{BuildFilter{Before: ids[500], Limit: 100}, want(func(i int) bool { return i < 500 })},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.f), func(t *testing.T) {
			var got []int64
			f := tt.f
			for pages := 0; ; pages++ {
				page := must(s.ListBuilds(ctx, f))(t)
				if len(page) == 0 {
					break
				}
				if len(page) > pageLimit(f.Limit) {
					t.Fatalf("page of %d > limit %d", len(page), pageLimit(f.Limit))
				}
				for _, b := range page {
					got = append(got, b.ID)
				}
				f.Before = page[len(page)-1].ID
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %d builds %v...\nwant %d %v...", len(got), got[:min(5, len(got))], len(tt.want), tt.want[:min(5, len(tt.want))])
			}
		})
	}
	page := must(s.ListBuilds(ctx, BuildFilter{Limit: 1}))(t) // build 999: builder a, worker w2, running
	if b := page[0]; b.BuilderName != "a" || b.WorkerName != "w2" || b.Results != result.None || !b.CompleteAt.IsZero() {
		t.Errorf("newest build = %+v", b)
	}
}

func TestSteps(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	b := must(s.AddBuild(ctx, NewBuild{BuilderID: bid}))(t)
	st1 := must(s.AddStep(ctx, b.ID, 1, "git"))(t)
	st2 := must(s.AddStep(ctx, b.ID, 2, "test"))(t)
	st3 := must(s.AddStep(ctx, b.ID, 3, "test"))(t)
	if st3.Name != "test_2" {
		t.Errorf("duplicate step name became %q, want test_2", st3.Name)
	}
	if _, err := s.AddStep(ctx, b.ID, 2, "other"); err == nil {
		t.Error("AddStep with a duplicate number succeeded")
	}
	ok(t, s.StartStep(ctx, st1.ID, at(1)))
	ok(t, s.SetStepState(ctx, st1.ID, "updating"))
	ok(t, s.FinishStep(ctx, st1.ID, result.Success, "updated", at(2)))
	ok(t, s.SetStepHidden(ctx, st2.ID, true))
	if err := s.FinishStep(ctx, st1.ID, result.Failure, "", at(3)); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("second FinishStep: %v, want ErrAlreadyFinished", err)
	}
	got := must(s.ListSteps(ctx, b.ID))(t)
	want := []Step{
		{ID: st1.ID, BuildID: b.ID, Number: 1, Name: "git", StartedAt: at(1), CompleteAt: at(2), StateString: "updated", Results: result.Success},
		{ID: st2.ID, BuildID: b.ID, Number: 2, Name: "test", StateString: "pending", Results: result.None, Hidden: true},
		{ID: st3.ID, BuildID: b.ID, Number: 3, Name: "test_2", StateString: "pending", Results: result.None},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListSteps = %+v\nwant %+v", got, want)
	}
	if g := must(s.GetStep(ctx, st3.ID))(t); !reflect.DeepEqual(g, st3) {
		t.Errorf("GetStep = %+v, want %+v", g, st3)
	}
	for name, err := range map[string]error{
		"StartStep":     s.StartStep(ctx, 999, at(1)),
		"SetStepState":  s.SetStepState(ctx, 999, "x"),
		"SetStepHidden": s.SetStepHidden(ctx, 999, true),
		"FinishStep":    s.FinishStep(ctx, 999, result.Success, "", at(1)),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(999): %v, want ErrNotFound", name, err)
		}
	}
}
