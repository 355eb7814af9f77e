package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBrowserLivePages: the home and workers pages change when the
// master's events say so, not by polling: a forced build appears among
// the running ones and leaves when it ends, and a worker that goes away
// is shown disconnected.
func TestBrowserLivePages(t *testing.T) {
	br := startBrowser(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+fmt.Sprintf(`
builder("slow", workers=["w1"], steps=[shell(%q, name="wait")])
force_scheduler("force", builders=["slow"])
`, waitGate(gate)))
	w := m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })

	type refreshes struct {
		Event int `json:"event"`
		Poll  int `json:"poll"`
	}
	// streamUp waits until the page follows the master's events.
	streamUp := func() {
		t.Helper()
		var up bool
		br.waitFor(t, "the event stream", `() => window.starforgeLive.stream().up`, 20*time.Second, &up)
	}
	count := func() refreshes {
		t.Helper()
		var r refreshes
		br.eval(t, `window.starforgeLive.refreshes`, &r)
		return r
	}

	br.navigate(t, m.url)
	streamUp()
	if out, code := cli(t, "force", "--master", m.url, "slow"); code != 0 {
		t.Fatalf("force slow: exit %d:\n%s", code, out)
	}
	var badge string
	br.waitFor(t, "the forced build among the running ones", `() => {
  const a = document.querySelector('#running a.badge.running');
  return a && a.textContent.trim();
}`, 30*time.Second, &badge)
	if r := count(); r.Event == 0 || r.Poll != 0 {
		t.Errorf("the home page refreshed %+v times; want it done by events, without polling", r)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var none string
	br.waitFor(t, "no running build", `() => {
  const p = document.querySelector('#running p.empty');
  return p && p.textContent.trim();
}`, 30*time.Second, &none)

	br.navigate(t, m.url+"workers")
	streamUp()
	var state string
	br.eval(t, `document.querySelector('#workers').textContent.includes('disconnected') ? 'disconnected' : 'connected'`, &state)
	if state != "connected" {
		t.Fatalf("the workers page shows w1 %s before it stops", state)
	}
	w.stop(t)
	br.waitFor(t, "w1 disconnected", `() => document.querySelector('#workers').textContent.includes('disconnected') && 'yes'`, 30*time.Second, &state)
	if r := count(); r.Event == 0 || r.Poll != 0 {
		t.Errorf("the workers page refreshed %+v times; want it done by events, without polling", r)
	}
}
