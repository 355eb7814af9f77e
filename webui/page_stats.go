package webui

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/starforge/starforge/master/store"
)

// statsDays is the longest window of the statistics: a week, in days of 24
// hours up to now.
const statsDays = 7

// statsWindow is what the statistics say about one builder over a time.
type statsWindow struct {
	Builds int // finished builds, less those SKIPPED, RETRY or CANCELLED
	Good   int // of them, SUCCESS or WARNINGS
	// Durations of those builds; zero without builds.
	Mean, P50, P90 time.Duration
	Requests       int // build requests that started (waits)
	WaitMean       time.Duration
	WaitP50        time.Duration
	WaitP90        time.Duration
}

// SuccessRate is Good/Builds, or -1 without builds.
func (w statsWindow) SuccessRate() float64 {
	if w.Builds == 0 {
		return -1
	}
	return float64(w.Good) / float64(w.Builds)
}

// builderStats is one builder's statistics: the last day, the last week,
// and each of the week's days (Daily[0] is the last 24 hours, so Day).
type builderStats struct {
	Builder store.Builder
	Day     statsWindow
	Week    statsWindow
	Daily   [statsDays]statsWindow
}

// computeStats turns a builder's samples into its statistics. Percentiles
// are nearest-rank: p50 is the duration half of the builds took at most.
func computeStats(durs, waits []store.Sample) (day, week statsWindow, daily [statsDays]statsWindow) {
	ds, dayDs, good := byDay(durs)
	ws, dayWs, _ := byDay(waits)
	for i := range daily {
		daily[i].Good = good[i]
		week.Good += good[i]
		fill(&daily[i], dayDs[i], dayWs[i])
	}
	// Last: selecting in the whole week reorders across its days.
	fill(&week, ds, ws)
	return daily[0], week, daily
}

// byDay gathers the times of samples into one array, day after day, and
// returns it with each day's part of it and each day's good samples.
// Samples outside the week are dropped.
func byDay(samples []store.Sample) (all []time.Duration, days [statsDays][]time.Duration, good [statsDays]int) {
	var n [statsDays]int
	for _, s := range samples {
		if s.Day >= 0 && s.Day < statsDays {
			n[s.Day]++
		}
	}
	var start [statsDays]int
	total := 0
	for i := range n {
		start[i] = total
		total += n[i]
	}
	all = make([]time.Duration, total)
	next := start
	for _, s := range samples {
		if s.Day < 0 || s.Day >= statsDays {
			continue
		}
		all[next[s.Day]] = s.Time
		next[s.Day]++
		if s.Good {
			good[s.Day]++
		}
	}
	for i := range days {
		days[i] = all[start[i] : start[i]+n[i]]
	}
	return all, days, good
}

func fill(w *statsWindow, durs, waits []time.Duration) {
	w.Builds = len(durs)
	w.Mean, w.P50, w.P90 = distribution(durs)
	w.Requests = len(waits)
	w.WaitMean, w.WaitP50, w.WaitP90 = distribution(waits)
}

// distribution returns the mean, p50 and p90 of ds (zero for none),
// reordering ds. Selection rather than sorting keeps a week of 100,000
// builds in a few milliseconds.
func distribution(ds []time.Duration) (mean, p50, p90 time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	i50, i90 := rank(len(ds), 0.5), rank(len(ds), 0.9)
	p90 = selectNth(ds, i90)
	// Everything before i90 is now at most p90: p50 is among it.
	p50 = selectNth(ds[:i90+1], i50)
	return sum / time.Duration(len(ds)), p50, p90
}

// rank is the index of the nearest-rank percentile p of n sorted values.
func rank(n int, p float64) int {
	return min(max(int(math.Ceil(p*float64(n)))-1, 0), n-1)
}

// percentile is the nearest-rank percentile p of sorted ds.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[rank(len(sorted), p)]
}

