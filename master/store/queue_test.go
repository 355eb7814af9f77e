package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

// addBuilders ensures builders named names and returns their ids.
func addBuilders(t testing.TB, s *Store, names ...string) []int64 {
	t.Helper()
	ids := make([]int64, len(names))
	for i, n := range names {
		ids[i] = must(s.EnsureBuilder(t.Context(), Builder{Name: n}))(t)
	}
	return ids
}

func TestAddBuildset(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "b1", "b2")
	nb := NewBuildset{
		Reason: "push to main",
		Properties: map[string]Property{
			"branch": {"main", "Scheduler"},
			"n":      {42, "Scheduler"},
			"list":   {[]any{"a", 1}, "Force"},
		},
		SourceStamps: []SourceStamp{
			{Codebase: "lib", Repository: "https://x/lib.git", Branch: "main", Revision: "abc"},
			{Codebase: "app", Repository: "https://x/app.git", Branch: "main", Revision: "def", Project: "p"},
		},
		BuilderIDs:  bids,
		Priority:    3,
		SubmittedAt: at(10),
	}
	bs, reqs := func() (Buildset, []BuildRequest) {
		bs, reqs, err := s.AddBuildset(ctx, nb)
		if err != nil {
			t.Fatal(err)
		}
		return bs, reqs
	}()
	got := must(s.GetBuildset(ctx, bs.ID))(t)
	if !reflect.DeepEqual(got, bs) {
		t.Errorf("GetBuildset = %+v\nAddBuildset returned %+v", got, bs)
	}
	if got.SourceStamps[0].Codebase != "app" || got.Properties["n"].Value != int64(42) || got.Results != result.None {
		t.Errorf("buildset = %+v", got)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, br := range reqs {
		g := must(s.GetRequest(ctx, br.ID))(t)
		if !reflect.DeepEqual(g, br) {
			t.Errorf("GetRequest = %+v\nAddBuildset returned %+v", g, br)
		}
		if br.BuilderID != bids[i] || br.BuilderName != []string{"b1", "b2"}[i] || br.Priority != 3 ||
			!br.SubmittedAt.Equal(at(10)) || br.Claimed || br.Complete || br.Results != result.None {
			t.Errorf("request %d = %+v", i, br)
		}
	}

	// The same source stamp again is shared, not copied.
	bs2, _, err := s.AddBuildset(ctx, NewBuildset{SourceStamps: nb.SourceStamps[:1], BuilderIDs: bids[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if bs2.SourceStamps[0].ID != got.SourceStamps[1].ID {
		t.Errorf("source stamp not shared: %+v vs %+v", bs2.SourceStamps, got.SourceStamps)
	}

	// An unknown builder fails the whole buildset.
	_, _, err = s.AddBuildset(ctx, NewBuildset{Reason: "bad", BuilderIDs: []int64{bids[0], 999}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("AddBuildset with unknown builder: %v, want ErrNotFound", err)
	}
	if _, err := s.GetBuildset(ctx, bs2.ID+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed AddBuildset left buildset %d: %v", bs2.ID+1, err)
	}
	if _, _, err := s.AddBuildset(ctx, NewBuildset{}); err == nil {
		t.Error("AddBuildset without builders succeeded")
	}
	if _, _, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bids[0], bids[0]}}); err == nil {
		t.Error("AddBuildset with a builder twice succeeded")
	}
}

func TestPendingOrder(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	// add submits a one-request buildset and returns the request id.
	add := func(prio, sec int) int64 {
		_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bid}, Priority: prio, SubmittedAt: at(sec)})
		if err != nil {
			t.Fatal(err)
		}
		return reqs[0].ID
	}
	old := add(0, 1)
	mid := add(0, 5)
	young := add(0, 9)
	sameAgeA := add(0, 7) // same submitted_at: id breaks the tie
	sameAgeB := add(0, 7)
	urgent := add(10, 20)
	lowOld := add(-1, 0)

	pending := func() []int64 {
		var ids []int64
		for _, br := range must(s.PendingRequests(ctx))(t) {
			ids = append(ids, br.ID)
		}
		return ids
	}
	requeue := func(id int64, toHead bool, sec int) {
		t.Helper()
		if err := s.ClaimRequest(ctx, id, at(sec)); err != nil {
			t.Fatal(err)
		}
		if err := s.UnclaimRequest(ctx, id, toHead, at(sec)); err != nil {
			t.Fatal(err)
		}
	}

	steps := []struct {
		name string
		do   func()
		want []int64
	}{
		{"priority then age then id", func() {}, []int64{urgent, old, mid, sameAgeA, sameAgeB, young, lowOld}},
		{"claimed leave the queue", func() { ok(t, s.ClaimRequest(ctx, mid, at(30))) }, []int64{urgent, old, sameAgeA, sameAgeB, young, lowOld}},
		{"requeue to head", func() { ok(t, s.UnclaimRequest(ctx, mid, true, at(31))) }, []int64{urgent, mid, old, sameAgeA, sameAgeB, young, lowOld}},
		{"latest requeue first", func() { requeue(young, true, 32) }, []int64{urgent, young, mid, old, sameAgeA, sameAgeB, lowOld}},
		{"latest requeue first even at the same time", func() { requeue(sameAgeB, true, 32) }, []int64{urgent, sameAgeB, young, mid, old, sameAgeA, lowOld}},
		{"requeue by age", func() { requeue(young, false, 33) }, []int64{urgent, sameAgeB, mid, old, sameAgeA, young, lowOld}},
		{"head stays within priority", func() { requeue(lowOld, true, 34) }, []int64{urgent, sameAgeB, mid, old, sameAgeA, young, lowOld}},
		{"completed leave the queue", func() { must(s.CompleteRequest(ctx, old, result.Cancelled, at(35)))(t) }, []int64{urgent, sameAgeB, mid, sameAgeA, young, lowOld}},
	}
	for _, st := range steps {
		st.do()
		if got := pending(); !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: pending = %v, want %v", st.name, got, st.want)
		}
	}
}

