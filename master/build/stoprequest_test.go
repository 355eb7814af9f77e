package build

import (
	"context"
	"testing"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// TestStopRequestBeforeTheBuildRuns: a stop asked for a request whose
// build is still being set up (a trigger step's child that was just
// claimed) stops that build as soon as it starts.
func TestStopRequestBeforeTheBuildRuns(t *testing.T) {
	h := newHarness(t, `
worker("w1", password="pw")
builder("slow", workers=["w1"], steps=[shell("sleep 60", name="sleep")])
`)
	h.startAgent("w1")
	ctx := context.Background()
	b, err := h.st.GetBuilderByName(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := h.st.AddBuildset(ctx, store.NewBuildset{BuilderIDs: []int64{b.ID}, SourceStamps: []store.SourceStamp{{}}})
	if err != nil {
		t.Fatal(err)
	}
	h.runner.StopRequest(reqs[0].ID, "the build that triggered it was stopped")
	if requeue := h.runner.RunBuild(reqs[0], "w1"); requeue {
		t.Fatal("the stopped build was requeued")
	}
	builds, err := h.st.ListBuilds(ctx, store.BuildFilter{RequestID: reqs[0].ID})
	if err != nil || len(builds) != 1 {
		t.Fatalf("builds = %v, %v", builds, err)
	}
	if builds[0].Results != result.Cancelled {
		t.Errorf("build result %v (%s), want CANCELLED", builds[0].Results, builds[0].StateString)
	}
	req, err := h.st.GetRequest(ctx, reqs[0].ID)
	if err != nil || !req.Complete || req.Results != result.Cancelled {
		t.Errorf("request = %+v, %v; want complete, CANCELLED", req, err)
	}
}