// selectNth reorders ds so that ds[k] is the value it would have if ds
// were sorted, with no greater value before it and no smaller one after,
// and returns it (Hoare's quickselect, median-of-three pivots).
func selectNth(ds []time.Duration, k int) time.Duration {
	lo, hi := 0, len(ds)-1
	for hi > lo {
		mid := lo + (hi-lo)/2
		// Order ds[lo], ds[mid], ds[hi]; the median is the pivot.
		if ds[mid] < ds[lo] {
			ds[mid], ds[lo] = ds[lo], ds[mid]
		}
		if ds[hi] < ds[lo] {
			ds[hi], ds[lo] = ds[lo], ds[hi]
		}
		if ds[hi] < ds[mid] {
			ds[hi], ds[mid] = ds[mid], ds[hi]
		}
		pivot := ds[mid]
		i, j := lo, hi
		for i <= j {
			for ds[i] < pivot {
				i++
			}
			for ds[j] > pivot {
				j--
			}
			if i <= j {
				ds[i], ds[j] = ds[j], ds[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return ds[k]
		}
	}
	return ds[k]
}

// statsTTL is how long computed statistics are served again: they cover a
// day and a week, so seconds make no difference to them, and computing them
// reads every build of the week (about 25 ms for 100,000 builds).
const statsTTL = 10 * time.Second

// statsCache keeps the statistics computed in the last statsTTL, by
// builder key; concurrent requests for the same key share one computation.
// It is safe for concurrent use.
type statsCache struct {
	mu      sync.Mutex
	entries map[string]*statsEntry
}

type statsEntry struct {
	done  chan struct{} // closed when stats and err are set
	at    time.Time
	stats []builderStats
	err   error
}

// get returns the statistics of key, computing them with compute unless
// they were computed (successfully) in the last statsTTL.
func (c *statsCache) get(key string, compute func() ([]builderStats, error)) ([]builderStats, error) {
	now := time.Now()
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*statsEntry{}
	}
	e, ok := c.entries[key]
	if ok && (e.at.Add(statsTTL).Before(now) || e.failed()) {
		ok = false
	}
	if !ok {
		e = &statsEntry{done: make(chan struct{}), at: now}
		c.entries[key] = e
		for k, old := range c.entries { // forget stale keys (a builder= of each builder, at most)
			if old.at.Add(statsTTL).Before(now) {
				delete(c.entries, k)
			}
		}
	}
	c.mu.Unlock()
	if !ok {
		e.stats, e.err = compute()
		close(e.done)
	}
	<-e.done
	return e.stats, e.err
}

// failed reports whether the entry's computation ended in an error, which
// is not kept.
func (e *statsEntry) failed() bool {
	select {
	case <-e.done:
		return e.err != nil
	default:
		return false
	}
}

// builderStatistics returns the statistics of builder key (a name or an
// id), or of every builder if key is empty, computed at most statsTTL ago.
func (s *Server) builderStatistics(r *http.Request, key string) ([]builderStats, error) {
	if key != "" {
		// Check the builder now: the cache must not hide a 404 or 400.
		b, err := s.builder(r.Context(), key)
		if err != nil {
			return nil, err
		}
		key = strconv.FormatInt(b.ID, 10)
	}
	// A computation may serve other requests: the one that started it
	// going away must not cancel it.
	ctx := context.WithoutCancel(r.Context())
	if statsNoCache {
		return s.computeStatistics(ctx, key)
	}
	return s.stats.get(key, func() ([]builderStats, error) { return s.computeStatistics(ctx, key) })
}

// statsNoCache, set by benchmarks, computes the statistics every time.
var statsNoCache bool

// computeStatistics reads and computes the statistics of builder key (a
// name or an id), or of every builder if key is empty.
func (s *Server) computeStatistics(ctx context.Context, key string) ([]builderStats, error) {
	st := s.m.Store()
	var builders []store.Builder
	var ids []int64 // nil: every builder
	if key != "" {
		b, err := s.builder(ctx, key)
		if err != nil {
			return nil, err
		}
		builders, ids = []store.Builder{b}, []int64{b.ID}
	} else {
		var err error
		if builders, err = st.ListBuilders(ctx); err != nil {
			return nil, fmt.Errorf("list builders: %w", err)
		}
	}
	// The two queries each read the week's index entries; they run on
	// two of the store's read connections at once.
	now := time.Now()
	var durs, waits map[int64][]store.Sample
	var derr, werr error
	var wg sync.WaitGroup
	wg.Go(func() { durs, derr = st.BuildDurations(ctx, ids, now, statsDays) })
	waits, werr = st.WaitTimes(ctx, ids, now, statsDays)
	wg.Wait()
	if err := errors.Join(derr, werr); err != nil {
		return nil, err
	}
	out := make([]builderStats, len(builders))
	for i, b := range builders {
		out[i].Builder = b
		out[i].Day, out[i].Week, out[i].Daily = computeStats(durs[b.ID], waits[b.ID])
	}
	return out, nil
}

// statsQuery reads the builder= parameter of the stats page and API.
func statsQuery(r *http.Request) (string, error) {
	q := r.URL.Query()
	for k, v := range q {
		if k != "builder" {
			return "", errorf(http.StatusBadRequest, "%s: unknown query parameter (statistics take builder=)", k)
		}
		if len(v) > 1 {
			return "", errorf(http.StatusBadRequest, "builder: given %d times", len(v))
		}
	}
	return q.Get("builder"), nil
}

// JSON of /api/v2/stats; durations in seconds.

type statsJSON struct {
	BuilderID int64        `json:"builderid"`
	Name      string       `json:"name"`
	Day       windowJSON   `json:"day"`
	Week      windowJSON   `json:"week"`
	Daily     []windowJSON `json:"daily"` // daily[0]: the 24 hours up to now; daily[1]: the 24 before; ...
}

type windowJSON struct {
	Builds      int       `json:"builds"`
	SuccessRate *float64  `json:"success_rate"` // null without builds
	Duration    *distJSON `json:"duration"`     // null without builds
	Requests    int       `json:"requests"`
	Wait        *distJSON `json:"wait"` // null without requests
}

type distJSON struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
}

