package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Buildbot's result codes, as the API shows them.
const (
	resSuccess   = 0
	resSkipped   = 3
	resException = 4
)

const secretValue = "tok-value-123"

// TestRenderEndToEnd checks build-time configuration: interpolation,
// renderer functions, do_step_if/hide_step_if, secrets and their
// redaction, dynamic steps and property precedence, as a user sees them
// through the CLI and the API.
func TestRenderEndToEnd(t *testing.T) {
	dir := t.TempDir()
	mdir := filepath.Join(dir, "master")
	if err := os.MkdirAll(filepath.Join(mdir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "secrets", "token"), []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, mdir, `
secrets_dir("secrets")
worker("w1", password="pw1", properties={"p": "worker", "q": "worker"})
builder("interp", workers=["w1"], steps=[
    shell(interpolate("echo color=%(prop:color)s os=%(worker:os_id)s kw=%(kw:k)s num=%(prop:buildnumber)s missing=%(prop:nope:-dflt)s", k="kval"), name="interp"),
    shell(lambda b: "echo fn=" + b.buildername + "-" + str(b.number), name="fn"),
    shell("echo never", name="never", do_step_if=False),
    shell("echo hidden", name="hidden", hide_step_if=lambda b: True),
    shell("echo cond", name="cond", do_step_if=lambda b: b.getProperty("color") == "blue"),
    shell("echo nocond", name="nocond", do_step_if=lambda b: b.getProperty("color") == "red"),
])
builder("secret", workers=["w1"], steps=[
    shell('test "$TOKEN" = "`+secretValue+`" && echo token-ok && echo "leak:$TOKEN"', env={"TOKEN": interpolate("%(secret:token)s")}, name="use"),
    shell(["echo", secret("token")], name="argv"),
    shell(["echo", secret("missing")], name="missing"),
])
def explode(build):
    print("about to explode")
    fail("renderer exploded")
builder("raise", workers=["w1"], steps=[
    shell(explode, name="boom"),
    shell("echo after", name="after"),
])
def plan(build):
    if build.getProperty("mode") == "full":
        return [shell("echo full-1", name="full1"), shell("echo full-2", name="full2")]
    return [shell("echo quick", name="quick")]
builder("dyn", workers=["w1"], steps=plan)
builder("badplan", workers=["w1"], steps=lambda b: fail("no plan"))
builder("prec", workers=["w1"],
        default_properties={"d": "default", "p": "default", "q": "default", "f": "default"},
        properties={"q": "builder", "f": "builder"},
        steps=[shell(interpolate("echo d=%(prop:d)s p=%(prop:p)s q=%(prop:q)s f=%(prop:f)s"), name="show")])
force_scheduler("force", builders=["interp", "secret", "raise", "dyn", "badplan", "prec"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	type hstep struct {
		step
		Hidden bool `json:"hidden"`
	}
	lastSteps := func(builder string) []hstep {
		t.Helper()
		bs := m.builds(t, builder)
		if len(bs) == 0 {
			t.Fatalf("no build of %s", builder)
		}
		var r struct {
			Steps []hstep `json:"steps"`
		}
		m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/steps", bs[0].ID), &r)
		return r.Steps
	}
	find := func(steps []hstep, name string) hstep {
		t.Helper()
		for _, s := range steps {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no step %q in %+v", name, steps)
		return hstep{}
	}

	t.Run("interpolate", func(t *testing.T) {
		out, code := m.force(t, "interp", "--prop", "color=blue")
		if code != 0 {
			t.Fatalf("force: exit %d:\n%s", code, out)
		}
		steps := lastSteps("interp")
		if got := m.stepLog(t, find(steps, "interp").ID); !regexp.MustCompile(`color=blue os=\w+ kw=kval num=1 missing=dflt\n`).MatchString(got) {
			t.Errorf("interp log:\n%s", got)
		}
		if got := m.stepLog(t, find(steps, "fn").ID); !strings.Contains(got, "fn=interp-1\n") {
			t.Errorf("fn log:\n%s", got)
		}
		for name, want := range map[string]int{"never": resSkipped, "nocond": resSkipped, "cond": resSuccess, "hidden": resSuccess} {
			s := find(steps, name)
			if resultOf(s.Results) != want {
				t.Errorf("step %s: results %d (%s), want %d", name, resultOf(s.Results), s.StateString, want)
			}
			if want == resSkipped && s.StateString != "skipped (do_step_if)" {
				t.Errorf("step %s: state %q", name, s.StateString)
			}
			if s.Hidden != (name == "hidden") {
				t.Errorf("step %s: hidden = %v", name, s.Hidden)
			}
		}
		if got := m.stepLog(t, find(steps, "never").ID); strings.Contains(got, "never") {
			t.Errorf("a skipped step ran:\n%s", got)
		}
	})

	t.Run("secret", func(t *testing.T) {
		out, _ := m.force(t, "secret")
		if strings.Contains(out, secretValue) {
			t.Errorf("force output shows the secret:\n%s", out)
		}
		steps := lastSteps("secret")
		use := find(steps, "use")
		if resultOf(use.Results) != resSuccess {
			t.Fatalf("use: results %d (%s)", resultOf(use.Results), use.StateString)
		}
		for _, name := range []string{"use", "argv"} {
			log := m.stepLog(t, find(steps, name).ID)
			if strings.Contains(log, secretValue) {
				t.Errorf("%s log holds the secret:\n%s", name, log)
			}
			if !strings.Contains(log, "<secret:token>") {
				t.Errorf("%s log lacks <secret:token>:\n%s", name, log)
			}
		}
		if log := m.stepLog(t, use.ID); !strings.Contains(log, "token-ok\n") || !strings.Contains(log, "leak:<secret:token>\n") {
			t.Errorf("use log:\n%s", log)
		}
		miss := find(steps, "missing")
		if resultOf(miss.Results) != resException || !strings.Contains(miss.StateString, "secret missing not found in any provider") {
			t.Errorf("missing: results %d, state %q", resultOf(miss.Results), miss.StateString)
		}
		// Secrets never become properties.
		if props := m.getText(t, fmt.Sprintf("api/v2/builds/%d/properties", m.builds(t, "secret")[0].ID)); strings.Contains(props, secretValue) {
			t.Errorf("properties hold the secret: %s", props)
		}
	})

	t.Run("raise", func(t *testing.T) {
		out, code := m.force(t, "raise")
		if code == 0 {
			t.Errorf("force of a failing renderer: exit 0:\n%s", out)
		}
		if bs := m.builds(t, "raise"); resultOf(bs[0].Results) != resException {
			t.Errorf("build results %d, want EXCEPTION", resultOf(bs[0].Results))
		}
		steps := lastSteps("raise")
		boom := find(steps, "boom")
		if resultOf(boom.Results) != resException || !strings.HasPrefix(boom.StateString, "render error: ") {
			t.Errorf("boom: results %d, state %q", resultOf(boom.Results), boom.StateString)
		}
		log := m.stepLog(t, boom.ID)
		for _, want := range []string{"about to explode", "renderer exploded", "Traceback (most recent call last):", "master.star:", "in explode"} {
			if !strings.Contains(log, want) {
				t.Errorf("boom log lacks %q:\n%s", want, log)
			}
		}
		if after := find(steps, "after"); resultOf(after.Results) != resSkipped {
			t.Errorf("after: results %d", resultOf(after.Results))
		}
	})

	t.Run("dynamic", func(t *testing.T) {
		if out, code := m.force(t, "dyn", "--prop", "mode=full"); code != 0 {
			t.Fatalf("force full: exit %d:\n%s", code, out)
		}
		steps := lastSteps("dyn")
		if len(steps) != 2 || steps[0].Name != "full1" || steps[1].Name != "full2" {
			t.Errorf("full build steps: %+v", steps)
		}
		if got := m.stepLog(t, steps[1].ID); !strings.Contains(got, "full-2\n") {
			t.Errorf("full2 log:\n%s", got)
		}
		if out, code := m.force(t, "dyn"); code != 0 {
			t.Fatalf("force quick: exit %d:\n%s", code, out)
		}
		if steps := lastSteps("dyn"); len(steps) != 1 || steps[0].Name != "quick" {
			t.Errorf("quick build steps: %+v", steps)
		}

		m.force(t, "badplan")
		bs := m.builds(t, "badplan")
		if resultOf(bs[0].Results) != resException {
			t.Errorf("badplan build results %d", resultOf(bs[0].Results))
		}
		steps = lastSteps("badplan")
		if len(steps) != 1 || steps[0].Name != "plan" || resultOf(steps[0].Results) != resException {
			t.Fatalf("badplan steps: %+v", steps)
		}
		if log := m.stepLog(t, steps[0].ID); !strings.Contains(log, "no plan") || !strings.Contains(log, "Traceback") {
			t.Errorf("plan log:\n%s", log)
		}
	})

	t.Run("precedence", func(t *testing.T) {
		if out, code := m.force(t, "prec", "--prop", "f=force"); code != 0 {
			t.Fatalf("force: exit %d:\n%s", code, out)
		}
		steps := lastSteps("prec")
		if got := m.stepLog(t, steps[0].ID); !strings.Contains(got, "d=default p=worker q=builder f=force\n") {
			t.Errorf("show log:\n%s", got)
		}
		var props struct {
			Properties []map[string][]any `json:"properties"`
		}
		m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", m.builds(t, "prec")[0].ID), &props)
		src := map[string]any{}
		for _, p := range props.Properties {
			for k, v := range p {
				src[k] = v[1]
			}
		}
		for k, want := range map[string]string{"d": "Builder", "p": "Worker", "q": "Builder", "buildername": "Build"} {
			if src[k] != want {
				t.Errorf("property %s source %v, want %s (all: %v)", k, src[k], want, src)
			}
		}
	})
}