func TestClaimRequest(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bid}})
	if err != nil {
		t.Fatal(err)
	}
	id := reqs[0].ID
	if err := s.ClaimRequest(ctx, id, at(1)); err != nil {
		t.Fatal(err)
	}
	br := must(s.GetRequest(ctx, id))(t)
	if !br.Claimed || !br.ClaimedAt.Equal(at(1)) {
		t.Errorf("after claim: %+v", br)
	}
	if err := s.ClaimRequest(ctx, id, at(2)); !errors.Is(err, ErrAlreadyClaimed) {
		t.Errorf("second claim: %v, want ErrAlreadyClaimed", err)
	}
	if err := s.ClaimRequest(ctx, 999, at(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim of missing request: %v, want ErrNotFound", err)
	}
	if done := must(s.CompleteRequest(ctx, id, result.Success, at(3)))(t); !done {
		t.Error("buildset not complete")
	}
	if err := s.ClaimRequest(ctx, id, at(4)); !errors.Is(err, ErrAlreadyClaimed) {
		t.Errorf("claim of complete request: %v, want ErrAlreadyClaimed", err)
	}
	if err := s.UnclaimRequest(ctx, id, true, at(4)); !errors.Is(err, ErrNotClaimed) {
		t.Errorf("unclaim of complete request: %v, want ErrNotClaimed", err)
	}
	if _, err := s.CompleteRequest(ctx, id, result.Success, at(4)); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("second complete: %v, want ErrAlreadyFinished", err)
	}
}

// Of many goroutines claiming the same request, exactly one wins.
func TestClaimRace(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{bid}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- s.ClaimRequest(ctx, reqs[0].ID, at(1)) }()
	}
	wins := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			wins++
		case !errors.Is(err, ErrAlreadyClaimed):
			t.Errorf("claim: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d claims won, want 1", wins)
	}
}

