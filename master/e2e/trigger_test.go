package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestTriggerStep runs trigger() for real: a parent that waits takes the
// worst result of its children, which get its properties; a parent that
// does not wait succeeds at once; the parent lists its children.
func TestTriggerStep(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw")
builder("parent", workers=["w1"], steps=[
    trigger(["kids"], wait_for_finish=True, set_properties={"flavour": interpolate("from-%(prop:buildername)s")}),
])
builder("parent-nowait", workers=["w1"], steps=[trigger(["kids"])])
builder("child-ok", workers=["w1"], steps=[shell(interpolate("echo flavour=%(prop:flavour)s"), name="show")])
builder("child-bad", workers=["w1"], steps=[shell("exit 1", name="fail")])
triggerable("kids", builders=["child-ok", "child-bad"])
force_scheduler("force", builders=["parent", "parent-nowait"])
`)
	m.startWorker(t, "w1", "pw", filepath.Join(dir, "worker"))

	out, code := m.force(t, "parent")
	if code == 0 {
		t.Errorf("parent succeeded although child-bad failed:\n%s", out)
	}
	parent := m.builds(t, "parent")[0]
	if resultOf(parent.Results) != resFailure {
		t.Errorf("parent results %d, want FAILURE (the worst of its children)", resultOf(parent.Results))
	}
	steps := m.steps(t, parent.ID)
	log := m.stepLog(t, steps[0].ID)
	for _, want := range []string{"triggered kids: buildset", "child-ok, child-bad", "finished: failure"} {
		if !strings.Contains(log, want) {
			t.Errorf("trigger log lacks %q:\n%s", want, log)
		}
	}
	ok := m.builds(t, "child-ok")
	if len(ok) != 1 || resultOf(ok[0].Results) != 0 {
		t.Fatalf("child-ok builds = %+v", ok)
	}
	if got := m.buildProperty(t, ok[0].ID, "flavour"); got != "from-parent" {
		t.Errorf("child-ok's flavour = %v, want from-parent (rendered in the parent)", got)
	}
	var sets struct {
		Buildsets []struct {
			ID            int64 `json:"bsid"`
			ParentBuildID int64 `json:"parent_buildid"`
			Results       *int  `json:"results"`
		} `json:"buildsets"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/buildsets?parent_buildid=%d", parent.ID), &sets)
	if len(sets.Buildsets) != 1 || sets.Buildsets[0].ParentBuildID != parent.ID || resultOf(sets.Buildsets[0].Results) != resFailure {
		t.Errorf("buildsets of the parent = %+v", sets.Buildsets)
	}
	page := m.getText(t, fmt.Sprintf("builders/parent/builds/%d", parent.Number))
	if !strings.Contains(page, "Triggered builds") || !strings.Contains(page, "child-ok") {
		t.Errorf("the parent's page does not list its children")
	}

	if out, code := m.force(t, "parent-nowait"); code != 0 {
		t.Errorf("parent-nowait failed:\n%s", out)
	}
	m.waitFinished(t, "child-ok", 2)
}
