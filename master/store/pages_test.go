package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

func TestArtifacts(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	b1 := must(s.AddBuild(ctx, NewBuild{BuilderID: bid}))(t)
	b2 := must(s.AddBuild(ctx, NewBuild{BuilderID: bid}))(t)
	st := must(s.AddStep(ctx, b1.ID, 1, "upload"))(t)

	in := []Artifact{
		{BuildID: b1.ID, StepID: st.ID, Name: "z.tar.gz", Path: "out/z.tar.gz", SHA256: "ab", Size: 10, ModTime: at(1), CreatedAt: at(2)},
		{BuildID: b1.ID, Name: "a.txt", Path: "/abs/a.txt", SHA256: "cd", Size: 0},
	}
	got := must(s.AddArtifacts(ctx, in))(t)
	if got[0].ID == 0 || got[1].ID <= got[0].ID || got[1].CreatedAt.IsZero() {
		t.Fatalf("added %+v", got)
	}
	list := must(s.ListArtifacts(ctx, b1.ID))(t)
	if len(list) != 2 || list[0].Name != "a.txt" || list[1] != got[0] {
		t.Errorf("ListArtifacts = %+v\nwant a.txt, then %+v", list, got[0])
	}
	if list[0].StepID != 0 || !list[0].ModTime.IsZero() || list[0].Path != "/abs/a.txt" {
		t.Errorf("optional fields: %+v", list[0])
	}
	if a := must(s.GetArtifact(ctx, got[0].ID))(t); a != got[0] {
		t.Errorf("GetArtifact = %+v, want %+v", a, got[0])
	}
	if l := must(s.ListArtifacts(ctx, b2.ID))(t); len(l) != 0 {
		t.Errorf("build 2 has %v", l)
	}
	if _, err := s.GetArtifact(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetArtifact(999): %v", err)
	}

	// All or nothing: a bad build id loses the whole batch.
	_, err := s.AddArtifacts(ctx, []Artifact{{BuildID: b2.ID, Name: "ok", Path: "ok"}, {BuildID: 999, Name: "x", Path: "x"}})
	if err == nil {
		t.Fatal("an artifact of build 999 was added")
	}
	if l := must(s.ListArtifacts(ctx, b2.ID))(t); len(l) != 0 {
		t.Errorf("a failed batch left %v", l)
	}
	if _, err := s.AddArtifacts(ctx, []Artifact{{BuildID: b2.ID, Name: "", Path: "p"}}); err == nil {
		t.Error("an artifact without a name was added")
	}
}

