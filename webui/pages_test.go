package webui

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPages(t *testing.T) {
	f := newFixture(t)
	linux := fmt.Sprintf("/builders/%d", f.linux)
	tests := []struct {
		path    string
		status  int
		want    []string // substrings of the body
		notWant []string
	}{
		{"/", 200, []string{
			"<title>Test Forge</title>",
			`<span class="big">1</span> of 2 workers connected`,
			`<span class="big">1</span> pending build request<`,
			`<span class="big">1</span> build running`,
			`<td class="state">test</td>`, // the running build's current step
			`class="box success"`, `class="box failure"`, `class="box warnings"`, `class="box running"`, `class="box exception"`,
			`class="badge running"`, `href="` + linux + `/builds/2"`,
			`>linux</a>`, `<span class="tag">tier1</span>`, "no builds yet",
			`<time class="ago"`, `1m 23s`,
			`<script src="/static/app.js?v=`, `<link rel="stylesheet" href="/static/style.css?v=`,
		}, nil},
		{"/builders/linux", 200, []string{
			"<h1>linux</h1>", "Builds on Linux", `<span class="tag">amd64</span>`,
			`data-scheduler="force"`, "Force a build…", `data-builder="linux"`,
			"no worker connected for builder linux", "Pending build requests",
			`class="badge warnings"`, `class="badge failure"`, `class="badge success"`, `class="badge running"`,
		}, []string{`data-scheduler="other"`, "Older »", "« Newest"}},
		{linux, 200, []string{"<h1>linux</h1>"}, nil},
		{"/builders/empty", 200, []string{"Nothing is waiting.", "No builds yet.", `data-scheduler="force"`, `data-scheduler="other"`}, nil},
		{fmt.Sprintf("%s/builds/%d", linux, f.running.Number), 200, []string{
			fmt.Sprintf(`data-build-id="%d"`, f.running.ID), "data-running",
			`id="build-status" class="status running"`, `<button id="stop"`,
			`class="step success"`, `class="step running"`, `<td class="name">compile</td>`, `<td class="name">test</td>`,
			`<td class="state">compiled</td>`,
			fmt.Sprintf(`href="/api/v2/logs/%d/raw" data-log-id="%d" data-log-type="s">stdio</a>`, f.doneLog.ID, f.doneLog.ID),
			`<td class="name">buildername</td><td class="value">x</td><td class="source">Builder</td>`,
			`<td class="name">branch</td><td class="value">main</td><td class="source">Scheduler</td>`,
			"fixture", // the reason
			`href="/workers#worker-w1"`,
		}, []string{"secret-hidden-step"}},
		{"/builders/linux/builds/2", 200, []string{`class="status failure"`, "build failure", "1m 23s"}, []string{`id="stop"`, "data-running"}},
		{"/workers", 200, []string{
			`id="worker-w1"`, `<span class="pill connected">connected</span>`, "<td>linux</td>", "<td>1.2.3</td>", `<td class="num">4</td>`,
			`<span class="pill disconnected">disconnected</span>`, `<span class="pill paused"`, "owner is back",
			fmt.Sprintf(`href="%s/builds/%d">linux #%d</a>`, linux, f.running.Number, f.running.Number),
		}, nil},
		{"/builders/nope", 404, []string{"404 Not Found", "builder &#34;nope&#34; not found"}, nil},
		{"/builders/linux/builds/99", 404, []string{"build linux/99 not found"}, nil},
		{"/builders/linux/builds/x", 400, []string{"build number: want a non-negative integer"}, nil},
		{"/builders/linux?before=x", 400, []string{"before: want a positive integer"}, nil},
		{"/nope", 404, []string{"no page at /nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st, h, body := f.get(t, tt.path)
			if st != tt.status {
				t.Fatalf("status %d, want %d", st, tt.status)
			}
			if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("body lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(body), w) {
					t.Errorf("body has %q", w)
				}
			}
			if t.Failed() {
				t.Logf("body:\n%s", body)
			}
		})
	}
}

