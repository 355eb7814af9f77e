package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestBrowserLogin drives logins in headless Chromium on a master with
// web_auth = "users": a visitor sees no force form and no Stop button,
// logs in with the login page and comes back where they were, forces a
// build from the form, stops it with the Stop button (answering its
// reason prompt), rebuilds it with the Rebuild button, pauses and
// unpauses the worker with a reason, and logs out, after which the
// buttons are gone again.
func TestBrowserLogin(t *testing.T) {
	br := startBrowser(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "master")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// startMaster keeps a master.star that is there: this one has logins.
	cfg := fmt.Sprintf(`master(title="e2e", http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0", web_auth="users")
worker("w1", password="pw1")
builder("slow", workers=["w1"], steps=[
    shell("echo started; n=0; while [ ! -e '%s' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done", name="wait"),
])
force_scheduler("force", builders=["slow"])
role("operator", can=["pause"])
user("ann", password_hash=%q, roles=["developer", "operator"])
`, gate, hash)
	if err := os.WriteFile(filepath.Join(base, "master.star"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, base, "")
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	var builders struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	m.getJSON(t, "api/v2/builders/slow", &builders)
	builderPath := fmt.Sprintf("/builders/%d", builders.Builders[0].ID)

	// A visitor: reading is open, forcing is not.
	br.navigate(t, m.url+strings.TrimPrefix(builderPath, "/"))
	var visitor struct {
		Force, Hint, Login bool
	}
	br.eval(t, `({ Force: !!document.querySelector('form.force'), Hint: document.body.innerText.includes('to force a build'),
  Login: !!document.querySelector('header a.login') })`, &visitor)
	if visitor.Force || !visitor.Hint || !visitor.Login {
		t.Errorf("a visitor's builder page: %+v; want no force form, a hint to log in and the header's login link", visitor)
	}

	// Log in from the header, with a wrong password first.
	br.drainEvents()
	br.click(t, "header a.login")
	br.waitLoad(t)
	br.typeInto(t, `form.login [name=user]`, "ann")
	br.typeInto(t, `form.login [name=password]`, "wrong")
	br.drainEvents()
	br.click(t, `form.login button[type=submit]`)
	br.waitLoad(t)
	var refusal string
	br.eval(t, `(document.querySelector('form.login .form-error') || {}).textContent || ''`, &refusal)
	if !strings.Contains(refusal, "Wrong user name or password") {
		t.Errorf("after a wrong password the page says %q", refusal)
	}
	br.typeInto(t, `form.login [name=password]`, "correct horse")
	br.drainEvents()
	br.click(t, `form.login button[type=submit]`)
	br.waitLoad(t)
	var where struct {
		Path, User string
	}
	br.eval(t, `({ Path: location.pathname, User: (document.querySelector('header .user') || {}).textContent || '' })`, &where)
	if where.Path != builderPath || where.User != "ann" {
		t.Fatalf("after logging in: %+v; want back on %s as ann", where, builderPath)
	}
	var cookieSeen bool
	br.eval(t, `document.cookie.includes('starforge_session')`, &cookieSeen)
	if cookieSeen {
		t.Error("the session cookie is visible to scripts; it must be HttpOnly")
	}

	// Force from the form: the page moves to the build.
	br.click(t, "details.force summary")
	br.drainEvents()
	br.click(t, `form.force button[type=submit]`)
	br.waitLoad(t)
	m.out.wait(t, `build started.*builder=slow`, 30*time.Second)
	var path string
	br.eval(t, "location.pathname", &path)
	if path != builderPath+"/builds/1" {
		// The build may not have started within the form's wait: open it.
		br.navigate(t, m.url+strings.TrimPrefix(builderPath, "/")+"/builds/1")
	}
	bs := m.builds(t, "slow")
	if len(bs) != 1 {
		t.Fatalf("%d builds, want 1", len(bs))
	}
	var props struct {
		Properties []map[string][]any `json:"properties"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", bs[0].ID), &props)
	owner := ""
	for _, p := range props.Properties {
		if v, ok := p["owner"]; ok && len(v) > 0 {
			owner = fmt.Sprint(v[0])
		}
	}
	if owner != "ann" {
		t.Errorf("the forced build's owner is %q, want ann (who is logged in)", owner)
	}

	// Stop, answering the reason prompt.
	br.waitFor(t, "the Stop button", `() => !!document.querySelector('#stop')`, 10*time.Second, nil)
	br.clickAnswering(t, "#stop", true, "stopped from the browser test")
	var status string
	br.waitFor(t, "the build to end cancelled", `() => {
  const s = document.querySelector('#build-status');
  return s && s.classList.contains('cancelled') && s.textContent;
}`, 30*time.Second, &status)
	m.out.wait(t, `build finished.*builder=slow.*result=cancelled`, 30*time.Second)
	b := m.builds(t, "slow")[0]
	if !b.Complete || resultOf(b.Results) != 6 || !strings.Contains(b.StateString, "stopped from the browser test") {
		t.Errorf("build after Stop: %+v, want complete CANCELLED with the reason typed into the prompt", b)
	}
	shot := br.screenshot(t, "build-stopped.png", t.TempDir(), os.Getenv("STARFORGE_SCREENSHOT_DIR"))
	t.Logf("screenshot of the stopped build: %s", shot)

	// Rebuild: a confirmation, then the new build's page.
	br.clickAnswering(t, "#rebuild", true, "")
	br.waitLoad(t)
	br.eval(t, "location.pathname", &path)
	if path != builderPath+"/builds/2" {
		t.Errorf("after Rebuild the page is %s, want %s/builds/2", path, builderPath)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=slow.*number=2.*result=success`, 30*time.Second)

	// Pause the worker with a reason, then unpause it.
	br.navigate(t, m.url+"workers")
	br.clickAnswering(t, `#worker-w1 button[data-method="pause"]`, true, "disk swap")
	br.waitLoad(t) // the page reloads once the master said yes
	var paused string
	br.waitFor(t, "the worker paused with the reason", `() => {
  const r = document.querySelector('#worker-w1');
  return r && r.querySelector('.pill.paused') && r.querySelector('.reason') && r.querySelector('.reason').textContent;
}`, 30*time.Second, &paused)
	if paused != "disk swap" {
		t.Errorf("the workers page shows pause reason %q, want the one typed", paused)
	}
	br.clickAnswering(t, `#worker-w1 button[data-method="unpause"]`, true, "")
	br.waitLoad(t)
	br.waitFor(t, "the worker unpaused", `() => {
  const r = document.querySelector('#worker-w1');
  return r && !r.querySelector('.pill.paused') && r.querySelector('button[data-method="pause"]');
}`, 30*time.Second, nil)

	// Log out from the header: the buttons go.
	br.navigate(t, m.url+strings.TrimPrefix(builderPath, "/")+"/builds/1")
	var before bool
	br.eval(t, `!!document.querySelector('#rebuild')`, &before)
	if !before {
		t.Error("no Rebuild button for ann on a finished build")
	}
	br.drainEvents()
	br.click(t, "header form.logout button")
	br.waitLoad(t)
	var after struct {
		Path                 string
		User, Rebuild, Login bool
	}
	br.eval(t, `({ Path: location.pathname, User: !!document.querySelector('header .user'),
  Rebuild: !!document.querySelector('#rebuild'), Login: !!document.querySelector('header a.login') })`, &after)
	if after.Path != builderPath+"/builds/1" || after.User || after.Rebuild || !after.Login {
		t.Errorf("after logging out: %+v; want the same page, no user, no Rebuild, a login link", after)
	}
}
