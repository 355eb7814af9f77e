package webui

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

// TestTriggeredBuildsShown checks that a build's page lists the changes it
// builds and the builds its trigger steps started, that a child links to
// its parent, and that the buildsets API finds a build's children.
func TestTriggeredBuildsShown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	parent := f.finished[0]
	cs, err := f.st.AddChanges(ctx, []store.Change{{Author: "Ada <ada@example.org>", Comments: "Fix the frobnicator\n\nLong story.",
		Branch: "main", Revision: strings.Repeat("ab", 20), Files: []string{"frob.c"}}})
	if err != nil {
		t.Fatal(err)
	}
	bs, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{
		BuilderIDs: []int64{f.empty}, SourceStamps: []store.SourceStamp{{Branch: "main", Revision: cs[0].Revision}},
		ChangeIDs: []int64{cs[0].ID}, ParentBuildID: parent.ID, ParentRelationship: "deploy",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.ClaimRequest(ctx, reqs[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	child, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.empty, RequestID: reqs[0].ID, WorkerID: f.w1})
	if err != nil {
		t.Fatal(err)
	}

	_, _, page := f.get(t, fmt.Sprintf("/builders/%d/builds/%d", parent.BuilderID, parent.Number))
	for _, want := range []string{"Triggered builds", "deploy", fmt.Sprintf("/builders/%d/builds/%d", f.empty, child.Number)} {
		if !strings.Contains(string(page), want) {
			t.Errorf("parent page lacks %q", want)
		}
	}
	_, _, page = f.get(t, fmt.Sprintf("/builders/%d/builds/%d", f.empty, child.Number))
	for _, want := range []string{"Triggered by", "Fix the frobnicator", "abababa", "Ada &lt;ada@example.org&gt;"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("child page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "Long story") {
		t.Error("child page shows more than the first line of the comments")
	}

	var got struct {
		Buildsets []struct {
			BSID               int64   `json:"bsid"`
			ParentBuildID      *int64  `json:"parent_buildid"`
			ParentRelationship *string `json:"parent_relationship"`
			SourceStamps       []struct {
				Revision *string `json:"revision"`
			} `json:"sourcestamps"`
		} `json:"buildsets"`
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/buildsets?parent_buildid=%d", parent.ID), &got)
	if len(got.Buildsets) != 1 || got.Buildsets[0].BSID != bs.ID || *got.Buildsets[0].ParentRelationship != "deploy" ||
		*got.Buildsets[0].SourceStamps[0].Revision != cs[0].Revision {
		t.Errorf("children of build %d = %+v", parent.ID, got.Buildsets)
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/buildsets/%d", bs.ID), &got)
	if len(got.Buildsets) != 1 || *got.Buildsets[0].ParentBuildID != parent.ID {
		t.Errorf("buildset %d = %+v", bs.ID, got.Buildsets)
	}
	for path, want := range map[string]int{"/api/v2/buildsets/99999": 404, "/api/v2/buildsets/x": 400, "/api/v2/buildsets?parent_buildid=-1": 400} {
		if st, _, body := f.get(t, path); st != want {
			t.Errorf("%s: status %d, want %d: %s", path, st, want, body)
		}
	}
}

// TestChangesPage checks that the changes page and the API show what the
// pollers and schedulers are doing and the latest changes.
func TestChangesPage(t *testing.T) {
	f := newFixture(t)
	next := time.Now().Add(3 * time.Minute)
	f.m.mu.Lock()
	f.m.pollers = []PollerState{
		{Name: "app", Repo: "https://git.example.org/app.git", Interval: 5 * time.Minute, LastPoll: time.Now().Add(-time.Minute),
			NextPoll: next, Refs: map[string]string{"refs/heads/main": "abc"}},
		{Name: "broken", Repo: "https://git.example.org/gone.git", Interval: time.Minute, LastError: "list refs: authentication required"},
	}
	f.m.schedulers = []SchedulerState{
		{Name: "main", Kind: "single_branch_scheduler", Builders: []string{"linux"}, Waiting: "tree stable until 12:03:05 (3 changes)", Pending: 3},
		{Name: "nightly", Kind: "nightly", Builders: []string{"linux"}, Error: "database is locked"},
	}
	f.m.mu.Unlock()
	if _, err := f.st.AddChanges(context.Background(), []store.Change{{Author: "Ada", Comments: "Speed up the parser", Branch: "main", Revision: "r1"}}); err != nil {
		t.Fatal(err)
	}
	_, _, page := f.get(t, "/changes")
	for _, want := range []string{"https://git.example.org/app.git", "every 5m", "watching 1 ref", "authentication required",
		"tree stable until 12:03:05 (3 changes)", "database is locked", "Speed up the parser"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("changes page lacks %q", want)
		}
	}
	var sch struct {
		Schedulers []struct {
			Name    string  `json:"name"`
			Waiting *string `json:"waiting"`
			Pending int     `json:"pending_changes"`
		} `json:"schedulers"`
	}
	f.getJSON(t, "/api/v2/schedulers", &sch)
	if len(sch.Schedulers) != 2 || sch.Schedulers[0].Pending != 3 || sch.Schedulers[1].Waiting != nil {
		t.Errorf("schedulers = %+v", sch.Schedulers)
	}
	var src struct {
		Sources []struct {
			Name      string            `json:"name"`
			LastError *string           `json:"last_error"`
			Refs      map[string]string `json:"refs"`
			Interval  float64           `json:"interval"`
		} `json:"changesources"`
	}
	f.getJSON(t, "/api/v2/changesources", &src)
	if len(src.Sources) != 2 || src.Sources[0].Refs["refs/heads/main"] != "abc" || src.Sources[0].Interval != 300 ||
		src.Sources[1].LastError == nil || src.Sources[1].Refs == nil {
		t.Errorf("change sources = %+v", src.Sources)
	}
}
