package store

import (
	"errors"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

func TestCollapseRequest(t *testing.T) {
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
	done, err := s.CollapseRequest(ctx, reqs[0].ID, "collapsed into build 3", time.Now())
	if err != nil || !done {
		t.Fatalf("CollapseRequest = %v, %v; want the buildset complete", done, err)
	}
	got, err := s.GetRequest(ctx, reqs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete || got.Results != result.Skipped || got.CancelReason != "collapsed into build 3" {
		t.Fatalf("collapsed request = %+v", got)
	}
	bs, err := s.GetBuildset(ctx, reqs[0].BuildsetID)
	if err != nil || !bs.Complete || bs.Results != result.Skipped {
		t.Fatalf("buildset = %+v, %v", bs, err)
	}
	if _, err := s.CollapseRequest(ctx, reqs[0].ID, "again", time.Now()); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("again: err = %v", err)
	}
}
