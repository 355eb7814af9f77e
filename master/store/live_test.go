package store

import (
	"context"
	"reflect"
	"testing"
)

func TestPendingCounts(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	bids := addBuilders(t, s, "a", "b", "c")
	got, err := s.PendingCounts(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty queue: %v, %v", got, err)
	}
	_, r1 := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[:2], SourceStamps: []SourceStamp{{}}, SubmittedAt: at(1)})
	_, r2 := addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[:1], SourceStamps: []SourceStamp{{}}, SubmittedAt: at(2)})
	addBS(t, s, ctx, NewBuildset{BuilderIDs: bids[:1], SourceStamps: []SourceStamp{{}}, SubmittedAt: at(3)})
	if err := s.ClaimRequest(ctx, r2[0].ID, at(4)); err != nil { // claimed: not pending
		t.Fatal(err)
	}
	if _, err := s.CancelRequest(ctx, r1[1].ID, "no", at(5)); err != nil { // complete: not pending
		t.Fatal(err)
	}
	got, err = s.PendingCounts(ctx)
	if want := map[int64]int{bids[0]: 2}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("PendingCounts = %v, %v; want %v", got, err, want)
	}
}
