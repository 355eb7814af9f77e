package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitGate is shell that waits (up to a minute) for the file gate.
func waitGate(gate string) string {
	return `n=0; while [ ! -e '` + gate + `' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
[ -e '` + gate + `' ] || { echo "the test never opened ` + filepath.Base(gate) + `"; exit 1; }
`
}

// TestBrowserLogViewer drives the build page's log viewer in headless
// Chromium: ANSI colours rendered as coloured spans and never as HTML,
// following a growing log while at the bottom, not after scrolling up,
// the follow box, links to a line that set the URL and open the log at
// that line after a reload, and the raw download link. It logs how long
// lines take from the step's shell to the browser's screen.
func TestBrowserLogViewer(t *testing.T) {
	br := startBrowser(t)
	dir := t.TempDir()
	gate1, gate2 := filepath.Join(dir, "gate1"), filepath.Join(dir, "gate2")
	script := `printf '\033[1;31mred bold\033[0m plain \033[38;5;208morange\033[0m \033[38;2;10;20;30mtrue\033[0m <b>not bold</b> &amp; \033[42mgreen bg\033[0m\n'
i=1; while [ $i -le 300 ]; do echo "early $i"; i=$((i+1)); done
` + waitGate(gate1) + `
i=1; while [ $i -le 10 ]; do echo "tick $(date +%s%N)"; sleep 0.2; i=$((i+1)); done
i=1; while [ $i -le 300 ]; do echo "late $i"; i=$((i+1)); if [ $((i % 60)) -eq 0 ]; then sleep 0.25; fi; done
` + waitGate(gate2) + `
echo "the end"
`
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+fmt.Sprintf(`
builder("logs", workers=["w1"], steps=[shell(%q, name="talk")])
force_scheduler("force", builders=["logs"])
`, script))
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	t.Cleanup(func() {
		_ = os.WriteFile(gate1, nil, 0o644)
		_ = os.WriteFile(gate2, nil, 0o644)
	})

	// The ANSI renderer, case by case, in the browser that runs it.
	br.navigate(t, m.url)
	t.Run("ansi", func(t *testing.T) { checkANSI(t, br) })

	if out, code := cli(t, "force", "--master", m.url, "logs"); code != 0 {
		t.Fatalf("force logs: exit %d:\n%s", code, out)
	}
	m.out.wait(t, `build started.*builder=logs`, 30*time.Second)
	var builder struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	m.getJSON(t, "api/v2/builders/logs", &builder)
	page := fmt.Sprintf("%sbuilders/%d/builds/1", m.url, builder.Builders[0].ID)
	br.navigate(t, page)

	var logID int64
	br.waitFor(t, "the talk step's log link", `() => {
  const a = document.querySelector('#steps tr.step a.log');
  if (!a) return 0;
  a.id = 'talk-log';
  return parseInt(a.dataset.logId, 10);
}`, 20*time.Second, &logID)
	br.click(t, "#talk-log")

	// (a) A running log opens at its end, following.
	type viewState struct {
		Follow    bool     `json:"follow"`
		AtBottom  bool     `json:"atBottom"`
		Info      string   `json:"info"`
		Shown     []string `json:"shown"`
		Raw       string   `json:"raw"`
		Hash      string   `json:"hash"`
		Highlight []string `json:"highlight"`
	}
	const readView = `(() => {
  const v = document.querySelector('.logview');
  const box = v.querySelector('.logscroll');
  const r = box.getBoundingClientRect();
  const shown = [...v.querySelectorAll('.loglines .l:not(.h):not(.wait)')].filter(l => {
    const b = l.getBoundingClientRect();
    return b.bottom > r.top + 1 && b.top < r.bottom - 1;
  }).map(l => l.querySelector('.lt').textContent);
  return {
    follow: v.querySelector('input.follow').checked,
    atBottom: box.scrollHeight - box.scrollTop - box.clientHeight < 2,
    info: v.querySelector('.info').textContent,
    shown: shown,
    raw: v.querySelector('a.raw').getAttribute('href'),
    hash: location.hash,
    highlight: [...v.querySelectorAll('.loglines .l.hl .lt')].map(l => l.textContent),
  };
})()`
	var vs viewState
	br.waitFor(t, "early 300 in sight", `() => {
  const s = `+readView+`;
  return s.shown.includes('early 300') && s;
}`, 30*time.Second, &vs)
	if !vs.Follow || !vs.AtBottom || !strings.Contains(vs.Info, "growing") {
		t.Errorf("a running log opened %+v; want it following, at the bottom, growing", vs)
	}
	if vs.Raw != fmt.Sprintf("/api/v2/logs/%d/raw", logID) {
		t.Errorf("the download link goes to %q", vs.Raw)
	}

	// (b) While following, new lines come into sight as they arrive. The
	// page notes when each "tick <ns>" line first shows.
	br.eval(t, `(() => {
  window.starforgeTestSeen = {};
  new MutationObserver(() => {
    const at = Date.now();
    for (const d of document.querySelectorAll('.logview .loglines .l .lt')) {
      const m = /^tick (\d+)$/.exec(d.textContent);
      if (m && !(m[1] in window.starforgeTestSeen)) window.starforgeTestSeen[m[1]] = at;
    }
  }).observe(document.querySelector('.logview .loglines'), { childList: true });
  return true;
})()`, nil)
	if err := os.WriteFile(gate1, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	br.waitFor(t, "late 300 in sight", `() => {
  const s = `+readView+`;
  return s.shown.includes('late 300') && s;
}`, 30*time.Second, &vs)
	if !vs.Follow || !vs.AtBottom {
		t.Errorf("after growing the view is %+v; want it still following at the bottom", vs)
	}
	var seen map[string]int64
	br.eval(t, `window.starforgeTestSeen`, &seen)
	var delays []float64
	for sent, at := range seen {
		ns, err := strconv.ParseInt(sent, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, float64(at)-float64(ns)/1e6)
	}
	if len(delays) != 10 {
		t.Errorf("the browser saw %d tick lines arrive, want 10", len(delays))
	}
	if len(delays) > 0 {
		slices.Sort(delays)
		t.Logf("delay from the step's shell to the browser's log view, %d lines: median %.0f ms, max %.0f ms",
			len(delays), delays[len(delays)/2], delays[len(delays)-1])
	}

	// (c) Scrolling up to read stops following: the end of the log grows
	// out of sight. The first line of output (after the header) shows its
	// colours.
	var top float64
	br.eval(t, fmt.Sprintf(`(async () => {
  const j = await (await fetch('/api/v2/logs/%d/contents')).json();
  const i = j.logchunks[0].content.split('\n').findIndex(l => l.startsWith('o'));
  const box = document.querySelector('.logview .logscroll');
  box.scrollTop = i * 18;
  return box.scrollTop;
})()`, logID), &top)
	br.waitFor(t, "the first line in sight", `() => {
  const s = `+readView+`;
  return s.shown.length > 0 && s.shown[0].startsWith('red bold') && s;
}`, 10*time.Second, &vs)
	if vs.Follow {
		t.Error("scrolling to the top left follow on")
	}
	type span struct {
		Text   string `json:"text"`
		Class  string `json:"class"`
		Color  string `json:"color"`
		BG     string `json:"bg"`
		Weight string `json:"weight"`
	}
	var spans []span
	br.eval(t, `[...document.querySelector('.logview .loglines .l:not(.h) .lt').children].map(s => ({
  text: s.textContent, class: s.className, color: getComputedStyle(s).color,
  bg: getComputedStyle(s).backgroundColor, weight: getComputedStyle(s).fontWeight }))`, &spans)
	want := []span{
		{"red bold", "ansi-fg-1 ansi-bold", "rgb(205, 0, 0)", "rgba(0, 0, 0, 0)", "700"},
		{"orange", "", "rgb(255, 135, 0)", "rgba(0, 0, 0, 0)", "400"},
		{"true", "", "rgb(10, 20, 30)", "rgba(0, 0, 0, 0)", "400"},
		{"green bg", "ansi-bg-2", "rgb(31, 35, 40)", "rgb(0, 205, 0)", "400"},
	}
	if fmt.Sprint(spans) != fmt.Sprint(want) {
		t.Errorf("the coloured line's spans:\n%+v\nwant\n%+v", spans, want)
	}
	if first := vs.Shown[0]; first != "red bold plain orange true <b>not bold</b> &amp; green bg" {
		t.Errorf("the first line reads %q", first)
	}

	if err := os.WriteFile(gate2, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	br.waitFor(t, "the log complete", `() => {
  const s = `+readView+`;
  return !s.info.includes('growing') && s;
}`, 30*time.Second, &vs)
	var after float64
	br.eval(t, `document.querySelector('.logview .logscroll').scrollTop`, &after)
	if after != top || vs.Follow {
		t.Errorf("the log grew while scrolled up and the view moved from %v to %v: %+v", top, after, vs)
	}

	// (d) The follow box takes the view to the end.
	br.click(t, ".logview input.follow")
	br.waitFor(t, "the end in sight", `() => {
  const s = `+readView+`;
  return s.shown.includes('the end') && s;
}`, 10*time.Second, &vs)

	// (e) A line number links to its line: the URL says which, the line
	// is highlighted, and the link opens the log there.
	var lineID string
	br.eval(t, `(() => {
  const l = [...document.querySelectorAll('.logview .loglines .l')].find(l => l.querySelector('.lt').textContent === 'late 290');
  return l.id;
})()`, &lineID)
	br.click(t, "#"+lineID+" a.ln")
	br.waitFor(t, "the clicked line highlighted", `() => {
  const s = `+readView+`;
  return s.highlight.length > 0 && s;
}`, 10*time.Second, &vs)
	if vs.Hash != "#"+lineID || strings.Join(vs.Highlight, "|") != "late 290" || !strings.HasPrefix(lineID, fmt.Sprintf("log%d-L", logID)) {
		t.Errorf("after clicking the number of line %s: hash %q, highlighted %q", lineID, vs.Hash, vs.Highlight)
	}
	br.navigate(t, "about:blank")
	br.navigate(t, page+"#"+lineID)
	br.waitFor(t, "the linked line highlighted after a reload", `() => {
  const v = document.querySelector('.logview');
  if (!v) return false;
  const s = `+readView+`;
  return s.highlight.length > 0 && s.shown.includes('late 290') && s;
}`, 20*time.Second, &vs)
	if strings.Join(vs.Highlight, "|") != "late 290" || vs.Follow {
		t.Errorf("the link opened the log as %+v; want line late 290 highlighted and in sight, not following", vs)
	}
}

// checkANSI renders lines with the page's ANSI renderer and compares the
// HTML it makes.
func checkANSI(t *testing.T, br *browser) {
	for _, tc := range []struct{ in, want string }{
		{"plain <b>&amp;", "plain &lt;b&gt;&amp;amp;"},
		{"\x1b[31mred\x1b[0m after", `<span class="ansi-fg-1">red</span> after`},
		{"\x1b[1;92mbright bold", `<span class="ansi-fg-10 ansi-bold">bright bold</span>`},
		{"\x1b[31mred\x1b[39mdefault", `<span class="ansi-fg-1">red</span>default`},
		{"\x1b[44mblue\x1b[49mnone\x1b[4munder\x1b[24m", `<span class="ansi-bg-4">blue</span>none<span class="ansi-underline">under</span>`},
		{"\x1b[31mred\x1b[mreset", `<span class="ansi-fg-1">red</span>reset`},
		{"\x1b[38;5;208mo\x1b[48;5;21mb", `<span style="color: rgb(255, 135, 0);">o</span><span style="color: rgb(255, 135, 0); background-color: rgb(0, 0, 255);">b</span>`},
		{"\x1b[38;5;244mgrey\x1b[38;5;9mnine", `<span style="color: rgb(128, 128, 128);">grey</span><span class="ansi-fg-9">nine</span>`},
		{"\x1b[38;2;10;20;30mt\x1b[48;2;300;0;999mclamped", `<span style="color: rgb(10, 20, 30);">t</span><span style="color: rgb(10, 20, 30); background-color: rgb(255, 0, 255);">clamped</span>`},
		{"\x1b[38:2::1:2:3mcolon\x1b[38:5:1mfive", `<span style="color: rgb(1, 2, 3);">colon</span><span class="ansi-fg-1">five</span>`},
		{"\x1b[38;5mx\x1b[1my", `x<span class="ansi-bold">y</span>`}, // malformed 38: the rest of the sequence is ignored
		{"\x1b[7minv\x1b[31;7mred", `<span class="ansi-inv-fg ansi-inv-bg">inv</span><span class="ansi-inv-fg ansi-bg-1">red</span>`},
		{"a\x1b[2Kb\x1b[1Gc\x1b[?25ld", "abcd"},
		{"\x1b]8;;http://example.org\x07link\x1b]8;;\x07 \x1b]0;title\x1b\\done", "link done"},
		{"10%\r50%\r100%", "100%"},
		{"done\r", "done"},
		{"a\x07b\x08c\td\x00", "abc\td"},
		{"x\x1b", "x"},
		{"\x1b[31m<img src=x onerror=alert(1)>", `<span class="ansi-fg-1">&lt;img src=x onerror=alert(1)&gt;</span>`},
		{"\x1b[2;3;9mfaint\x1b[22;23;29mplain", `<span class="ansi-dim ansi-italic ansi-strike">faint</span>plain`},
	} {
		var got string
		br.eval(t, fmt.Sprintf(`window.starforgeLive.ansi(%s, document.createElement('span')).innerHTML`, jsString(tc.in)), &got)
		if got != tc.want {
			t.Errorf("ansi(%q)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// TestBrowserHugeLog opens a finished log of 1,000,000 lines: the first
// lines show at once, the end is one scroll away, and the browser never
// asks for more than a page of lines at a time.
func TestBrowserHugeLog(t *testing.T) {
	if testing.Short() {
		t.Skip("stores a log of a million lines")
	}
	br := startBrowser(t)
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("huge", workers=["w1"], steps=[shell("seq -f 'row %.0f' 1 1000000", name="count")])
force_scheduler("force", builders=["huge"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	start := time.Now()
	if out, code := cli(t, "force", "--master", m.url, "--wait", "huge"); code != 0 {
		t.Fatalf("force huge: exit %d:\n%s", code, out)
	}
	t.Logf("the build of 1,000,000 lines took %v", time.Since(start).Round(time.Millisecond))
	var builder struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	m.getJSON(t, "api/v2/builders/huge", &builder)
	br.navigate(t, fmt.Sprintf("%sbuilders/%d/builds/1", m.url, builder.Builders[0].ID))

	// Click, then time until the first lines (the step's header) show.
	br.eval(t, `(() => {
  performance.clearResourceTimings();
  window.starforgeTestClick = performance.now();
  return true;
})()`, nil)
	br.click(t, "#steps tr.step a.log")
	const visible = `(() => {
  const v = document.querySelector('.logview');
  if (!v) return [];
  const r = v.querySelector('.logscroll').getBoundingClientRect();
  return [...v.querySelectorAll('.loglines .l:not(.wait)')].filter(l => {
    const b = l.getBoundingClientRect();
    return b.bottom > r.top + 1 && b.top < r.bottom - 1;
  }).map(l => l.querySelector('.lt').textContent);
})()`
	var ms float64
	br.waitFor(t, "the first rows", `() => {
  const shown = `+visible+`;
  return shown.length > 0 && (performance.now() - window.starforgeTestClick) + 0.001;
}`, 30*time.Second, &ms)
	var info string
	br.eval(t, `document.querySelector('.logview .info').textContent`, &info)
	if !strings.HasPrefix(info, "1,000,0") { // a few header lines more than a million
		t.Errorf("the viewer says %q", info)
	}
	t.Logf("a log of 1,000,000 lines: the first rows showed %.0f ms after the click", ms)

	// To the end, as by dragging the scroll bar down.
	var shown []string
	br.eval(t, `(() => {
  window.starforgeTestClick = performance.now();
  const box = document.querySelector('.logview .logscroll');
  box.scrollTop = box.scrollHeight;
  return true;
})()`, nil)
	br.waitFor(t, "the last row", `() => {
  const shown = `+visible+`;
  return shown.includes('row 1000000') && shown;
}`, 30*time.Second, &shown)
	br.eval(t, `performance.now() - window.starforgeTestClick`, &ms)
	t.Logf("the last rows showed %.0f ms after scrolling to the end", ms)

	var fetched []int
	br.eval(t, `performance.getEntriesByType('resource').filter(e => e.name.includes('/contents')).map(e => {
  const u = new URL(e.name);
  return parseInt(u.searchParams.get('last'), 10) - parseInt(u.searchParams.get('first'), 10) + 1;
})`, &fetched)
	total := 0
	for _, n := range fetched {
		total += n
		if n > 500 {
			t.Errorf("the viewer asked for %d lines at once", n)
		}
	}
	if len(fetched) == 0 || total > 5000 {
		t.Errorf("the viewer asked for %d lines in %d requests; want a few pages", total, len(fetched))
	}
}