// TestPagesEscape checks that names from master.star cannot inject markup.
func TestPagesEscape(t *testing.T) {
	f := newFixture(t)
	escaped := html.EscapeString(xssName) // &lt;script&gt;alert(1)&lt;/script&gt;
	for _, path := range []string{
		"/",
		fmt.Sprintf("/builders/%d", f.xss),
		fmt.Sprintf("/builders/%d/builds/1", f.xss),
	} {
		t.Run(path, func(t *testing.T) {
			st, _, body := f.get(t, path)
			if st != 200 {
				t.Fatalf("status %d", st)
			}
			if strings.Contains(string(body), "<script>alert") || strings.Contains(string(body), "<b>bold") {
				t.Errorf("unescaped markup in\n%s", body)
			}
			if !strings.Contains(string(body), escaped) {
				t.Errorf("body lacks %q", escaped)
			}
		})
	}
	// The builder's name in a URL path is escaped too.
	st, _, body := f.get(t, "/builders/"+url.PathEscape(xssName))
	if st != 200 || !strings.Contains(string(body), "<h1>"+escaped+"</h1>") {
		t.Errorf("by name: status %d: %s", st, body)
	}
}

// TestBuilderPaging follows the "Older" links of a builder's history.
func TestBuilderPaging(t *testing.T) {
	f := newFixture(t)
	for i := range 2*builderPageSize + 7 {
		f.addBuild(t, f.empty, f.w1, f.start.Add(time.Duration(i)*time.Second))
	}
	numRe := regexp.MustCompile(fmt.Sprintf(`href="/builders/%d/builds/(\d+)"`, f.empty))
	olderRe := regexp.MustCompile(`href="(/builders/\d+\?before=\d+)">Older`)
	var seen []string
	path := fmt.Sprintf("/builders/%d", f.empty)
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		st, _, body := f.get(t, path)
		if st != 200 {
			t.Fatalf("%s: status %d", path, st)
		}
		for _, m := range numRe.FindAllStringSubmatch(string(body), -1) {
			seen = append(seen, m[1])
		}
		if pages > 0 && !strings.Contains(string(body), "« Newest") {
			t.Errorf("%s: no link to the newest builds", path)
		}
		m := olderRe.FindStringSubmatch(string(body))
		if m == nil {
			break
		}
		path = html.UnescapeString(m[1])
	}
	if len(seen) != 2*builderPageSize+7 {
		t.Errorf("saw %d builds, want %d", len(seen), 2*builderPageSize+7)
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != 2*builderPageSize+7 {
		t.Errorf("duplicate builds across pages")
	}
}

func TestStatic(t *testing.T) {
	f := newFixture(t)
	_, _, home := f.get(t, "/")
	for _, name := range []string{"app.js", "style.css"} {
		link := regexp.MustCompile(`/static/` + regexp.QuoteMeta(name) + `\?v=[0-9a-f]+`).FindString(string(home))
		if link == "" {
			t.Fatalf("home page does not link %s", name)
		}
		st, h, body := f.get(t, link)
		if st != 200 || len(body) < 1000 {
			t.Errorf("%s: status %d, %d bytes", link, st, len(body))
		}
		if cc := h.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", link, cc)
		}
		ct := h.Get("Content-Type")
		if !strings.HasPrefix(ct, map[string]string{"app.js": "text/javascript", "style.css": "text/css"}[name]) {
			t.Errorf("%s: Content-Type %q", link, ct)
		}
		// Unversioned: revalidated every time.
		if _, h, _ := f.get(t, "/static/"+name); h.Get("Cache-Control") != "no-cache" {
			t.Errorf("unversioned %s: Cache-Control %q", name, h.Get("Cache-Control"))
		}
		req, _ := http.NewRequest("GET", f.srv.URL+link, nil)
		req.Header.Set("If-None-Match", h.Get("ETag"))
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s with ETag: status %d", link, resp.StatusCode)
		}
	}
	if st, _, _ := f.get(t, "/static/nope.js"); st != 404 {
		t.Errorf("missing asset: status %d", st)
	}
}
