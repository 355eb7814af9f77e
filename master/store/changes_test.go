package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/starforge/starforge/master/result"
)

func TestAddChangesRoundTrip(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	in := []Change{
		{Author: "Ada <ada@example.org>", Comments: "first", Branch: "main", Revision: "a1",
			Repository: "https://x/r.git", Project: "p", When: at(1), Files: []string{"a.c", "b/c.h"},
			Properties: map[string]Property{"event": {"push", "Change"}, "n": {int64(3), "Change"}}},
		{Author: "Bob", Branch: "main", Revision: "a2", Repository: "https://x/r.git", When: at(2)},
	}
	got, err := s.AddChanges(ctx, in, StateValue{Object: "poller:r", Name: "refs/heads/main", Value: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID == 0 || got[1].ID <= got[0].ID || got[0].SourceStampID == 0 {
		t.Fatalf("ids not assigned in order: %+v", got)
	}
	for _, c := range got {
		read := must(s.GetChange(ctx, c.ID))(t)
		if !reflect.DeepEqual(read, c) {
			t.Errorf("GetChange(%d) = %+v\nAddChanges returned %+v", c.ID, read, c)
		}
	}
	var rev string
	if found := must(s.GetState(ctx, "poller:r", "refs/heads/main", &rev))(t); !found || rev != "a2" {
		t.Errorf("state = %q, %v; want a2 stored with the changes", rev, found)
	}
	if last := must(s.LastChangeID(ctx))(t); last != got[1].ID {
		t.Errorf("LastChangeID = %d, want %d", last, got[1].ID)
	}
	after := must(s.ChangesAfter(ctx, got[0].ID, 0))(t)
	if len(after) != 1 || after[0].ID != got[1].ID {
		t.Errorf("ChangesAfter = %+v", after)
	}
	page := must(s.ListChanges(ctx, ChangeFilter{Limit: 1}))(t)
	if len(page) != 1 || page[0].ID != got[1].ID {
		t.Errorf("ListChanges newest first = %+v", page)
	}
}

func TestAddChangesAllOrNothing(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bad := []Change{
		{Author: "a", Revision: "1"},
		{Author: "b", Revision: "2", Properties: map[string]Property{"f": {func() {}, "x"}}},
	}
	if _, err := s.AddChanges(ctx, bad, StateValue{Object: "o", Name: "n", Value: 1}); err == nil {
		t.Fatal("AddChanges with an unencodable property succeeded")
	}
	if last := must(s.LastChangeID(ctx))(t); last != 0 {
		t.Errorf("a failed AddChanges stored change %d", last)
	}
	var v int
	if found := must(s.GetState(ctx, "o", "n", &v))(t); found {
		t.Error("a failed AddChanges stored its state")
	}
}

func TestStateSetAndDelete(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	ok(t, s.SetState(ctx, StateValue{"sched", "deadline", map[string]any{"at": 5}}, StateValue{"sched", "last", "x"}))
	ok(t, s.SetState(ctx, StateValue{"sched", "last", nil}))
	all := must(s.ObjectState(ctx, "sched"))(t)
	if len(all) != 1 || string(all["deadline"]) != `{"at":5}` {
		t.Errorf("ObjectState = %v", all)
	}
	if err := s.SetState(ctx, StateValue{"", "x", 1}); err == nil {
		t.Error("SetState with an empty object succeeded")
	}
}

func TestSchedulerChangesConsumedByBuildset(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "b")
	cs := must(s.AddChanges(ctx, []Change{{Author: "a", Revision: "1"}, {Author: "a", Revision: "2"}}))(t)
	ok(t, s.ClassifyChanges(ctx, "sbs", []SchedulerChange{{cs[0].ID, false}, {cs[1].ID, true}},
		StateValue{"scheduler:sbs", "last_change", cs[1].ID}))
	ok(t, s.ClassifyChanges(ctx, "sbs", []SchedulerChange{{cs[1].ID, true}})) // again: no-op
	ok(t, s.ClassifyChanges(ctx, "other", []SchedulerChange{{cs[1].ID, true}}))
	pending := must(s.SchedulerChanges(ctx, "sbs"))(t)
	if !reflect.DeepEqual(pending, []SchedulerChange{{cs[0].ID, false}, {cs[1].ID, true}}) {
		t.Fatalf("SchedulerChanges = %+v", pending)
	}
	bs, _, err := s.AddBuildset(ctx, NewBuildset{
		BuilderIDs: bids, SourceStamps: []SourceStamp{{Revision: "2"}},
		ChangeIDs: []int64{cs[0].ID, cs[1].ID}, Scheduler: "sbs",
		State: []StateValue{{"scheduler:sbs", "deadline", nil}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if left := must(s.SchedulerChanges(ctx, "sbs"))(t); len(left) != 0 {
		t.Errorf("changes left after the buildset consumed them: %+v", left)
	}
	if left := must(s.SchedulerChanges(ctx, "other"))(t); len(left) != 1 {
		t.Errorf("another scheduler's changes were consumed: %+v", left)
	}
	built := must(s.BuildsetChanges(ctx, bs.ID))(t)
	if len(built) != 2 || built[0].Revision != "1" || built[1].Revision != "2" {
		t.Errorf("BuildsetChanges = %+v", built)
	}
	ok(t, s.ForgetSchedulerChanges(ctx, "other", nil))
	if left := must(s.SchedulerChanges(ctx, "other"))(t); len(left) != 0 {
		t.Errorf("ForgetSchedulerChanges(nil) left %+v", left)
	}
}

func TestTriggeredBuildsetWithPatch(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bids := addBuilders(t, s, "parent", "child")
	pbs, preqs := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[:1], SourceStamps: []SourceStamp{{}}})
	_ = pbs
	ok(t, s.ClaimRequest(ctx, preqs[0].ID, at(1)))
	wid := must(s.EnsureWorker(ctx, "w"))(t)
	parent := must(s.AddBuild(ctx, NewBuild{BuilderID: bids[0], RequestID: preqs[0].ID, WorkerID: wid}))(t)
	patch := &Patch{Level: 1, Body: []byte("--- a/x\n+++ b/x\n"), Author: "ada", Subdir: "src"}
	for range 2 {
		bs, _, err := s.AddBuildset(ctx, NewBuildset{
			BuilderIDs: bids[1:], ParentBuildID: parent.ID, ParentRelationship: "trigger tests",
			SourceStamps: []SourceStamp{{Branch: "main", Revision: "abc", Patch: patch}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := must(s.GetBuildset(ctx, bs.ID))(t)
		if !reflect.DeepEqual(got, bs) {
			t.Errorf("GetBuildset = %+v\nAddBuildset returned %+v", got, bs)
		}
		p := got.SourceStamps[0].Patch
		if p == nil || p.ID == 0 || string(p.Body) != string(patch.Body) || p.Subdir != "src" {
			t.Errorf("patch = %+v", p)
		}
	}
	kids := must(s.ChildBuildsets(ctx, parent.ID))(t)
	if len(kids) != 2 || kids[0].ParentRelationship != "trigger tests" ||
		kids[0].SourceStamps[0].ID == kids[1].SourceStamps[0].ID {
		t.Errorf("ChildBuildsets = %+v (stamps with patches must not be shared)", kids)
	}
}

func TestOnBuildsetComplete(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	type done struct {
		id  int64
		res result.Result
	}
	var got []done
	s.OnBuildsetComplete(func(id int64, res result.Result) { got = append(got, done{id, res}) })
	bids := addBuilders(t, s, "a", "b")
	bs, reqs := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids, SourceStamps: []SourceStamp{{}}})
	if _, err := s.CompleteRequest(ctx, reqs[0].ID, result.Success, at(1)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("hook ran before the buildset completed: %+v", got)
	}
	if _, err := s.CancelRequest(ctx, reqs[1].ID, "no longer wanted", at(2)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []done{{bs.ID, result.Cancelled}}) {
		t.Errorf("hook calls = %+v, want one for buildset %d CANCELLED", got, bs.ID)
	}
	if _, err := s.CancelRequest(ctx, reqs[1].ID, "again", at(3)); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("second cancel: %v", err)
	}
	if len(got) != 1 {
		t.Errorf("hook ran again for a failed cancel: %+v", got)
	}
}

func addBS(t testing.TB, s *Store, ctx context.Context, nb NewBuildset) (Buildset, []BuildRequest) {
	t.Helper()
	bs, reqs, err := s.AddBuildset(ctx, nb)
	if err != nil {
		t.Fatal(err)
	}
	return bs, reqs
}

// State naming the new buildset is stored in the transaction that adds
// it, with its id; writes that add no buildset refuse such names.
func TestNewBuildsetIDState(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	b := must(s.EnsureBuilder(ctx, Builder{Name: "b"}))(t)
	for range 2 { // the second buildset gets its own id
		bs, _, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{b}, SourceStamps: []SourceStamp{{}},
			State: []StateValue{{Object: "scheduler:down", Name: "upstream:" + NewBuildsetID, Value: true}}})
		if err != nil {
			t.Fatal(err)
		}
		var v bool
		if found := must(s.GetState(ctx, "scheduler:down", fmt.Sprintf("upstream:%d", bs.ID), &v))(t); !found || !v {
			t.Errorf("state upstream:%d = %v, %v; want true", bs.ID, v, found)
		}
	}
	state := must(s.ObjectState(ctx, "scheduler:down"))(t)
	if len(state) != 2 {
		t.Errorf("state %v, want the two buildsets'", state)
	}
	vals := []StateValue{{Object: "o", Name: "x" + NewBuildsetID, Value: 1}}
	if err := s.SetState(ctx, vals...); err == nil {
		t.Error("SetState accepted a name with NewBuildsetID")
	}
	if _, err := s.AddChanges(ctx, []Change{{Author: "a"}}, vals...); err == nil {
		t.Error("AddChanges accepted a name with NewBuildsetID")
	}
	if err := s.ClassifyChanges(ctx, "s", nil, vals...); err == nil {
		t.Error("ClassifyChanges accepted a name with NewBuildsetID")
	}
	if err := s.ForgetSchedulerChanges(ctx, "s", nil, vals...); err == nil {
		t.Error("ForgetSchedulerChanges accepted a name with NewBuildsetID")
	}
	if cs := must(s.ListChanges(ctx, ChangeFilter{}))(t); len(cs) != 0 {
		t.Errorf("changes stored by a refused AddChanges: %+v", cs)
	}
}