// TestQueryPages walks every keyset query in both directions, with and
// without filters, and compares with what the rows are known to be.
func TestQueryPages(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "a", "b")
	w := must(s.EnsureWorker(ctx, "w"))(t)
	var reqs []BuildRequest
	var sets []Buildset
	var builds []Build
	for i := range 12 {
		bs, rs := addBS(t, s, ctx, NewBuildset{Reason: fmt.Sprint(i), BuilderIDs: bids,
			SourceStamps: []SourceStamp{{Repository: "r", Revision: fmt.Sprint(i)}}})
		sets = append(sets, bs)
		reqs = append(reqs, rs...)
		if i%3 != 0 {
			ok(t, s.ClaimRequest(ctx, rs[0].ID, time.Time{}))
			b := must(s.AddBuild(ctx, NewBuild{BuilderID: bids[0], RequestID: rs[0].ID, WorkerID: w}))(t)
			if i%2 == 0 {
				ok(t, s.FinishBuild(ctx, b.ID, result.Success, "done", time.Time{}))
			}
			builds = append(builds, b)
		}
	}
	child, _ := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[1:], ParentBuildID: builds[0].ID, ParentRelationship: "trigger"})
	cs := must(s.AddChanges(ctx, []Change{{Author: "x", Revision: "c1"}, {Author: "y", Revision: "c2"}, {Author: "z", Revision: "c3"}}))(t)

	// walk pages through a query with page size 2 and returns the ids.
	walk := func(t *testing.T, asc bool, q func(p Page) []int64) []int64 {
		t.Helper()
		var all []int64
		p := Page{Ascending: asc, Limit: 2}
		for range 100 {
			ids := q(p)
			if len(ids) == 0 {
				return all
			}
			all = append(all, ids...)
			if asc {
				p.After = ids[len(ids)-1]
			} else {
				p.Before = ids[len(ids)-1]
			}
		}
		t.Fatal("paging does not end")
		return nil
	}
	ids := func(n int, id func(i int) int64) []int64 {
		out := make([]int64, n)
		for i := range n {
			out[i] = id(i)
		}
		return out
	}
	buildIDs := func(f BuildQuery) func(Page) []int64 {
		return func(p Page) []int64 {
			f.Page = p
			bs := must(s.QueryBuilds(ctx, f))(t)
			return ids(len(bs), func(i int) int64 { return bs[i].ID })
		}
	}
	reqIDs := func(f RequestQuery) func(Page) []int64 {
		return func(p Page) []int64 {
			f.Page = p
			rs := must(s.QueryRequests(ctx, f))(t)
			return ids(len(rs), func(i int) int64 { return rs[i].ID })
		}
	}
	setIDs := func(f BuildsetQuery) func(Page) []int64 {
		return func(p Page) []int64 {
			f.Page = p
			rs := must(s.QueryBuildsets(ctx, f))(t)
			return ids(len(rs), func(i int) int64 { return rs[i].ID })
		}
	}
	changeIDs := func(p Page) []int64 {
		rs := must(s.QueryChanges(ctx, p))(t)
		return ids(len(rs), func(i int) int64 { return rs[i].ID })
	}
	ssIDs := func(p Page) []int64 {
		rs := must(s.QuerySourceStamps(ctx, p))(t)
		return ids(len(rs), func(i int) int64 { return rs[i].ID })
	}
	// sel returns the ids of the first n items that keep accepts, ascending.
	sel := func(n int, id func(i int) int64, keep func(i int) bool) []int64 {
		var out []int64
		for i := range n {
			if keep(i) {
				out = append(out, id(i))
			}
		}
		slices.Sort(out)
		return out
	}
	all := func(int) bool { return true }
	bID := func(i int) int64 { return builds[i].ID }
	rID := func(i int) int64 { return reqs[i].ID }
	running := sel(len(builds), bID, func(i int) bool {
		b := must(s.GetBuild(ctx, builds[i].ID))(t)
		return b.CompleteAt.IsZero()
	})
	pending := sel(len(reqs), rID, func(i int) bool { return i%2 == 1 || (i/2)%3 == 0 })
	childReq := must(s.BuildsetRequests(ctx, child.ID))(t)[0].ID
	pending = append(pending, childReq)
	allSets := append(sel(len(sets), func(i int) int64 { return sets[i].ID }, all), child.ID)
	var ssAll []int64
	for _, bs := range sets {
		ssAll = append(ssAll, bs.SourceStamps[0].ID)
	}
	for _, c := range cs {
		ssAll = append(ssAll, c.SourceStampID)
	}
	slices.Sort(ssAll)
	ssAll = slices.Compact(ssAll)

	tests := []struct {
		name string
		q    func(Page) []int64
		want []int64 // ascending
	}{
		{"builds", buildIDs(BuildQuery{}), sel(len(builds), bID, all)},
		{"builds of builder a", buildIDs(BuildQuery{BuilderID: bids[0]}), sel(len(builds), bID, all)},
		{"builds of builder b", buildIDs(BuildQuery{BuilderID: bids[1]}), nil},
		{"running builds", buildIDs(BuildQuery{RunningOnly: true}), running},
		{"running builds of a on w", buildIDs(BuildQuery{RunningOnly: true, BuilderID: bids[0], WorkerID: w}), running},
		{"builds of a request", buildIDs(BuildQuery{RequestID: builds[3].RequestID}), []int64{builds[3].ID}},
		{"requests", reqIDs(RequestQuery{}), append(sel(len(reqs), rID, all), childReq)},
		{"requests of b", reqIDs(RequestQuery{BuilderID: bids[1]}), append(sel(len(reqs), rID, func(i int) bool { return i%2 == 1 }), childReq)},
		{"pending requests", reqIDs(RequestQuery{PendingOnly: true}), pending},
		{"pending requests of a", reqIDs(RequestQuery{PendingOnly: true, BuilderID: bids[0]}), sel(len(reqs), rID, func(i int) bool { return i%2 == 0 && (i/2)%3 == 0 })},
		{"requests of a buildset", reqIDs(RequestQuery{BuildsetID: sets[4].ID}), []int64{reqs[8].ID, reqs[9].ID}},
		{"buildsets", setIDs(BuildsetQuery{}), allSets},
		{"child buildsets", setIDs(BuildsetQuery{ParentBuildID: builds[0].ID}), []int64{child.ID}},
		{"changes", changeIDs, []int64{cs[0].ID, cs[1].ID, cs[2].ID}},
		{"source stamps", ssIDs, ssAll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asc := walk(t, true, tt.q)
			if !slices.Equal(asc, tt.want) {
				t.Errorf("ascending: %v, want %v", asc, tt.want)
			}
			desc := walk(t, false, tt.q)
			slices.Reverse(desc)
			if !slices.Equal(desc, tt.want) {
				t.Errorf("descending, reversed: %v, want %v", desc, tt.want)
			}
			if len(tt.want) >= 3 {
				// Both bounds at once: what lies strictly between.
				got := tt.q(Page{After: tt.want[0], Before: tt.want[len(tt.want)-1], Ascending: true, Limit: 1000})
				if !slices.Equal(got, tt.want[1:len(tt.want)-1]) {
					t.Errorf("between %d and %d: %v", tt.want[0], tt.want[len(tt.want)-1], got)
				}
			}
		})
	}

	t.Run("source stamp", func(t *testing.T) {
		ss := must(s.GetSourceStamp(ctx, sets[5].SourceStamps[0].ID))(t)
		if ss.Revision != "5" || ss.Repository != "r" || ss.CreatedAt.IsZero() || ss.Patch != nil {
			t.Errorf("got %+v", ss)
		}
		if _, err := s.GetSourceStamp(ctx, 9999); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetSourceStamp(9999): %v", err)
		}
	})
}