func toWindowJSON(w statsWindow) windowJSON {
	j := windowJSON{Builds: w.Builds, Requests: w.Requests}
	if w.Builds > 0 {
		rate := w.SuccessRate()
		j.SuccessRate = &rate
		j.Duration = &distJSON{Mean: w.Mean.Seconds(), P50: w.P50.Seconds(), P90: w.P90.Seconds()}
	}
	if w.Requests > 0 {
		j.Wait = &distJSON{Mean: w.WaitMean.Seconds(), P50: w.WaitP50.Seconds(), P90: w.WaitP90.Seconds()}
	}
	return j
}

// GET /api/v2/stats?builder=NAME|ID: per builder, the builds of the last
// day and week: how many, the success rate, the mean, p50 and p90
// durations and the p50 and p90 waits from submission to start.
func (s *Server) apiStats(w http.ResponseWriter, r *http.Request) error {
	key, err := statsQuery(r)
	if err != nil {
		return err
	}
	stats, err := s.builderStatistics(r, key)
	if err != nil {
		return err
	}
	out := make([]statsJSON, len(stats))
	for i, bs := range stats {
		j := statsJSON{BuilderID: bs.Builder.ID, Name: bs.Builder.Name, Day: toWindowJSON(bs.Day), Week: toWindowJSON(bs.Week)}
		for _, d := range bs.Daily {
			j.Daily = append(j.Daily, toWindowJSON(d))
		}
		out[i] = j
	}
	writeCollection(w, "stats", out)
	return nil
}

type statsData struct {
	layout
	Builder string // the builder= filter; "" for all
	Rows    []statsRow
}

type statsRow struct {
	Builder  store.Builder
	Windows  [2]statsCells // the last day, the last week
	Duration sparkBars     // daily p50 durations, oldest first
	Wait     sparkBars     // daily p50 waits, oldest first
}

// statsCells is a window's figures as the page shows them.
type statsCells struct {
	Name                             string
	Builds, Requests                 int
	Success, SuccessClass            string
	Mean, P50, P90, WaitP50, WaitP90 string
}

// sparkBars is a small bar chart, one bar per day, drawn as inline SVG.
type sparkBars struct {
	Width, Height int
	Bars          []sparkBar
}

type sparkBar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

// Geometry of the daily charts.
const (
	sparkBarW  = 9
	sparkGap   = 3
	sparkH     = 32
	sparkFloor = 2 // height of a day without builds
)

