package webui

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/starforge/starforge/master/store"
)

// The grid's geometry, in SVG pixels.
const (
	gridAxis      = 70   // the time axis on the left
	gridHead      = 110  // builder names on top
	gridHeight    = 900  // the time window, top (now) to bottom, about
	gridMaxWidth  = 1280 // of all the columns together
	gridMinColumn = 36
	gridMaxColumn = 160
	gridMaxBuilds = 2000 // builds drawn at most; the page says when there were more
)

// gridHours are the windows the page offers.
var gridHours = []int{1, 3, 6, 12, 24, 72, 168}

type gridData struct {
	layout
	Hours         int
	Choices       []gridChoice
	Width, Height int
	Columns       []gridColumn
	Boxes         []gridBox
	Ticks         []gridTick
	Gaps          []gridGapMark
	More          bool // gridMaxBuilds were drawn and there are more
	Top           int  // y of the window's top (now)
	Mid           int  // x of the middle of the columns
}

type gridChoice struct {
	Hours int
	Label string
}

type gridColumn struct {
	Name, URL string
	X, W      int // the column's left edge and width
	Mid       int // where its name is anchored
}

type gridBox struct {
	X, Y, W, H   int
	Class, URL   string
	Title, Label string
	LX, LY       int // where the label is
}

type gridTick struct {
	Y     int
	Label string
}

// GET /grid?hours=N: a waterfall of the builds that started in the last N
// hours (and those still running), builders as columns, time running down
// from now, each build a box from its start to its end, coloured by
// result. The SVG is rendered here; parallel builds of a builder share its
// column side by side.
func (s *Server) gridPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	p := queryParams(r)
	hours := int(p.intIn("hours", 1, 168, 6))
	if err := p.Err(); err != nil {
		return err
	}
	for k := range r.URL.Query() {
		if k != "hours" {
			return errorf(http.StatusBadRequest, "%s: unknown query parameter (the grid takes hours=)", k)
		}
	}
	now := time.Now()
	from := now.Add(-time.Duration(hours) * time.Hour)
	d := &gridData{layout: layout{Site: s.m.Title(), Title: "Grid", Nav: "grid", Refresh: 10},
		Hours: hours, Height: gridHead + gridHeight + 10, Top: gridHead}
	for _, h := range gridHours {
		label := fmt.Sprintf("%dh", h)
		if h >= 24 {
			label = fmt.Sprintf("%dd", h/24)
		}
		d.Choices = append(d.Choices, gridChoice{Hours: h, Label: label})
	}

	// Newest first, a keyset page at a time, until the window's start.
	var builds []store.Build
	seen := map[int64]bool{}
	var before int64
	for len(builds) < gridMaxBuilds {
		page, err := st.ListBuilds(ctx, store.BuildFilter{Before: before, Limit: maxLimit})
		if err != nil {
			return fmt.Errorf("list builds: %w", err)
		}
		done := len(page) < maxLimit
		for _, b := range page {
			before = b.ID
			if b.StartedAt.Before(from) {
				done = true
				break
			}
			if len(builds) == gridMaxBuilds {
				d.More = true
				break
			}
			builds = append(builds, b)
			seen[b.ID] = true
		}
		if done {
			break
		}
	}
	running, err := st.ListBuilds(ctx, store.BuildFilter{RunningOnly: true, Limit: maxLimit})
	if err != nil {
		return fmt.Errorf("list running builds: %w", err)
	}
	for _, b := range running {
		if !seen[b.ID] {
			builds = append(builds, b)
		}
	}

	builders, err := st.ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}
	byBuilder := map[int64][]store.Build{}
	for _, b := range builds {
		byBuilder[b.BuilderID] = append(byBuilder[b.BuilderID], b)
	}
	n := 0
	for _, b := range builders {
		if len(byBuilder[b.ID]) > 0 {
			n++
		}
	}
	colW := gridMaxColumn
	if n > 0 {
		colW = min(max(gridMaxWidth/n, gridMinColumn), gridMaxColumn)
	}
	d.Width = gridAxis + max(n, 1)*colW + 8

	var spans []gridSpan
	for _, b := range builds {
		spans = append(spans, gridSpan{b.StartedAt, b.CompleteAt})
	}
	sc := newGridScale(spans, from, now)
	y := func(t time.Time) int { return gridHead + sc.y(t) }
	d.Height = gridHead + sc.height + 10
	x := gridAxis
	for _, b := range builders {
		bs := byBuilder[b.ID]
		if len(bs) == 0 {
			continue
		}
		d.Columns = append(d.Columns, gridColumn{Name: b.Name, URL: fmt.Sprintf("/builders/%d", b.ID), X: x, W: colW, Mid: x + colW/2})
		lane, lanes := gridLanes(bs, now)
		for i, bd := range bs {
			lw := (colW - 4) / lanes
			end := bd.CompleteAt
			if end.IsZero() {
				end = now // still running
			}
			top, bottom := y(end), y(bd.StartedAt)
			if bottom-top < 2 {
				top = bottom - 2
			}
			class := statusClass(bd.Results, !bd.StartedAt.IsZero(), !bd.CompleteAt.IsZero())
			box := gridBox{X: x + 2 + lane[i]*lw, Y: top, W: max(lw-1, 1), H: bottom - top, Class: class,
				URL:   fmt.Sprintf("/builders/%d/builds/%d", bd.BuilderID, bd.Number),
				Title: fmt.Sprintf("%s #%d: %s, %s, started %s", b.Name, bd.Number, class, formatDuration(elapsed(bd.StartedAt, bd.CompleteAt, now)), bd.StartedAt.Local().Format("Jan 2 15:04:05"))}
			if box.H >= 14 && box.W >= 22 {
				box.Label = fmt.Sprint(bd.Number)
				box.LX, box.LY = box.X+box.W/2, box.Y+12
			}
			d.Boxes = append(d.Boxes, box)
		}
		x += colW
	}
	d.Ticks, d.Gaps = sc.marks(window(hours), gridHead)
	d.Mid = gridAxis + (d.Width-gridAxis)/2
	return s.render(w, http.StatusOK, "grid", d)
}

