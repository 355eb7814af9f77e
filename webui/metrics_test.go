package webui

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// TestMetrics feeds a request's life, a build's and some log lines
// through the bus, scrapes /metrics, checks the exposition is valid
// Prometheus text, and reads the figures back.
func TestMetrics(t *testing.T) {
	lf := newLiveFixture(t)
	ctx := context.Background()
	odd := `odd "name" \ with
newline`
	if _, err := lf.st.EnsureBuilder(ctx, store.Builder{Name: odd}); err != nil {
		t.Fatal(err)
	}

	t0 := time.Unix(1_700_000_000, 0)
	req := store.BuildRequest{ID: 900, BuildsetID: 1, BuilderID: lf.linux, BuilderName: "linux", SubmittedAt: t0}
	lf.bus.Publish(req, event.RequestKeys(req, "new")...)
	b := store.Build{ID: 901, Number: 77, BuilderID: lf.linux, BuilderName: "linux", RequestID: 900, StartedAt: t0.Add(3 * time.Second)}
	lf.bus.Publish(b, event.BuildKeys(b, "new")...)
	b.CompleteAt, b.Results = b.StartedAt.Add(70*time.Second), result.Failure
	lf.bus.Publish(b, event.BuildKeys(b, "finished")...)
	b2 := store.Build{ID: 902, Number: 78, BuilderID: lf.linux, BuilderName: odd, StartedAt: t0, CompleteAt: t0.Add(2 * time.Hour), Results: result.Success}
	lf.bus.Publish(b2, event.BuildKeys(b2, "finished")...)
	// A request cancelled before it started adds no wait.
	gone := store.BuildRequest{ID: 903, BuildsetID: 2, BuilderID: lf.linux, BuilderName: "linux", SubmittedAt: t0}
	lf.bus.Publish(gone, event.RequestKeys(gone, "new")...)
	lf.bus.Publish(gone, event.RequestKeys(gone, "canceled")...)
	ll := event.NewLogLines(lf.growLog, 1, 3, []byte("oa\nob\noc\n"))
	lf.bus.Publish(ll, event.LogKeys(ll.Log, "append")...)
	c := lf.dial(t) // one websocket client
	c.consume("builds/*/*")

	st, h, body := lf.get(t, "/metrics")
	if st != 200 || h.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("GET /metrics: %d %s\n%s", st, h.Get("Content-Type"), body)
	}
	series := parseExposition(t, string(body))
	oddLabel := `odd \"name\" \\ with\nnewline`
	for name, want := range map[string]float64{
		`starforge_queue_length{builder="linux"}`:                                       1,
		`starforge_queue_length{builder="empty"}`:                                       0,
		`starforge_queue_length{builder="` + oddLabel + `"}`:                            0,
		`starforge_queue_length_total`:                                                  1,
		`starforge_workers_connected`:                                                   1,
		`starforge_worker_connected{worker="w1"}`:                                       1,
		`starforge_worker_connected{worker="w2"}`:                                       0,
		`starforge_builds_running`:                                                      1,
		`starforge_build_wait_seconds_bucket{builder="linux",le="2"}`:                   0,
		`starforge_build_wait_seconds_bucket{builder="linux",le="5"}`:                   1,
		`starforge_build_wait_seconds_bucket{builder="linux",le="+Inf"}`:                1,
		`starforge_build_wait_seconds_sum{builder="linux"}`:                             3,
		`starforge_build_wait_seconds_count{builder="linux"}`:                           1,
		`starforge_build_duration_seconds_bucket{builder="linux",le="60"}`:              0,
		`starforge_build_duration_seconds_bucket{builder="linux",le="120"}`:             1,
		`starforge_build_duration_seconds_sum{builder="linux"}`:                         70,
		`starforge_build_duration_seconds_bucket{builder="` + oddLabel + `",le="+Inf"}`: 1,
		`starforge_build_duration_seconds_bucket{builder="` + oddLabel + `",le="3600"}`: 0,
		`starforge_builds_finished_total{builder="linux",result="failure"}`:             1,
		`starforge_builds_finished_total{builder="` + oddLabel + `",result="success"}`:  1,
		`starforge_log_bytes_total`:                                                     9,
		`starforge_log_lines_total`:                                                     3,
		`starforge_websocket_clients`:                                                   1,
		`starforge_event_subscribers`:                                                   1,
		`starforge_event_subscribers_dropped_total`:                                     0,
	} {
		got, ok := series[name]
		if !ok {
			t.Errorf("no series %s in\n%s", name, body)
			continue
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if _, ok := series[`starforge_build_wait_seconds_count{builder="`+oddLabel+`"}`]; ok {
		t.Error("a build without a request counted a wait")
	}
}

// TestMetricsWithoutBus: a master that publishes nothing still has its
// gauges scraped.
func TestMetricsWithoutBus(t *testing.T) {
	f := newFixture(t)
	st, _, body := f.get(t, "/metrics")
	if st != 200 {
		t.Fatalf("GET /metrics: %d %s", st, body)
	}
	series := parseExposition(t, string(body))
	if series[`starforge_queue_length_total`] != 1 || series[`starforge_log_bytes_total`] != 0 {
		t.Errorf("metrics without a bus:\n%s", body)
	}
}

var (
	metricName = `[a-zA-Z_:][a-zA-Z0-9_:]*`
	helpLine   = regexp.MustCompile(`^# HELP (` + metricName + `) (.*)$`)
	typeLine   = regexp.MustCompile(`^# TYPE (` + metricName + `) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^(` + metricName + `)(\{.*\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"`)
)

// parseExposition checks text against the rules of Prometheus's text
// format 0.0.4 and returns each series (name{labels} as written) with its
// value. The rules: HELP and TYPE once per family, before its samples;
// a family's samples together; names and label pairs well formed, with
// only \\, \" and \n escaped; values parse as floats; no series twice;
// histogram buckets sorted by le, cumulative, ending with +Inf, which
// equals _count.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("the exposition does not end with a newline")
	}
	series := map[string]float64{}
	types := map[string]string{}
	done := map[string]bool{} // families whose samples ended
	family := ""
	type bucketRun struct {
		les    []float64
		counts []float64
	}
	buckets := map[string]*bucketRun{} // histogram name + labels without le
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		where := fmt.Sprintf("line %d %q", i+1, line)
		if m := helpLine.FindStringSubmatch(line); m != nil {
			if done[m[1]] || m[1] == family {
				t.Fatalf("%s: HELP again for %s", where, m[1])
			}
			if family != "" {
				done[family] = true
			}
			family = m[1]
			continue
		}
		if m := typeLine.FindStringSubmatch(line); m != nil {
			if m[1] != family || types[m[1]] != "" {
				t.Fatalf("%s: TYPE out of place", where)
			}
			types[m[1]] = m[2]
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a sample", where)
		}
		name, lbls, val := m[1], m[2], m[3]
		base := name
		if types[family] == "histogram" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, suf) == family {
					base = family
				}
			}
		}
		if base != family || types[family] == "" {
			t.Fatalf("%s: sample outside its family (in %s)", where, family)
		}
		var le string
		var rest []string
		if lbls != "" {
			in := lbls[1 : len(lbls)-1]
			for in != "" {
				p := labelPair.FindStringSubmatch(in)
				if p == nil {
					t.Fatalf("%s: bad labels at %q", where, in)
				}
				if p[1] == "le" {
					le = p[2]
				} else {
					rest = append(rest, p[0])
				}
				in = strings.TrimPrefix(in[len(p[0]):], ",")
			}
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("%s: value: %v", where, err)
		}
		key := name + lbls
		if _, dup := series[key]; dup {
			t.Fatalf("%s: series twice", where)
		}
		series[key] = v
		if strings.HasSuffix(name, "_bucket") && types[family] == "histogram" {
			lv, err := strconv.ParseFloat(le, 64)
			if err != nil {
				t.Fatalf("%s: le %q: %v", where, le, err)
			}
			id := family + "{" + strings.Join(rest, ",") + "}"
			run := buckets[id]
			if run == nil {
				run = &bucketRun{}
				buckets[id] = run
			}
			if n := len(run.les); n > 0 && (lv <= run.les[n-1] || v < run.counts[n-1]) {
				t.Fatalf("%s: buckets not sorted and cumulative", where)
			}
			run.les, run.counts = append(run.les, lv), append(run.counts, v)
		}
	}
	for id, run := range buckets {
		n := len(run.les)
		if !math.IsInf(run.les[n-1], 1) {
			t.Errorf("histogram %s does not end with le=+Inf", id)
		}
		name, labels, _ := strings.Cut(id, "{")
		count := name + "_count"
		if labels != "}" {
			count += "{" + labels
		}
		if c, ok := series[count]; !ok || c != run.counts[n-1] {
			t.Errorf("histogram %s: +Inf bucket %v, %s = %v", id, run.counts[n-1], count, c)
		}
	}
	if len(series) == 0 {
		t.Fatal("no samples")
	}
	return series
}

func TestFormatFloat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {3, "3"}, {1e6, "1000000"}, {0.5, "0.5"}, {1.25e-7, "1.25e-07"},
		{math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"}, {math.NaN(), "NaN"}, {1e300, "1e+300"},
	} {
		if got := formatFloat(tc.v); got != tc.want {
			t.Errorf("formatFloat(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