func TestChangeBuilds(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "a", "b")
	w := must(s.EnsureWorker(ctx, "w"))(t)
	cs := must(s.AddChanges(ctx, []Change{{Author: "x", Revision: "r1"}, {Author: "y", Revision: "r2"}, {Author: "z", Revision: "r3"}}))(t)

	// Change 1 and 2 built together; a retried build; a pending request.
	bs1, r1 := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids, ChangeIDs: []int64{cs[0].ID, cs[1].ID}})
	ok(t, s.ClaimRequest(ctx, r1[0].ID, time.Time{}))
	retried := must(s.AddBuild(ctx, NewBuild{BuilderID: bids[0], RequestID: r1[0].ID, WorkerID: w}))(t)
	ok(t, s.FinishBuild(ctx, retried.ID, result.Retry, "lost", time.Time{}))
	ok(t, s.UnclaimRequest(ctx, r1[0].ID, true, time.Time{}))
	ok(t, s.ClaimRequest(ctx, r1[0].ID, time.Time{}))
	latest := must(s.AddBuild(ctx, NewBuild{BuilderID: bids[0], RequestID: r1[0].ID, WorkerID: w}))(t)
	ok(t, s.FinishBuild(ctx, latest.ID, result.Failure, "failed", time.Time{}))
	// Change 3 built alone, and again (a rebuild).
	_, r3 := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[1:], ChangeIDs: []int64{cs[2].ID}})
	_, r4 := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[1:], ChangeIDs: []int64{cs[2].ID}})
	// A buildset of no change is not shown.
	addBS(t, s, ctx, NewBuildset{BuilderIDs: bids})

	got := must(s.ChangeBuilds(ctx, cs[0].ID, cs[2].ID))(t)
	type row struct {
		change, req, build int64
		builder            string
	}
	var rows []row
	for _, cb := range got {
		r := row{change: cb.ChangeID, req: cb.Request.ID, builder: cb.Request.BuilderName}
		if cb.Build != nil {
			r.build = cb.Build.ID
			if cb.Build.RequestID != cb.Request.ID || cb.Build.BuilderName != "a" || cb.Build.WorkerName != "w" ||
				cb.Build.Results != result.Failure || cb.Build.Number != 2 || cb.Build.BuildsetID != bs1.ID {
				t.Errorf("build %+v", cb.Build)
			}
		}
		rows = append(rows, r)
	}
	want := []row{
		{cs[2].ID, r3[0].ID, 0, "b"},
		{cs[2].ID, r4[0].ID, 0, "b"},
		{cs[1].ID, r1[0].ID, latest.ID, "a"},
		{cs[1].ID, r1[1].ID, 0, "b"},
		{cs[0].ID, r1[0].ID, latest.ID, "a"},
		{cs[0].ID, r1[1].ID, 0, "b"},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("got  %v\nwant %v", rows, want)
	}
	if got := must(s.ChangeBuilds(ctx, cs[1].ID, cs[1].ID))(t); len(got) != 2 {
		t.Errorf("change 2 alone: %d rows", len(got))
	}
}

