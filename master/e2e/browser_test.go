package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// countScript prints "line 1" to "line 20", one every 0.2 s, but stops
// after line 5 until the file gate exists, so the test decides when the log
// grows. It gives up after a minute so a failed test leaves nothing behind.
// The word "line" is green (an ANSI colour).
func countScript(gate string) string {
	return `i=1
while [ $i -le 20 ]; do
  if [ $i -eq 6 ]; then
    n=0
    while [ ! -e '` + gate + `' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
    [ -e '` + gate + `' ] || { echo "the test never opened the gate"; exit 1; }
  fi
  printf '\033[32mline\033[0m %d\n' $i
  i=$((i+1))
  sleep 0.2
done`
}

// stepRow is a row of the build page's steps table, as the browser shows it.
type stepRow struct {
	Name     string `json:"name"`
	Class    string `json:"class"`
	Dot      string `json:"dot"`
	State    string `json:"state"`
	Duration string `json:"duration"`
	Logs     string `json:"logs"`
}

const readSteps = `() => [...document.querySelectorAll('#steps tbody tr.step')].map(r => ({
  name: r.querySelector('td.name').textContent.trim(),
  class: r.className,
  dot: r.querySelector('.dot') ? r.querySelector('.dot').className : '',
  state: r.querySelector('td.state').textContent.trim(),
  duration: r.cells[3].textContent.trim(),
  logs: r.querySelector('td.logs').textContent.trim(),
}))`

// TestBrowserLiveBuild drives the web UI in headless Chromium while a
// build runs: the home page lists the builder and the running build; the
// build page's log view shows a running step's lines so far, then the
// later lines as the step prints them, without a reload; at the end the
// page shows every step with its result and duration.
func TestBrowserLiveBuild(t *testing.T) {
	br := startBrowser(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+fmt.Sprintf(`
builder("live", workers=["w1"], tags=["browser"], steps=[
    shell("echo preparing", name="prepare"),
    shell(%q, name="count"),
    shell("echo all done", name="finish"),
])
force_scheduler("force", builders=["live"])
`, countScript(gate)))
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	// Opening the gate lets a step left waiting by a failure end at once.
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })

	if out, code := cli(t, "force", "--master", m.url, "live"); code != 0 {
		t.Fatalf("force live: exit %d:\n%s", code, out)
	}
	m.out.wait(t, `build started.*builder=live`, 30*time.Second)

	// (a) The home page lists the builder, and the running build.
	br.navigate(t, m.url)
	var builderHref string
	br.waitFor(t, "the builder on the home page", `() => {
  const a = [...document.querySelectorAll('#builders a')].find(a => a.textContent.trim() === 'live');
  return a && a.getAttribute('href');
}`, 10*time.Second, &builderHref)
	if !regexp.MustCompile(`^/builders/\d+$`).MatchString(builderHref) {
		t.Errorf("the home page links builder live to %q, want /builders/ID", builderHref)
	}
	var running string
	br.waitFor(t, "the running build on the home page", `() => {
  const a = document.querySelector('#running a.badge.running');
  return a && a.textContent.trim() + ' ' + a.getAttribute('href');
}`, 10*time.Second, &running)
	if want := "#1 " + builderHref + "/builds/1"; running != want {
		t.Errorf("the home page's running build is %q, want %q", running, want)
	}

	// To the build page, as a user does: click the running build.
	br.drainEvents()
	br.click(t, "#running a.badge.running")
	br.waitLoad(t)
	var path string
	br.eval(t, "location.pathname", &path)
	if path != builderHref+"/builds/1" {
		t.Fatalf("clicking the running build opened %s, want %s/builds/1", path, builderHref)
	}

	// (c) Open the running step's log: the lines so far...
	var logName string
	br.waitFor(t, "the count step's log link", `() => {
  const r = [...document.querySelectorAll('#steps tr.step')].find(r => r.querySelector('td.name').textContent.trim() === 'count');
  const a = r && r.querySelector('a.log');
  if (!a) return '';
  a.id = 'count-log';
  return a.textContent;
}`, 20*time.Second, &logName)
	if logName != "stdio" {
		t.Errorf("the count step's log is called %q, want stdio", logName)
	}
	br.click(t, "#count-log")
	const outLines = `() => [...document.querySelectorAll('.logview .loglines .l:not(.h):not(.e):not(.wait) .lt')].map(d => d.textContent)`
	var shown []string
	br.waitFor(t, "line 5 in the log view", `() => {
  const l = (`+outLines+`)();
  return l.includes('line 5') && l;
}`, 20*time.Second, &shown)
	if want := numbered(1, 5); strings.Join(shown, "|") != strings.Join(want, "|") {
		t.Errorf("before the gate opens the log view shows %q, want %q", shown, want)
	}
	var info string
	br.eval(t, `document.querySelector('.logview .info').textContent`, &info)
	if !strings.Contains(info, "growing") {
		t.Errorf("the running log's status reads %q, want it to say it is growing", info)
	}
	// The word "line" is in a green span: the ANSI colour, rendered.
	var green []string
	br.eval(t, `[...document.querySelectorAll('.logview .loglines .l:not(.e) .lt span.ansi-fg-2')].map(s => s.textContent + ' ' + getComputedStyle(s).color)`, &green)
	if len(green) != 5 || green[0] != "line rgb(0, 160, 0)" {
		t.Errorf("green spans in the log view: %q, want 5 of \"line rgb(0, 160, 0)\"", green)
	}

	// ... then the later lines, without a reload. The page records how
	// many lines it showed after each change, and a mark that a reload
	// would wipe out.
	br.eval(t, `(() => {
  window.starforgeTestMark = true;
  window.starforgeTestCounts = [];
  new MutationObserver(() => window.starforgeTestCounts.push((`+outLines+`)().length))
    .observe(document.querySelector('.logview .loglines'), { childList: true });
  return true;
})()`, nil)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	br.waitFor(t, "line 20 in the log view", `() => {
  const l = (`+outLines+`)();
  return l.includes('line 20') && l;
}`, 30*time.Second, &shown)
	if want := numbered(1, 20); strings.Join(shown, "|") != strings.Join(want, "|") {
		t.Errorf("after the step the log view shows %q, want %q", shown, want)
	}
	var grew struct {
		Mark   bool  `json:"mark"`
		Counts []int `json:"counts"`
	}
	br.eval(t, `({ mark: window.starforgeTestMark === true, counts: window.starforgeTestCounts })`, &grew)
	if !grew.Mark {
		t.Error("the page was reloaded while the log grew")
	}
	between := 0
	for _, n := range grew.Counts {
		if n > 5 && n < 20 {
			between++
		}
	}
	if between == 0 {
		t.Errorf("the log view jumped from 5 lines to 20 (counts after each change: %v); want it to grow while the step runs", grew.Counts)
	}
	t.Logf("lines shown after each change of the log view: %v", grew.Counts)

	// (b) When the build ends, the page says so and shows every step with
	// its result and duration, live and after a reload.
	var status string
	br.waitFor(t, "the build's result", `() => {
  const s = document.querySelector('#build-status').textContent.trim();
  return s !== 'running' && s !== 'pending' && s;
}`, 30*time.Second, &status)
	if status != "success" {
		t.Errorf("the build's status reads %q, want success", status)
	}
	var rows []stepRow
	br.waitFor(t, "three finished steps", `() => {
  const rows = (`+readSteps+`)();
  return rows.length === 3 && rows.every(r => !/running|pending/.test(r.class)) && rows;
}`, 10*time.Second, &rows)
	checkStepRows(t, "live", rows)
	shotDirs := []string{t.TempDir(), os.Getenv("STARFORGE_SCREENSHOT_DIR")}
	shot := br.screenshot(t, "build-page.png", shotDirs...)
	t.Logf("screenshot of the build page: %s", shot)

	br.navigate(t, m.url+strings.TrimPrefix(path, "/"))
	br.eval(t, "("+readSteps+")()", &rows)
	checkStepRows(t, "after a reload", rows)
	br.eval(t, `document.querySelector('#build-status').textContent.trim()`, &status)
	if status != "success" {
		t.Errorf("after a reload the build's status reads %q, want success", status)
	}
}

