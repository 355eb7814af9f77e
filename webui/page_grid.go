package webui

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/starforge/starforge/master/store"
)

// The grid's geometry, in SVG pixels.
const (
	gridAxis      = 64   // the time axis on the left
	gridHead      = 110  // builder names on top
	gridHeight    = 900  // the time window, top (now) to bottom
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
	More          bool // gridMaxBuilds were drawn and there are more
	Top           int  // y of the window's top (now)
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

	y := func(t time.Time) int {
		if t.IsZero() || t.After(now) {
			t = now
		}
		if t.Before(from) {
			t = from
		}
		return gridHead + int(float64(gridHeight)*now.Sub(t).Seconds()/now.Sub(from).Seconds())
	}
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
			top, bottom := y(bd.CompleteAt), y(bd.StartedAt)
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
	d.Ticks = gridTicks(now, from, y)
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

// gridTicks marks the time axis at round times, about every 75 pixels.
func gridTicks(now, from time.Time, y func(time.Time) int) []gridTick {
	window := now.Sub(from)
	steps := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if window/s <= gridHeight/75 {
			step = s
			break
		}
	}
	layout := "15:04"
	if window > 24*time.Hour {
		layout = "Mon 15:04"
	}
	// Round times in local time: truncate the local wall clock.
	local := now.Local()
	_, off := local.Zone()
	wall := local.Add(time.Duration(off) * time.Second).Truncate(step).Add(-time.Duration(off) * time.Second)
	var out []gridTick
	for t := wall; !t.Before(from); t = t.Add(-step) {
		out = append(out, gridTick{Y: y(t), Label: t.Local().Format(layout)})
	}
	return out
}
