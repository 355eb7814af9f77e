package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

func TestComputeStats(t *testing.T) {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	var durs, waits []store.Sample
	// Day 0: 1s to 10s, the odd ones passed; day 3: one 100s build.
	for i := 1; i <= 10; i++ {
		durs = append(durs, store.Sample{Day: 0, Time: sec(i), Good: i%2 == 1})
		waits = append(waits, store.Sample{Day: 0, Time: sec(10 * i)})
	}
	durs = append(durs, store.Sample{Day: 3, Time: sec(100), Good: true})
	durs = append(durs, store.Sample{Day: 9, Time: sec(1000)}) // outside the week: ignored

	day, week, daily := computeStats(durs, waits)
	want := statsWindow{Builds: 10, Good: 5, Mean: 5500 * time.Millisecond, P50: sec(5), P90: sec(9),
		Requests: 10, WaitMean: sec(55), WaitP50: sec(50), WaitP90: sec(90)}
	if day != want || daily[0] != want {
		t.Errorf("day = %+v\nwant %+v", day, want)
	}
	want = statsWindow{Builds: 11, Good: 6, Mean: sec(155) / 11, P50: sec(6), P90: sec(10),
		Requests: 10, WaitMean: sec(55), WaitP50: sec(50), WaitP90: sec(90)}
	if week != want {
		t.Errorf("week = %+v\nwant %+v", week, want)
	}
	if d := daily[3]; d.Builds != 1 || d.P50 != sec(100) || d.P90 != sec(100) || d.SuccessRate() != 1 || d.Requests != 0 {
		t.Errorf("day 3 = %+v", d)
	}
	if d := daily[1]; d != (statsWindow{}) || d.SuccessRate() != -1 {
		t.Errorf("day 1 = %+v", d)
	}

	for _, tt := range []struct {
		n        int
		p        float64
		want     int
		wantName string
	}{
		{1, 0.5, 1, "one value"},
		{2, 0.5, 1, "two values: the lower"},
		{3, 0.5, 2, "odd"},
		{10, 0.9, 9, "p90 of 10"},
		{11, 0.9, 10, "p90 of 11"},
		{100, 0.9, 90, "p90 of 100"},
	} {
		var ds []time.Duration
		for i := 1; i <= tt.n; i++ {
			ds = append(ds, sec(i))
		}
		if got := percentile(ds, tt.p); got != sec(tt.want) {
			t.Errorf("%s: percentile %v of 1..%d = %v, want %v", tt.wantName, tt.p, tt.n, got, sec(tt.want))
		}
	}
}

func TestStatsAPI(t *testing.T) {
	f := newFixture(t)
	type window struct {
		Builds      int      `json:"builds"`
		SuccessRate *float64 `json:"success_rate"`
		Duration    *struct {
			Mean, P50, P90 float64
		} `json:"duration"`
		Requests int `json:"requests"`
		Wait     *struct {
			Mean, P50, P90 float64
		} `json:"wait"`
	}
	type stats struct {
		BuilderID int64    `json:"builderid"`
		Name      string   `json:"name"`
		Day       window   `json:"day"`
		Week      window   `json:"week"`
		Daily     []window `json:"daily"`
	}
	var got struct {
		Stats []stats
		Meta  meta
	}
	f.getJSON(t, "/api/v2/stats", &got)
	if len(got.Stats) != 3 || got.Meta.Total != 3 {
		t.Fatalf("%d builders: %+v", len(got.Stats), got)
	}
	by := map[string]stats{}
	for _, s := range got.Stats {
		by[s.Name] = s
	}
	show := func(w window) string {
		b, _ := json.Marshal(w)
		return string(b)
	}
	// linux: SUCCESS, FAILURE and WARNINGS in 83 s each, and a running
	// build; every request waited 1 s.
	linux := `{"builds":3,"success_rate":0.6666666666666666,"duration":{"Mean":83,"P50":83,"P90":83},"requests":4,"wait":{"Mean":1,"P50":1,"P90":1}}`
	if l := by["linux"]; show(l.Day) != linux || show(l.Week) != linux || show(l.Daily[0]) != linux || l.BuilderID != f.linux {
		t.Errorf("linux:\n day  %s\n week %s\nwant %s", show(l.Day), show(l.Week), linux)
	}
	if l := by["linux"]; len(l.Daily) != 7 || show(l.Daily[1]) != `{"builds":0,"success_rate":null,"duration":null,"requests":0,"wait":null}` {
		t.Errorf("linux daily: %+v", l.Daily)
	}
	xss := `{"builds":1,"success_rate":0,"duration":{"Mean":1,"P50":1,"P90":1},"requests":1,"wait":{"Mean":1,"P50":1,"P90":1}}`
	if x := by[xssName]; show(x.Week) != xss {
		t.Errorf("xss week %s, want %s", show(x.Week), xss)
	}
	if e := by["empty"]; e.Week.Builds != 0 || e.Week.Duration != nil || e.Week.SuccessRate != nil {
		t.Errorf("empty: %+v", e)
	}

	got.Stats = nil
	f.getJSON(t, "/api/v2/stats?builder=linux", &got)
	if len(got.Stats) != 1 || show(got.Stats[0].Week) != linux {
		t.Errorf("builder=linux: %+v", got.Stats)
	}
	got.Stats = nil
	f.getJSON(t, fmt.Sprintf("/api/v2/stats?builder=%d", f.xss), &got)
	if len(got.Stats) != 1 || got.Stats[0].Name != xssName {
		t.Errorf("builder=%d: %+v", f.xss, got.Stats)
	}
	for path, want := range map[string]string{
		"/api/v2/stats?builder=nope":            `builder "nope" not found`,
		"/api/v2/stats?x=1":                     `x: unknown query parameter`,
		"/api/v2/stats?builder=a&builder=linux": `builder: given 2 times`,
	} {
		st, _, body := f.get(t, path)
		var e errorBody
		if json.Unmarshal(body, &e); (st != 400 && st != 404) || !strings.HasPrefix(e.Error, want) {
			t.Errorf("%s: %d %s, want %q", path, st, body, want)
		}
	}
}