func TestStatsHistograms(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "a", "b")
	w := must(s.EnsureWorker(ctx, "w"))(t)
	now := t0
	type spec struct {
		builder    int64
		submitted  time.Duration // before now
		wait, took time.Duration
		res        result.Result // None: still running
	}
	specs := []spec{
		{bids[0], time.Hour, 10 * time.Second, 60 * time.Second, result.Success},
		{bids[0], 2 * time.Hour, 10*time.Second + 400*time.Millisecond, 60*time.Second + 400*time.Millisecond, result.Failure},
		{bids[0], 3 * time.Hour, 30 * time.Second, 120 * time.Second, result.Warnings},
		{bids[0], 4 * time.Hour, 0, 5 * time.Second, result.Cancelled}, // left out of durations
		{bids[0], 5 * time.Hour, time.Second, 0, result.None},          // running: no duration
		{bids[0], 30 * time.Hour, 2 * time.Second, 90 * time.Second, result.Exception},
		{bids[0], 8 * 24 * time.Hour, 0, time.Second, result.Success}, // older than the week
		{bids[1], time.Hour, 600 * time.Millisecond, 3 * time.Second, result.Success},
	}
	for _, sp := range specs {
		sub := now.Add(-sp.submitted)
		_, rs := addBS(t, s, ctx, NewBuildset{BuilderIDs: []int64{sp.builder}, SubmittedAt: sub})
		start := sub.Add(sp.wait)
		ok(t, s.ClaimRequest(ctx, rs[0].ID, start))
		b := must(s.AddBuild(ctx, NewBuild{BuilderID: sp.builder, RequestID: rs[0].ID, WorkerID: w, StartedAt: start}))(t)
		if sp.res != result.None {
			ok(t, s.FinishBuild(ctx, b.ID, sp.res, "", start.Add(sp.took)))
		}
	}
	// A request that never started does not count as a wait.
	addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[:1], SubmittedAt: now.Add(-time.Hour)})

	// show lists a builder's samples as "day/ms/good", sorted.
	show := func(ss []Sample) []string {
		out := make([]string, len(ss))
		for i, x := range ss {
			out[i] = fmt.Sprintf("%d/%d/%t", x.Day, x.Time.Milliseconds(), x.Good)
		}
		slices.Sort(out)
		return out
	}
	a, b := bids[0], bids[1]
	durs := must(s.BuildDurations(ctx, nil, now, 7))(t)
	want := map[int64][]string{
		a: {"0/60000/true", "0/60400/false", "0/120000/true", "1/90000/false"},
		b: {"0/3000/true"},
	}
	for id, ww := range want {
		slices.Sort(ww)
		if got := show(durs[id]); !slices.Equal(got, ww) {
			t.Errorf("durations of builder %d:\n got %v\nwant %v", id, got, ww)
		}
	}
	if len(durs) != 2 {
		t.Errorf("durations of %d builders", len(durs))
	}
	one := must(s.BuildDurations(ctx, []int64{b}, now, 1))(t)
	if got := show(one[b]); len(one) != 1 || !slices.Equal(got, []string{"0/3000/true"}) {
		t.Errorf("durations of b, one day: %v", one)
	}
	if got := must(s.BuildDurations(ctx, []int64{}, now, 7))(t); len(got) != 0 {
		t.Errorf("no builders: %v", got)
	}
	if _, err := s.BuildDurations(ctx, nil, now, 0); err == nil {
		t.Error("0 days accepted")
	}

	waits := must(s.WaitTimes(ctx, []int64{a}, now, 7))(t)
	ww := []string{"0/0/false", "0/1000/false", "0/10000/false", "0/10400/false", "0/30000/false", "1/2000/false"}
	slices.Sort(ww)
	if got := show(waits[a]); len(waits) != 1 || !slices.Equal(got, ww) {
		t.Errorf("waits:\n got %v\nwant %v", got, ww)
	}
	all := must(s.WaitTimes(ctx, nil, now, 7))(t)
	if got := show(all[b]); len(all) != 2 || !slices.Equal(got, []string{"0/600/false"}) {
		t.Errorf("waits of all builders: %v", all)
	}
}

func TestUnpackSamples(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []Sample
		err  bool
	}{
		{"0", []Sample{{}}, false},
		{"131", []Sample{{Day: 1, Good: true, Time: time.Millisecond}}, false},
		{"2,1", []Sample{{Day: 1}, {Good: true}}, false},
		{"", nil, true},
		{"1,,2", nil, true},
		{"1,", nil, true},
		{"-1", nil, true},
		{"1234567890123456789", nil, true},
	} {
		got, err := unpackSamples([]byte(tt.in))
		if (err != nil) != tt.err || (!tt.err && !slices.Equal(got, tt.want)) {
			t.Errorf("unpackSamples(%q) = %v, %v; want %v, error %t", tt.in, got, err, tt.want, tt.err)
		}
	}
}