// numbered returns "line first" .. "line last".
func numbered(first, last int) []string {
	var s []string
	for i := first; i <= last; i++ {
		s = append(s, "line "+strconv.Itoa(i))
	}
	return s
}

// checkStepRows checks the finished build's steps as the page shows them.
func checkStepRows(t *testing.T, when string, rows []stepRow) {
	t.Helper()
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, " "); got != "prepare count finish" {
		t.Fatalf("%s: the build page shows steps %q, want prepare count finish (rows %+v)", when, got, rows)
	}
	dur := regexp.MustCompile(`^(\d+)s$`)
	for _, r := range rows {
		if !strings.Contains(" "+r.Class+" ", " success ") || !strings.Contains(" "+r.Dot+" ", " success ") {
			t.Errorf("%s: step %s is shown as %q (dot %q), want success", when, r.Name, r.Class, r.Dot)
		}
		if r.State == "" {
			t.Errorf("%s: step %s shows no state", when, r.Name)
		}
		if r.Logs != "stdio" {
			t.Errorf("%s: step %s links logs %q, want stdio", when, r.Name, r.Logs)
		}
		m := dur.FindStringSubmatch(r.Duration)
		if m == nil {
			t.Errorf("%s: step %s shows duration %q, want seconds such as 3s", when, r.Name, r.Duration)
			continue
		}
		// The count step printed 15 lines 0.2 s apart after the gate opened.
		if n, _ := strconv.Atoi(m[1]); r.Name == "count" && n < 3 {
			t.Errorf("%s: step count shows duration %s, want at least 3s", when, r.Duration)
		}
	}
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
