package webui

import (
	"context"
	"fmt"
	"html"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// checkPage GETs path and checks its status and that the body has every
// string of want and none of notWant.
func (f *fixture) checkPage(t *testing.T, path string, status int, want, notWant []string) string {
	t.Helper()
	st, h, body := f.get(t, path)
	if st != status {
		t.Fatalf("GET %s: status %d, want %d: %s", path, st, status, body)
	}
	if ct := h.Get("Content-Type"); status < 300 && ct != "text/html; charset=utf-8" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	for _, w := range want {
		if !strings.Contains(string(body), w) {
			t.Errorf("GET %s: body lacks %q", path, w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(string(body), w) {
			t.Errorf("GET %s: body has %q", path, w)
		}
	}
	if t.Failed() {
		t.Logf("body:\n%s", body)
	}
	return string(body)
}

func TestBuildersPage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.st.EnsureBuilder(ctx, store.Builder{Name: "arm", Tags: []string{"tier1", "arm64"}}); err != nil {
		t.Fatal(err)
	}
	linux := fmt.Sprintf(`id="builder-%d"`, f.linux)
	xss := fmt.Sprintf(`id="builder-%d"`, f.xss)
	tests := []struct {
		path          string
		status        int
		want, notWant []string
	}{
		{"/builders", 200, []string{
			"<title>Builders · Test Forge</title>", `<a href="/builders" aria-current="page">Builders</a>`,
			linux, xss, `>arm</a>`, `>empty</a>`, "Builds on Linux",
			// the tags, each a filter with its number of builders
			`<a class="tag on" href="/builders">all</a>`,
			`<a class="tag" href="/builders?tag=tier1">tier1 <span class="count">2</span></a>`,
			`<a class="tag" href="/builders?tag=amd64">amd64 <span class="count">1</span></a>`,
			// latest results, newest first, linked to the builds
			fmt.Sprintf(`<a class="box running" href="/builders/%d/builds/4"`, f.linux),
			fmt.Sprintf(`<a class="box warnings" href="/builders/%d/builds/3" title="#3: warnings — build warnings">3</a>`, f.linux),
			`class="box failure"`, `class="box success"`, `class="box exception"`, "no builds yet",
			`<td class="num"><a href="/queue">1</a></td>`, // linux's pending request
			html.EscapeString(xssName),
		}, []string{xssName}},
		{"/builders?tag=tier1", 200, []string{
			linux, `>arm</a>`,
			`<a class="tag" href="/builders">all</a>`,
			`<a class="tag on" href="/builders" aria-current="true" title="remove this filter">tier1`,
			`<a class="tag" href="/builders?tag=tier1&amp;tag=amd64">amd64`,
		}, []string{xss, `>empty</a>`}},
		{"/builders?tag=tier1&tag=arm64", 200, []string{`>arm</a>`,
			`<a class="tag on" href="/builders?tag=tier1" aria-current="true" title="remove this filter">arm64`,
		}, []string{linux}},
		{"/builders?tag=tier1,amd64", 200, []string{linux}, []string{`>arm</a>`}},
		{"/builders?tag=nope", 200, []string{`No builder has all of the tags <span class="tag">nope</span>`, `<a href="/builders">Show all builders</a>`}, []string{linux}},
		{"/builders?x=1", 400, []string{"x: unknown query parameter"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) { f.checkPage(t, tt.path, tt.status, tt.want, tt.notWant) })
	}
}

// consoleFixture adds changes and their builds to the fixture:
//
//	change 0 (rev aaa…): linux SUCCESS, empty still pending
//	change 1 (rev bbb…), change 2 (same rev, other branch): one buildset,
//	  linux FAILURE, rebuilt as WARNINGS in a second buildset
//	change 3 (no revision): nothing built
type consoleFixture struct {
	*fixture
	changes []store.Change
	builds  []store.Build // ok, failed, rebuilt
	waiting store.BuildRequest
}

func newConsoleFixture(t *testing.T) *consoleFixture {
	t.Helper()
	ctx := context.Background()
	f := &consoleFixture{fixture: newFixture(t)}
	var err error
	rev := func(c string) string { return strings.Repeat(c, 40) }
	f.changes, err = f.st.AddChanges(ctx, []store.Change{
		{Author: "Ada <ada@example.org>", Branch: "main", Revision: rev("a"), Comments: "First change\n\nLonger story", Revlink: "https://git.example.org/a"},
		{Author: "Bob <bob@example.org>", Branch: "main", Revision: rev("b"), Comments: "Second change"},
		{Author: "Bob <bob@example.org>", Branch: "release", Revision: rev("b"), Comments: "Second change"},
		{Author: "Cy <cy@example.org>", Comments: "No revision <b>bold</b>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	build := func(changes []int64, builders []int64, results ...result.Result) []store.BuildRequest {
		_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{BuilderIDs: builders, ChangeIDs: changes})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range results {
			if err := f.st.ClaimRequest(ctx, reqs[i].ID, time.Time{}); err != nil {
				t.Fatal(err)
			}
			b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: builders[i], RequestID: reqs[i].ID, WorkerID: f.w1})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.st.FinishBuild(ctx, b.ID, r, "done "+r.String(), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if b, err = f.st.GetBuild(ctx, b.ID); err != nil {
				t.Fatal(err)
			}
			f.builds = append(f.builds, b)
		}
		return reqs
	}
	reqs := build([]int64{f.changes[0].ID}, []int64{f.linux, f.empty}, result.Success)
	f.waiting = reqs[1]
	build([]int64{f.changes[1].ID, f.changes[2].ID}, []int64{f.linux}, result.Failure)
	build([]int64{f.changes[1].ID, f.changes[2].ID}, []int64{f.linux}, result.Warnings)
	return f
}

func TestConsolePage(t *testing.T) {
	f := newConsoleFixture(t)
	c := f.changes
	box := func(b store.Build, class string) string {
		return fmt.Sprintf(`<a class="box %s" href="/builders/%d/builds/%d" title="linux #%d: %s — done %s">%d</a>`,
			class, b.BuilderID, b.Number, b.Number, class, class, b.Number)
	}
	body := f.checkPage(t, "/console", 200, []string{
		"<title>Console · Test Forge</title>", `<a href="/console" aria-current="page">Console</a>`,
		// columns: the builders with requests on the page, in name order
		fmt.Sprintf(`<th class="bname"><a href="/builders/%d" title="empty"><span>empty</span></a></th><th class="bname"><a href="/builders/%d" title="linux"><span>linux</span></a></th>`, f.empty, f.linux),
		// rows
		`<a href="https://git.example.org/a">aaaaaaa</a>`, "First change", `<td class="who" title="Ada &lt;ada@example.org&gt;">Ada</td>`,
		`<span class="none">change ` + fmt.Sprint(c[3].ID) + `</span>`, "No revision &lt;b&gt;bold&lt;/b&gt;",
		// both branches of the shared revision on one row
		`Second change <span class="tag">release</span> <span class="tag">main</span>`,
		// cells
		box(f.builds[0], "success"),
		box(f.builds[1], "failure") + box(f.builds[2], "warnings"),
		fmt.Sprintf(`<a class="box pending" href="/queue" title="empty: request %d waits in the queue">…</a>`, f.waiting.ID),
	}, []string{"Older »", "« Newest", "Longer story", html.EscapeString(xssName)})
	// Rows newest first; the shared revision is one row.
	rows := regexp.MustCompile(`<tr id="change-(\d+)">`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, r := range rows {
		got = append(got, r[1])
	}
	if want := ids(c[3].ID, c[2].ID, c[0].ID); !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	// Each row has one cell per column.
	if n := strings.Count(body, `<td class="cell">`); n != 3*2 {
		t.Errorf("%d cells, want 6", n)
	}

	t.Run("paging", func(t *testing.T) {
		page1 := f.checkPage(t, "/console?limit=2", 200, []string{
			fmt.Sprintf(`<a href="/console?limit=2&amp;before=%d">Older »</a>`, c[2].ID),
		}, []string{"« Newest", "First change"})
		if !strings.Contains(page1, "Second change") {
			t.Error("page 1 lacks the second change")
		}
		// A revision split by the page's end shows on both pages.
		f.checkPage(t, fmt.Sprintf("/console?limit=2&before=%d", c[2].ID), 200, []string{
			"First change", "Second change", `<a href="/console?limit=2">« Newest</a>`,
		}, []string{"Older »", "data-refresh", "No revision"})
	})
	t.Run("tags", func(t *testing.T) {
		f.checkPage(t, "/console?tag=amd64", 200, []string{`<span>linux</span>`, box(f.builds[0], "success")},
			[]string{`<span>empty</span>`, "waits in the queue"})
		f.checkPage(t, "/console?tag=nope", 200, []string{"No build was requested for these changes on builders with these tags."}, nil)
	})
	for path, msg := range map[string]string{
		"/console?limit=0":   "limit: want an integer from 1 to 200",
		"/console?limit=201": "limit: want an integer from 1 to 200",
		"/console?before=x":  "before: want a positive integer",
		"/console?x=1":       "x: unknown query parameter",
	} {
		f.checkPage(t, path, 400, []string{msg}, nil)
	}
}

func TestConsoleEmpty(t *testing.T) {
	f := newFixture(t)
	f.checkPage(t, "/console", 200, []string{"No changes yet"}, []string{"<table"})
}

func TestGridPage(t *testing.T) {
	f := newFixture(t)
	body := f.checkPage(t, "/grid?hours=3", 200, []string{
		"<title>Grid · Test Forge</title>", `<a href="/grid" aria-current="page">Grid</a>`,
		`<a href="/grid?hours=3" aria-current="page">3h</a>`, `<a href="/grid?hours=168">7d</a>`,
		`<svg class="grid"`, `class="bname"`, ">linux</text>", html.EscapeString(xssName),
		fmt.Sprintf(`<a href="/builders/%d/builds/2"><rect class="failure"`, f.linux),
		fmt.Sprintf(`<a href="/builders/%d/builds/4"><rect class="running"`, f.linux),
		"<title>linux #2: failure, 1m 23s, started ",
	}, []string{xssName + "<", ">empty</text>"})
	// The running build reaches the top: now.
	if !regexp.MustCompile(`builds/4"><rect class="running" x="\d+" y="` + fmt.Sprint(gridHead) + `"`).MatchString(body) {
		t.Error("the running build does not reach the top")
	}
	if n := strings.Count(body, `"><rect `); n != 5 {
		t.Errorf("%d boxes, want 5 (4 finished builds and the running one)", n)
	}
	// One hour back, the fixture's finished builds (started 60 to 57
	// minutes ago) are partly out; the running one is always in.
	body = f.checkPage(t, "/grid?hours=1", 200, []string{`<rect class="running"`}, nil)
	if n := strings.Count(body, `"><rect `); n < 1 || n > 5 {
		t.Errorf("%d boxes in the last hour", n)
	}
	for path, msg := range map[string]string{
		"/grid?hours=0":   "hours: want an integer from 1 to 168",
		"/grid?hours=169": "hours: want an integer from 1 to 168",
		"/grid?hours=x":   "hours: want an integer from 1 to 168",
		"/grid?h=1":       "h: unknown query parameter",
	} {
		f.checkPage(t, path, 400, []string{msg}, nil)
	}
	empty := newFixture(t)
	empty.checkPage(t, "/grid?hours=1&hours=1", 200, nil, nil)
}

func TestGridLanes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	bs := []store.Build{
		{StartedAt: at(0), CompleteAt: at(10)},
		{StartedAt: at(5), CompleteAt: at(8)},   // overlaps the first
		{StartedAt: at(10), CompleteAt: at(12)}, // after the first: its lane again
		{StartedAt: at(6)},                      // running: overlaps all
		{StartedAt: at(9), CompleteAt: at(11)},  // the second's lane is free
	}
	lane, lanes := gridLanes(bs, at(20))
	if want := []int{0, 1, 0, 2, 1}; !slices.Equal(lane, want) || lanes != 3 {
		t.Errorf("lanes %v of %d, want %v of 3", lane, lanes, want)
	}
	if _, lanes := gridLanes(nil, at(0)); lanes != 1 {
		t.Errorf("no builds: %d lanes", lanes)
	}
}

// TestGridScale checks the grid's time axis: busy stretches linear, idle
// gaps squeezed into bands, and ticks at round times going down.
func TestGridScale(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	from := now.Add(-time.Hour)
	sec := func(n int) time.Time { return now.Add(time.Duration(n) * time.Second) }
	// Two bursts of builds, 40 minutes apart, and nothing in the last 10.
	spans := []gridSpan{
		{sec(-3000), sec(-2990)}, {sec(-2995), sec(-2980)}, // 20 s busy
		{sec(-620), sec(-600)}, // 20 s busy
	}
	sc := newGridScale(spans, from, now)
	var kinds []string
	for _, p := range sc.pieces {
		k := fmt.Sprintf("busy %v", p.to.Sub(p.from))
		if p.gap {
			k = fmt.Sprintf("gap %v", p.to.Sub(p.from))
		}
		kinds = append(kinds, k)
	}
	want := []string{"gap 10m0s", "busy 20s", "gap 39m20s", "busy 20s", "gap 10m0s"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("pieces %v, want %v", kinds, want)
	}
	// 40 s busy share what the three gaps leave of the height.
	burst := int(math.Round(20 * float64(gridHeight-3*gridGap) / 40))
	if sc.height != 3*gridGap+2*burst {
		t.Errorf("height %d, want %d", sc.height, 3*gridGap+2*burst)
	}
	for _, tt := range []struct {
		at   time.Time
		want int
	}{
		{now, 0},
		{sec(-600), gridGap},
		{sec(-610), gridGap + int(math.Round(float64(burst)/2))},
		{sec(-620), gridGap + burst},
		{sec(-2980), 2*gridGap + burst},
		{sec(-3000), 2*gridGap + 2*burst},
		{from, sc.height},
		{from.Add(-time.Hour), sc.height},
		{now.Add(time.Hour), 0},
	} {
		if got := sc.y(tt.at); got != tt.want {
			t.Errorf("y(%v) = %d, want %d", now.Sub(tt.at), got, tt.want)
		}
	}
	ticks, gaps := sc.marks("15:04", 100)
	if len(gaps) != 3 || gaps[1].Label != "idle 39m 20s" || gaps[0].Y != 100 || gaps[0].H != gridGap {
		t.Errorf("gaps %+v", gaps)
	}
	for i := 1; i < len(ticks); i++ {
		if ticks[i].Y-ticks[i-1].Y < 30 {
			t.Errorf("ticks too close: %+v", ticks)
		}
	}
	if len(ticks) < 4 || ticks[0].Label != "11:50:00" {
		t.Errorf("ticks %+v", ticks)
	}

	// Steady work over the whole window: one linear stretch, no gaps.
	var steady []gridSpan
	for m := 0; m < 60; m++ {
		steady = append(steady, gridSpan{now.Add(time.Duration(m-60) * time.Minute), now.Add(time.Duration(m-59) * time.Minute)})
	}
	sc = newGridScale(steady, from, now)
	if len(sc.pieces) != 1 || sc.pieces[0].gap || sc.height != gridHeight {
		t.Errorf("steady: %+v, height %d", sc.pieces, sc.height)
	}
	ticks, _ = sc.marks("15:04", 0)
	if len(ticks) < 10 || ticks[0].Label != "12:00" || ticks[1].Label != "11:55" {
		t.Errorf("steady ticks %+v", ticks)
	}
	// A short burst in a long window is drawn at 40 px/s at most.
	sc = newGridScale([]gridSpan{{sec(-600), sec(-598)}}, from, now)
	if sc.height != 2*gridGap+80 {
		t.Errorf("a 2 s burst: height %d, want %d", sc.height, 2*gridGap+80)
	}
	// Nothing at all: one gap.
	if sc := newGridScale(nil, from, now); len(sc.pieces) != 1 || !sc.pieces[0].gap || sc.height != gridGap {
		t.Errorf("empty: %+v", sc.pieces)
	}
}
