package store

import (
	"context"
	"slices"
	"testing"
)

func TestStoredSchedulers(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	cs, err := s.AddChanges(ctx, []Change{{Branch: "main"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx,
		StateValue{Object: "scheduler:nightly", Name: "last_run", Value: 1},
		StateValue{Object: "scheduler:a:b", Name: "kind", Value: "x"},
		StateValue{Object: "poller:https://x", Name: "refs", Value: 1},
		StateValue{Object: "schedulerX", Name: "n", Value: 1},
	); err != nil {
		t.Fatal(err)
	}
	if err := s.ClassifyChanges(ctx, "kept", []SchedulerChange{{ChangeID: cs[0].ID}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.StoredSchedulers(ctx)
	if want := []string{"a:b", "kept", "nightly"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("StoredSchedulers = %q, %v; want %q", got, err, want)
	}
}