func statsCellsOf(name string, w statsWindow) statsCells {
	c := statsCells{Name: name, Builds: w.Builds, Requests: w.Requests,
		Success: "—", Mean: "—", P50: "—", P90: "—", WaitP50: "—", WaitP90: "—"}
	if w.Builds > 0 {
		c.Success = fmt.Sprintf("%.0f%%", 100*w.SuccessRate())
		c.SuccessClass = rateClass(w.SuccessRate())
		c.Mean, c.P50, c.P90 = formatDuration(w.Mean), formatDuration(w.P50), formatDuration(w.P90)
	}
	if w.Requests > 0 {
		c.WaitP50, c.WaitP90 = formatDuration(w.WaitP50), formatDuration(w.WaitP90)
	}
	return c
}

// rateClass colours a success rate as a result: success from 90%,
// warnings from 60%, failure below.
func rateClass(rate float64) string {
	switch {
	case rate < 0:
		return "pending"
	case rate >= 0.9:
		return "success"
	case rate >= 0.6:
		return "warnings"
	}
	return "failure"
}

// dayName names day i of the statistics (0: the last 24 hours).
func dayName(i int) string {
	if i == 0 {
		return "last 24 hours"
	}
	if i == 1 {
		return "24 to 48 hours ago"
	}
	return fmt.Sprintf("%d to %d days ago", i, i+1)
}

// sparkOf draws one bar per day, oldest on the left, each as high as
// value(day) relative to the week's highest.
func sparkOf(daily [statsDays]statsWindow, value func(statsWindow) (time.Duration, bool), class func(statsWindow) string, title func(int, statsWindow) string) sparkBars {
	sb := sparkBars{Width: statsDays*(sparkBarW+sparkGap) - sparkGap, Height: sparkH}
	var top time.Duration
	for _, w := range daily {
		if v, ok := value(w); ok && v > top {
			top = v
		}
	}
	for i := range statsDays {
		day := statsDays - 1 - i
		w := daily[day]
		b := sparkBar{X: i * (sparkBarW + sparkGap), W: sparkBarW, H: sparkFloor, Class: "none", Title: title(day, w)}
		if v, ok := value(w); ok {
			b.Class = class(w)
			b.H = sparkFloor
			if top > 0 {
				b.H = max(sparkFloor, int(math.Round(float64(sparkH)*float64(v)/float64(top))))
			}
		}
		b.Y = sparkH - b.H
		sb.Bars = append(sb.Bars, b)
	}
	return sb
}

// GET /stats?builder=NAME|ID: the statistics of every builder (or one),
// with the daily p50 duration and wait of the last week as small charts.
func (s *Server) statsPage(w http.ResponseWriter, r *http.Request) error {
	key, err := statsQuery(r)
	if err != nil {
		return err
	}
	stats, err := s.builderStatistics(r, key)
	if err != nil {
		return err
	}
	d := statsData{layout: layout{Site: s.m.Title(), Title: "Statistics", Nav: "stats", Refresh: 60}, Builder: key}
	for _, bs := range stats {
		row := statsRow{Builder: bs.Builder,
			Windows: [2]statsCells{statsCellsOf("day", bs.Day), statsCellsOf("week", bs.Week)}}
		row.Duration = sparkOf(bs.Daily,
			func(w statsWindow) (time.Duration, bool) { return w.P50, w.Builds > 0 },
			func(w statsWindow) string { return rateClass(w.SuccessRate()) },
			func(day int, w statsWindow) string {
				if w.Builds == 0 {
					return dayName(day) + ": no builds"
				}
				return fmt.Sprintf("%s: %d builds, %.0f%% passed, p50 %s", dayName(day), w.Builds, 100*w.SuccessRate(), formatDuration(w.P50))
			})
		row.Wait = sparkOf(bs.Daily,
			func(w statsWindow) (time.Duration, bool) { return w.WaitP50, w.Requests > 0 },
			func(statsWindow) string { return "wait" },
			func(day int, w statsWindow) string {
				if w.Requests == 0 {
					return dayName(day) + ": no build started"
				}
				return fmt.Sprintf("%s: %d builds started, p50 wait %s", dayName(day), w.Requests, formatDuration(w.WaitP50))
			})
		d.Rows = append(d.Rows, row)
	}
	return s.render(w, http.StatusOK, "stats", d)
}
