package store

import (
	"errors"
	"testing"
)

func TestSetRequestPriority(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	b := addBuilders(t, s, "b")[0]
	var ids []int64
	for i := range 3 {
		_, reqs, err := s.AddBuildset(ctx, NewBuildset{BuilderIDs: []int64{b}, SubmittedAt: at(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, reqs[0].ID)
	}
	if err := s.SetRequestPriority(ctx, ids[2], 5); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRequestPriority(ctx, ids[0], -1); err != nil {
		t.Fatal(err)
	}
	pending := must(s.PendingRequests(ctx))(t)
	var order []int64
	for _, r := range pending {
		order = append(order, r.ID)
	}
	if want := []int64{ids[2], ids[1], ids[0]}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Errorf("queue order %v, want %v", order, want)
	}
	if r := must(s.GetRequest(ctx, ids[2]))(t); r.Priority != 5 {
		t.Errorf("priority %d, want 5", r.Priority)
	}

	if err := s.ClaimRequest(ctx, ids[1], at(9)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelRequest(ctx, ids[0], "no", at(9)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id   int64
		want error
	}{{ids[1], ErrAlreadyClaimed}, {ids[0], ErrAlreadyFinished}, {999, ErrNotFound}} {
		if err := s.SetRequestPriority(ctx, tt.id, 1); !errors.Is(err, tt.want) {
			t.Errorf("SetRequestPriority(%d) = %v, want %v", tt.id, err, tt.want)
		}
	}
	if r := must(s.GetRequest(ctx, ids[1]))(t); r.Priority != 0 {
		t.Errorf("a refused change changed the priority to %d", r.Priority)
	}
}