func TestStatsPage(t *testing.T) {
	f := newFixture(t)
	body := f.checkPage(t, "/stats", 200, []string{
		"<title>Statistics · Test Forge</title>", `<a href="/stats" aria-current="page">Stats</a>`,
		fmt.Sprintf(`<tbody id="stats-%d">`, f.linux),
		fmt.Sprintf(`<td rowspan="2" class="bname"><a href="/builders/%d">linux</a></td>`, f.linux),
		`<span class="pill warnings">67%</span>`, `<td class="num">1m 23s</td>`, `<td class="num">1s</td>`,
		`<span class="pill failure">0%</span>`, `<svg class="spark"`,
		`<rect class="warnings" x="72" y="0" width="9" height="32"><title>last 24 hours: 3 builds, 67% passed, p50 1m 23s</title></rect>`,
		`<rect class="none" x="0" y="30" width="9" height="2"><title>6 to 7 days ago: no builds</title></rect>`,
		`<title>last 24 hours: 4 builds started, p50 wait 1s</title>`,
		html.EscapeString(xssName),
	}, []string{xssName})
	if n := strings.Count(body, `<svg class="spark"`); n != 6 {
		t.Errorf("%d charts, want 2 per builder", n)
	}
	f.checkPage(t, "/stats?builder=empty", 200, []string{">empty</a>", "All builders »"}, []string{">linux</a>"})
	f.checkPage(t, "/stats?builder=nope", 404, []string{`builder &#34;nope&#34; not found`}, nil)
	f.checkPage(t, "/stats?x=1", 400, []string{"x: unknown query parameter"}, nil)
}

// artifactFixture is the fixture with a base directory holding files, a
// server that serves artifacts from it, and the artifacts of the first
// finished build.
type artifactFixture struct {
	*fixture
	dir  string
	srv  *httptest.Server
	arts map[string]store.Artifact // by name
}