// gridLanes places one builder's builds side by side where they overlap in
// time: lane[i] is build i's lane, of lanes.
func gridLanes(bs []store.Build, now time.Time) (lane []int, lanes int) {
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bs[a].StartedAt.Compare(bs[b].StartedAt) })
	lane = make([]int, len(bs))
	var ends []time.Time // per lane, when its last build ends
	for _, i := range order {
		end := bs[i].CompleteAt
		if end.IsZero() {
			end = now
		}
		l := slices.IndexFunc(ends, func(e time.Time) bool { return !e.After(bs[i].StartedAt) })
		if l < 0 {
			l = len(ends)
			ends = append(ends, end)
		}
		ends[l] = end
		lane[i] = l
	}
	return lane, max(len(ends), 1)
}

// window says how the grid labels times for a window of hours.
func window(hours int) string {
	if hours > 24 {
		return "Mon 15:04"
	}
	return "15:04"
}

// gridSpan is the time a build ran; a zero end means it still runs.
type gridSpan struct{ start, end time.Time }

// gridPiece is a stretch of the grid's time axis: busy (builds ran) or an
// idle gap, drawn as a band of its own height whatever its length.
type gridPiece struct {
	from, to time.Time // to is the later, drawn above
	y        int       // pixels from the top to to
	px       int       // height
	gap      bool
}

// gridScale maps times to heights on the grid: now at 0, time running
// down, busy stretches linear at one rate, idle gaps squeezed into
// bands of gridGap pixels, so that a burst of short builds after an idle
// hour is not a sliver.
type gridScale struct {
	pieces []gridPiece // newest first
	height int
}

// Geometry of the scale.
const (
	gridGap     = 26   // pixels of an idle gap
	gridMaxRate = 40.0 // pixels per second at most: a 1 s build is 40 px
)