func TestCompleteRequestWorst(t *testing.T) {
	tests := []struct {
		results []result.Result
		want    result.Result
	}{
		{[]result.Result{result.Success}, result.Success},
		{[]result.Result{result.Success, result.Warnings, result.Success}, result.Warnings},
		{[]result.Result{result.Skipped, result.Success}, result.Success},
		{[]result.Result{result.Failure, result.Exception, result.Warnings}, result.Exception},
		{[]result.Result{result.Retry, result.Cancelled, result.Success}, result.Cancelled},
	}
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "b1", "b2", "b3")
	for _, tt := range tests {
		bs, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: bids[:len(tt.results)]})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range tt.results {
			done := must(s.CompleteRequest(ctx, reqs[i].ID, r, at(i)))(t)
			if last := i == len(tt.results)-1; done != last {
				t.Errorf("%v: CompleteRequest #%d: buildset complete = %v, want %v", tt.results, i, done, last)
			}
			got := must(s.GetBuildset(ctx, bs.ID))(t)
			if !done && (got.Complete || got.Results != result.None) {
				t.Errorf("%v: buildset finished early: %+v", tt.results, got)
			}
		}
		got := must(s.GetBuildset(ctx, bs.ID))(t)
		if !got.Complete || got.Results != tt.want || !got.CompleteAt.Equal(at(len(tt.results)-1)) {
			t.Errorf("%v: buildset = complete %v results %v at %v; want results %v", tt.results, got.Complete, got.Results, got.CompleteAt, tt.want)
		}
		if br := must(s.GetRequest(ctx, reqs[0].ID))(t); !br.Complete || br.Results != tt.results[0] {
			t.Errorf("%v: request = %+v", tt.results, br)
		}
	}
}

func TestListRequests(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "b1", "b2")
	var all, b2, pending []int64 // newest first
	for i := range 50 {
		_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: bids, SubmittedAt: at(i)})
		if err != nil {
			t.Fatal(err)
		}
		for _, br := range reqs {
			if i%3 == 0 {
				ok(t, s.ClaimRequest(ctx, br.ID, at(i)))
			} else if br.BuilderID == bids[1] {
				pending = append([]int64{br.ID}, pending...)
			}
			all = append([]int64{br.ID}, all...)
			if br.BuilderID == bids[1] {
				b2 = append([]int64{br.ID}, b2...)
			}
		}
	}
	tests := []struct {
		name string
		f    RequestFilter
		want []int64
	}{
		{"all", RequestFilter{Limit: 7}, all},
		{"builder", RequestFilter{BuilderID: bids[1], Limit: 9}, b2},
		{"pending of builder", RequestFilter{BuilderID: bids[1], PendingOnly: true, Limit: 4}, pending},
		{"default limit", RequestFilter{}, all},
	}
	for _, tt := range tests {
		var got []int64
		f := tt.f
		for {
			page := must(s.ListRequests(ctx, f))(t)
			if len(page) == 0 {
				break
			}
			if lim := pageLimit(f.Limit); len(page) > lim {
				t.Fatalf("%s: page of %d > limit %d", tt.name, len(page), lim)
			}
			for _, br := range page {
				got = append(got, br.ID)
			}
			f.Before = page[len(page)-1].ID
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

func TestCancelRequest(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	b1, err := s.EnsureBuilder(ctx, Builder{Name: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := s.AddBuildset(ctx, NewBuildset{Reason: "r", BuilderIDs: []int64{b1}, SubmittedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_, claimed, err := s.AddBuildset(ctx, NewBuildset{Reason: "r", BuilderIDs: []int64{b1}, SubmittedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimRequest(ctx, claimed[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	done, err := s.CancelRequest(ctx, reqs[0].ID, "builder b1 was removed", time.Now())
	if err != nil || !done {
		t.Fatalf("CancelRequest = %v, %v; want the buildset complete", done, err)
	}
	got, err := s.GetRequest(ctx, reqs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete || got.Results != result.Cancelled || got.CancelReason != "builder b1 was removed" {
		t.Fatalf("cancelled request = %+v", got)
	}
	bs, err := s.GetBuildset(ctx, reqs[0].BuildsetID)
	if err != nil || !bs.Complete || bs.Results != result.Cancelled {
		t.Fatalf("buildset = %+v, %v", bs, err)
	}
	tests := []struct {
		name string
		id   int64
		want error
	}{
		{"again", reqs[0].ID, ErrAlreadyFinished},
		{"claimed", claimed[0].ID, ErrAlreadyClaimed},
		{"unknown", 999, ErrNotFound},
	}
	for _, tt := range tests {
		if _, err := s.CancelRequest(ctx, tt.id, "x", time.Now()); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	pending, err := s.PendingRequests(ctx)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending after cancel = %v, %v", pending, err)
	}
}