func newArtifactFixture(t *testing.T) *artifactFixture {
	t.Helper()
	ctx := context.Background()
	f := &artifactFixture{fixture: newFixture(t), dir: t.TempDir(), arts: map[string]store.Artifact{}}
	f.srv = httptest.NewServer(New(f.m, Options{Basedir: f.dir}).Handler())
	t.Cleanup(f.srv.Close)
	write := func(rel, body string) (string, time.Time) {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, fi.ModTime()
	}
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(f.dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	b := f.finished[0]
	var as []store.Artifact
	add := func(name, path, body string, mtime time.Time) {
		as = append(as, store.Artifact{BuildID: b.ID, Name: name, Path: path, SHA256: sum(body), Size: int64(len(body)), ModTime: mtime})
	}
	_, mt := write("out/app.tar.gz", "the app")
	add("app.tar.gz", filepath.Join("out", "app.tar.gz"), "the app", mt)
	_, mt = write("docs/a b/index.html", "<h1>docs</h1>")
	add("docs/a b/index.html", filepath.Join("docs", "a b", "index.html"), "<h1>docs</h1>", mt)
	_, mt = write("replaced.txt", "new and longer")
	add("replaced.txt", "replaced.txt", "old", mt)
	add("gone.txt", "gone.txt", "x", time.Time{})
	add("outside.txt", outside, "secret", time.Time{})
	add("link.txt", "link.txt", "secret", time.Time{})
	add("climb.txt", filepath.Join("..", "x"), "x", time.Time{})
	added, err := f.st.AddArtifacts(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range added {
		f.arts[a.Name] = a
	}
	return f
}

func (f *artifactFixture) download(t *testing.T, name string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/artifacts/%d/download", f.srv.URL, f.arts[name].ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestArtifactDownload(t *testing.T) {
	f := newArtifactFixture(t)
	resp, body := f.download(t, "app.tar.gz")
	if resp.StatusCode != 200 || body != "the app" {
		t.Fatalf("download: %d %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/octet-stream",
		"Content-Disposition":    `attachment; filename=app.tar.gz`,
		"Etag":                   `"` + f.arts["app.tar.gz"].SHA256 + `"`,
		"X-Content-Type-Options": "nosniff",
		"Content-Length":         "7",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	resp, body = f.download(t, "app.tar.gz", "Range", "bytes=4-")
	if resp.StatusCode != http.StatusPartialContent || body != "app" {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	resp, body = f.download(t, "docs/a b/index.html")
	if resp.StatusCode != 200 || body != "<h1>docs</h1>" || resp.Header.Get("Content-Disposition") != `attachment; filename=index.html` {
		t.Errorf("file of a directory: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Disposition"))
	}

	for name, want := range map[string]struct {
		status int
		msg    string
	}{
		"replaced.txt": {410, "was replaced on the master since build"},
		"gone.txt":     {410, "is no longer on the master"},
		"outside.txt":  {403, "is outside the master&#39;s base directory"},
		"climb.txt":    {403, "is outside the master&#39;s base directory"},
		"link.txt":     {403, "is not served"},
	} {
		resp, body := f.download(t, name)
		if resp.StatusCode != want.status || !strings.Contains(body, want.msg) {
			t.Errorf("%s: %d, want %d with %q:\n%s", name, resp.StatusCode, want.status, want.msg, body)
		}
		if strings.Contains(body, ">secret<") || body == "secret" {
			t.Errorf("%s: served the file outside the base directory", name)
		}
	}

	// Without a base directory nothing is served; unknown ids are 404.
	for path, want := range map[string]int{
		fmt.Sprintf("/artifacts/%d/download", f.arts["app.tar.gz"].ID): 404,
		"/artifacts/9999/download":                                     404,
		"/artifacts/x/download":                                        400,
	} {
		if st, _, body := f.get(t, path); st != want {
			t.Errorf("%s without a base directory: %d, want %d: %s", path, st, want, body)
		}
	}
}

func TestArtifactsAPIAndPage(t *testing.T) {
	f := newArtifactFixture(t)
	b := f.finished[0]
	var got struct {
		Artifacts []map[string]any
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/artifacts", b.ID), &got)
	if len(got.Artifacts) != len(f.arts) {
		t.Fatalf("%d artifacts, want %d", len(got.Artifacts), len(f.arts))
	}
	a := f.arts["app.tar.gz"]
	want := fmt.Sprintf("map[artifactid:%d build_number:%d builderid:%d buildid:%d created_at:%v download_url:/artifacts/%d/download name:app.tar.gz sha256:%s size:7 stepid:<nil>]",
		a.ID, b.Number, b.BuilderID, b.ID, float64(a.CreatedAt.UnixMilli())/1000, a.ID, a.SHA256)
	if g := fmt.Sprint(got.Artifacts[0]); g != want {
		t.Errorf("first artifact (by name)\n got %s\nwant %s", g, want)
	}
	got.Artifacts = nil
	f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/artifacts?name__contains=.txt&order=-size&field=name", b.ID), &got)
	if fmt.Sprint(got.Artifacts) != "[map[name:link.txt] map[name:outside.txt] map[name:replaced.txt] map[name:climb.txt] map[name:gone.txt]]" {
		t.Errorf("query: %v", got.Artifacts)
	}
	got.Artifacts = nil
	f.getJSON(t, fmt.Sprintf("/api/v2/artifacts/%d?field=size", a.ID), &got)
	if fmt.Sprint(got.Artifacts) != "[map[size:7]]" {
		t.Errorf("one artifact: %v", got.Artifacts)
	}
	got.Artifacts = nil
	f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/artifacts", f.finished[1].ID), &got)
	if len(got.Artifacts) != 0 {
		t.Errorf("build without artifacts: %v", got.Artifacts)
	}
	for path, want := range map[string]int{"/api/v2/artifacts/9999": 404, "/api/v2/builds/9999/artifacts": 404,
		"/api/v2/artifacts/x": 400, fmt.Sprintf("/api/v2/builds/%d/artifacts?size=x", b.ID): 400} {
		if st, _, body := f.get(t, path); st != want {
			t.Errorf("%s: %d, want %d: %s", path, st, want, body)
		}
	}

	f.checkPage(t, fmt.Sprintf("/builders/%d/builds/%d", b.BuilderID, b.Number), 200, []string{
		`<h2>Artifacts</h2>`,
		fmt.Sprintf(`<tr id="artifact-%d">`, a.ID),
		fmt.Sprintf(`<td><a href="/artifacts/%d/download" download>app.tar.gz</a></td>`, a.ID),
		`<td class="num" title="7 bytes">7 B</td>`,
		fmt.Sprintf(`<code title="%s">%s</code>`, a.SHA256, a.SHA256[:12]),
		`download>docs/a b/index.html</a>`,
	}, nil)
	f.checkPage(t, fmt.Sprintf("/builders/%d/builds/%d", b.BuilderID, f.finished[1].Number), 200, nil, []string{"<h2>Artifacts</h2>"})
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 10 * 1024: "10 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 1 << 62: "4096 PiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSelectNth compares quickselect with sorting on random slices, with
// and without repeated values, and checks the partition it leaves.
func TestSelectNth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 200; n++ {
		for _, spread := range []int64{3, 1000} {
			ds := make([]time.Duration, n)
			for i := range ds {
				ds[i] = time.Duration(rng.Int64N(spread))
			}
			sorted := slices.Sorted(slices.Values(ds))
			k := rng.IntN(n)
			work := slices.Clone(ds)
			if got := selectNth(work, k); got != sorted[k] {
				t.Fatalf("n=%d k=%d spread=%d: got %v, want %v", n, k, spread, got, sorted[k])
			}
			for i := range work {
				if (i < k && work[i] > work[k]) || (i > k && work[i] < work[k]) {
					t.Fatalf("n=%d k=%d: not partitioned at %d: %v", n, k, i, work)
				}
			}
			if !slices.Equal(slices.Sorted(slices.Values(work)), sorted) {
				t.Fatalf("n=%d: values lost", n)
			}
			mean, p50, p90 := distribution(slices.Clone(ds))
			var sum time.Duration
			for _, d := range ds {
				sum += d
			}
			if mean != sum/time.Duration(n) || p50 != percentile(sorted, 0.5) || p90 != percentile(sorted, 0.9) {
				t.Fatalf("n=%d: distribution %v %v %v", n, mean, p50, p90)
			}
		}
	}
}

// TestStatsCache checks that statistics are computed once for requests
// that come together or within statsTTL, again after it, and that errors
// are not kept.
func TestStatsCache(t *testing.T) {
	var c statsCache
	var mu sync.Mutex
	calls := 0
	release, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	compute := func() ([]builderStats, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		once.Do(func() { close(started) })
		<-release
		return []builderStats{{Builder: store.Builder{Name: "b"}}}, nil
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if s, err := c.get("", compute); err != nil || len(s) != 1 {
				t.Errorf("get: %v, %v", s, err)
			}
		})
	}
	// Requests that come while the computation runs, and those after it,
	// share it.
	<-started
	close(release)
	wg.Wait()
	if calls != 1 {
		t.Errorf("%d computations for requests that came together", calls)
	}
	c.get("", compute)
	c.get("7", compute)
	if calls != 2 {
		t.Errorf("%d computations, want 2 (one per key)", calls)
	}
	// An expired entry is computed again.
	c.mu.Lock()
	c.entries[""].at = time.Now().Add(-statsTTL - time.Second)
	c.mu.Unlock()
	c.get("", compute)
	if calls != 3 {
		t.Errorf("%d computations after the entry expired, want 3", calls)
	}
	// Errors are not kept.
	fails := 0
	bad := func() ([]builderStats, error) { fails++; return nil, errBoom }
	for range 2 {
		if _, err := c.get("bad", bad); err != errBoom {
			t.Errorf("error %v", err)
		}
	}
	if fails != 2 {
		t.Errorf("a failed computation was kept: %d calls", fails)
	}
}