// newGridScale lays out the window from..now for builds that ran during
// spans. Gaps shorter than 2% of the window stay on the linear scale.
func newGridScale(spans []gridSpan, from, now time.Time) *gridScale {
	clip := func(t time.Time) time.Time {
		switch {
		case t.IsZero() || t.After(now):
			return now
		case t.Before(from):
			return from
		}
		return t
	}
	type iv struct{ a, b time.Time }
	var ivs []iv
	for _, s := range spans {
		a, b := clip(s.start), clip(s.end)
		if b.Before(a) {
			a, b = b, a
		}
		ivs = append(ivs, iv{a, b})
	}
	slices.SortFunc(ivs, func(x, y iv) int { return x.a.Compare(y.a) })
	minGap := now.Sub(from) / 50
	// Busy stretches, oldest first, with the gaps between them.
	var busy []iv
	for _, v := range ivs {
		if n := len(busy); n > 0 && v.a.Sub(busy[n-1].b) < minGap {
			if v.b.After(busy[n-1].b) {
				busy[n-1].b = v.b
			}
			continue
		}
		busy = append(busy, v)
	}
	// Stretches near the window's ends reach them.
	if n := len(busy); n > 0 && now.Sub(busy[n-1].b) < minGap {
		busy[n-1].b = now
	}
	if len(busy) > 0 && busy[0].a.Sub(from) < minGap {
		busy[0].a = from
	}
	// Pieces newest first: gaps and busy stretches.
	var pieces []gridPiece
	at := now
	for i := len(busy) - 1; i >= 0; i-- {
		if busy[i].b.Before(at) {
			pieces = append(pieces, gridPiece{from: busy[i].b, to: at, gap: true})
		}
		pieces = append(pieces, gridPiece{from: busy[i].a, to: busy[i].b})
		at = busy[i].a
	}
	if at.After(from) {
		pieces = append(pieces, gridPiece{from: from, to: at, gap: true})
	}
	var busyTime time.Duration
	gaps := 0
	for _, p := range pieces {
		if p.gap {
			gaps++
		} else {
			busyTime += p.to.Sub(p.from)
		}
	}
	rate := gridMaxRate
	if busyTime > 0 {
		rate = min(float64(max(gridHeight-gaps*gridGap, gridHeight/2))/busyTime.Seconds(), gridMaxRate)
	}
	sc := &gridScale{}
	for i := range pieces {
		p := &pieces[i]
		p.y = sc.height
		if p.gap {
			p.px = gridGap
		} else {
			p.px = max(int(math.Round(p.to.Sub(p.from).Seconds()*rate)), 2)
		}
		sc.height += p.px
	}
	sc.pieces = pieces
	return sc
}

// y is the height of time t on the scale (clipped to the window; the zero
// time is the window's start).
func (sc *gridScale) y(t time.Time) int {
	for _, p := range sc.pieces {
		if !t.Before(p.from) {
			if t.After(p.to) {
				return p.y
			}
			f := 1.0
			if span := p.to.Sub(p.from); span > 0 {
				f = p.to.Sub(t).Seconds() / span.Seconds()
			}
			return p.y + int(math.Round(f*float64(p.px)))
		}
	}
	return sc.height
}

// gridGapMark is an idle gap as the grid draws it: a band saying how long
// nothing ran.
type gridGapMark struct {
	Y, H  int
	Label string
}

// TextDY puts the label in the middle of the band.
func (g gridGapMark) TextDY() int { return g.H/2 + 4 }

// marks returns the time axis's ticks, at round times about every 60
// pixels within busy stretches and at the top of each (labelled with
// layout), and the gaps' bands, offset by top pixels.
func (sc *gridScale) marks(layout string, top int) ([]gridTick, []gridGapMark) {
	steps := []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
		time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	var ticks []gridTick
	var gaps []gridGapMark
	lastY := -100
	add := func(t time.Time, y int, format string) {
		if y-lastY < 30 {
			return
		}
		ticks = append(ticks, gridTick{Y: top + y, Label: t.Local().Format(format)})
		lastY = y
	}
	for _, p := range sc.pieces {
		if p.gap {
			gaps = append(gaps, gridGapMark{Y: top + p.y, H: p.px, Label: "idle " + formatDuration(p.to.Sub(p.from))})
			lastY = p.y + p.px - 30 // a tick may mark the stretch's top, just below
			continue
		}
		span := p.to.Sub(p.from)
		step := steps[len(steps)-1]
		for _, s := range steps {
			if span > 0 && float64(p.px)*s.Seconds()/span.Seconds() >= 60 {
				step = s
				break
			}
		}
		format := layout
		if step < time.Minute {
			format += ":05"
		}
		add(p.to, p.y, format)
		// Round times in local time: truncate the local wall clock.
		_, off := p.to.Local().Zone()
		shift := time.Duration(off) * time.Second
		// Not at the stretch's bottom: that label would fall in the gap below.
		for t := p.to.Add(shift).Truncate(step).Add(-shift); t.After(p.from); t = t.Add(-step) {
			if t.Equal(p.to) {
				continue
			}
			add(t, sc.y(t), format)
		}
	}
	return ticks, gaps
}
