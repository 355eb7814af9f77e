package store

import (
	"context"
	"errors"
	"testing"
)

// TestJobLifecycle stores a job on two platforms, links a buildset to one
// platform's chain, and checks that a step of a chain is made only once and
// that a finished job stays finished.
func TestJobLifecycle(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a, err := s.EnsureBuilder(ctx, Builder{Name: "pkg-debian-12-amd64"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.EnsureBuilder(ctx, Builder{Name: "pkg-debian-13-arm64"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.AddJob(ctx, Job{Farm: "pkg", Name: "hello", Submitter: "alice", Spec: []byte(`{}`), Dir: "jobs/1",
		Platforms: []JobPlatform{{Platform: "debian-13-arm64", BuilderID: b}, {Platform: "debian-12-amd64", BuilderID: a}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddJob(ctx, Job{Farm: "pkg", Name: "bad", Spec: []byte(`{}`), Dir: "jobs/2",
		Platforms: []JobPlatform{{Platform: "x", BuilderID: 999}}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddJob with unknown builder: %v, want ErrNotFound", err)
	}
	link := &JobLink{JobID: j.ID, Platform: "debian-12-amd64", Seq: 0, Package: 0, Attempt: 1}
	bs, _, err := s.AddBuildset(ctx, NewBuildset{Reason: "job", BuilderIDs: []int64{a}, Job: link})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddBuildset(ctx, NewBuildset{Reason: "job", BuilderIDs: []int64{a}, Job: link}); err == nil {
		t.Error("the same chain step was added twice")
	}
	got, ok, err := s.JobOfBuildset(ctx, bs.ID)
	if err != nil || !ok || *link != got {
		t.Errorf("JobOfBuildset = %+v, %v, %v; want %+v", got, ok, err, *link)
	}
	if err := s.UpdateJob(ctx, j.ID, JobUpdate{State: JobBuilding,
		Platforms: []PlatformUpdate{{Platform: "debian-12-amd64", State: PlatformBuilding}}}); err != nil {
		t.Fatal(err)
	}
	g, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != JobBuilding || len(g.Platforms) != 2 || g.Platforms[0].Platform != "debian-12-amd64" ||
		g.Platforms[0].State != PlatformBuilding || len(g.Platforms[0].Builds) != 1 ||
		g.Platforms[0].Builds[0].BuildsetID != bs.ID || g.Platforms[1].BuilderName != "pkg-debian-13-arm64" {
		t.Errorf("GetJob = %+v", g)
	}
	active, err := s.ActiveJobs(ctx)
	if err != nil || len(active) != 1 {
		t.Fatalf("ActiveJobs = %v, %v", active, err)
	}
	if err := s.UpdateJob(ctx, j.ID, JobUpdate{State: JobFailed, Summary: "debian-12-amd64 failed"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateJob(ctx, j.ID, JobUpdate{State: JobSucceeded}); !errors.Is(err, ErrJobComplete) {
		t.Errorf("updating a failed job: %v, want ErrJobComplete", err)
	}
	if active, _ := s.ActiveJobs(ctx); len(active) != 0 {
		t.Errorf("ActiveJobs after the end = %v", active)
	}
	list, err := s.ListJobs(ctx, JobQuery{State: JobFailed})
	if err != nil || len(list) != 1 || list[0].CompleteAt.IsZero() || list[0].Summary != "debian-12-amd64 failed" {
		t.Errorf("ListJobs = %+v, %v", list, err)
	}
}
