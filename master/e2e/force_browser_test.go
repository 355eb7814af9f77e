package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserForceParams fills a force form's declared parameters in
// headless Chromium, as a user does, and checks what the master made of
// them: the browser refuses a value its pattern rejects, the page shows
// the master's refusal of a bad free property, and the build that runs
// gets the typed properties and the codebase's source stamp.
func TestBrowserForceParams(t *testing.T) {
	br := startBrowser(t)
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("params", workers=["w1"], steps=[shell("echo forced")])
force_scheduler("force", builders=["params"], params=[
    string_param("ticket", label="Ticket", regex="^[A-Z]+-[0-9]+$", required=True),
    choice_param("target", ["all", "check", "dist"], default="check"),
    int_param("jobs", default=2),
    codebase_param("", branch="main", repository="https://example.org/proj.git"),
])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	var builders struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	m.getJSON(t, "api/v2/builders/params", &builders)
	if len(builders.Builders) != 1 {
		t.Fatalf("builder params: %+v", builders)
	}
	builderPath := fmt.Sprintf("/builders/%d", builders.Builders[0].ID)
	br.navigate(t, m.url+strings.TrimPrefix(builderPath, "/"))
	br.click(t, "details.force summary")

	// The declared fields, with their defaults.
	var shown struct {
		Ticket   string `json:"ticket"`
		Required bool   `json:"required"`
		Target   string `json:"target"`
		Jobs     string `json:"jobs"`
		Branch   string `json:"branch"`
		Owner    bool   `json:"owner"`
	}
	br.eval(t, `(() => {
  const f = document.querySelector('form.force');
  const k = (key) => f.querySelector('[data-key="' + key + '"]');
  return { ticket: k('ticket').value, required: k('ticket').required, target: k('target').value,
           jobs: k('jobs').value, branch: k('branch').value, owner: !!k('owner') };
})()`, &shown)
	if shown.Ticket != "" || !shown.Required || shown.Target != "check" || shown.Jobs != "2" || shown.Branch != "main" || !shown.Owner {
		t.Errorf("the form shows %+v; want an empty required ticket, target check, jobs 2, branch main and the owner field", shown)
	}

	const ticket = `form.force [data-key="ticket"]`
	const submit = `form.force button[type=submit]`

	// A ticket the pattern rejects: the browser keeps the form.
	br.typeInto(t, ticket, "rel-42")
	br.click(t, submit)
	var invalid bool
	br.eval(t, `document.querySelector('form.force [data-key="ticket"]').validity.patternMismatch`, &invalid)
	if !invalid {
		t.Error("the browser took ticket rel-42, which the regex rejects")
	}

	// A good ticket, another target, and a free property whose name the
	// master refuses: the page shows why.
	br.typeInto(t, ticket, "REL-42")
	br.eval(t, `(() => {
  const s = document.querySelector('form.force [data-key="target"]');
  s.value = 'dist';
  s.dispatchEvent(new Event('change', { bubbles: true }));
  return true;
})()`, nil)
	br.typeInto(t, `form.force .prop [name=pname]`, "a b")
	br.typeInto(t, `form.force .prop [name=pvalue]`, "blue")
	br.click(t, submit)
	var refusal string
	br.waitFor(t, "the master's refusal", `() => {
  const p = document.querySelector('form.force .form-error');
  return !p.hidden && p.textContent;
}`, 20*time.Second, &refusal)
	if !strings.Contains(refusal, "a b: not a valid property name") {
		t.Errorf("the form says %q; want the master's refusal of property name \"a b\"", refusal)
	}

	shot := br.screenshot(t, "force-form.png", t.TempDir(), os.Getenv("STARFORGE_SCREENSHOT_DIR"))
	t.Logf("screenshot of the filled force form: %s", shot)

	// Fixed: the build is forced, and the page moves on.
	br.typeInto(t, `form.force .prop [name=pname]`, "color")
	br.drainEvents()
	br.click(t, submit)
	br.waitLoad(t)
	var path string
	br.eval(t, "location.pathname", &path)
	if !strings.HasPrefix(path, builderPath) {
		t.Errorf("after forcing, the page is %s; want the builder's or the build's page", path)
	}

	m.out.wait(t, `build started.*builder=params`, 30*time.Second)
	bs := m.builds(t, "params")
	if len(bs) != 1 {
		t.Fatalf("%d builds of params, want 1", len(bs))
	}
	var props struct {
		Properties []map[string][]any `json:"properties"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", bs[0].ID), &props)
	got := map[string]string{}
	for _, p := range props.Properties {
		for k, v := range p {
			if len(v) == 2 {
				got[k] = fmt.Sprintf("%v (%v)", v[0], v[1])
			}
		}
	}
	for k, want := range map[string]string{
		"ticket": "REL-42 (Force Build Form)",
		"target": "dist (Force Build Form)",
		"jobs":   "2 (Force Build Form)",
		"color":  "blue (Force Build Form)",
	} {
		if got[k] != want {
			t.Errorf("property %s = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
	var sets struct {
		Buildsets []struct {
			SourceStamps []struct {
				Codebase   string  `json:"codebase"`
				Branch     *string `json:"branch"`
				Repository string  `json:"repository"`
			} `json:"sourcestamps"`
		} `json:"buildsets"`
	}
	m.getJSON(t, "api/v2/buildsets", &sets)
	if len(sets.Buildsets) != 1 || len(sets.Buildsets[0].SourceStamps) != 1 {
		t.Fatalf("buildsets %+v, want one with one source stamp", sets.Buildsets)
	}
	ss := sets.Buildsets[0].SourceStamps[0]
	if ss.Branch == nil || *ss.Branch != "main" || ss.Repository != "https://example.org/proj.git" {
		t.Errorf("source stamp %+v; want branch main of https://example.org/proj.git", ss)
	}
}
