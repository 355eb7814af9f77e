package webui

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// Sizes of the console: changes per page by default and at most.
const (
	consoleChanges    = 25
	consoleMaxChanges = 200
)

type consoleData struct {
	layout
	Builders []store.Builder // the columns: builders with a build request on this page
	Rows     []consoleRow    // newest first
	Tags     []string        // the builders are filtered on these tags
	Before   int64           // this page's keyset cursor; 0 for the newest changes
	Older    int64           // the cursor of the next, older page; 0 if there is none
	Limit    int
}

// consoleRow is one revision: the changes that have it (one, unless the
// same commit reached several branches or pollers) and what was built of
// them on each builder.
type consoleRow struct {
	Revision string
	Changes  []store.Change // newest first
	Cells    []consoleCell  // one per column
}

// Head is the change that speaks for the row.
func (r consoleRow) Head() store.Change { return r.Changes[0] }

// AuthorName is the row's author without the address: "Ada" for
// "Ada <ada@example.org>".
func (r consoleRow) AuthorName() string {
	a := r.Changes[0].Author
	if i := strings.Index(a, " <"); i > 0 && strings.HasSuffix(a, ">") {
		return a[:i]
	}
	return a
}

// Branches are the row's branches, without repeats.
func (r consoleRow) Branches() []string {
	var out []string
	for _, c := range r.Changes {
		if c.Branch != "" && !slices.Contains(out, c.Branch) {
			out = append(out, c.Branch)
		}
	}
	return out
}

type consoleCell struct {
	Entries []cellEntry // one per build request, oldest first
}

// cellEntry is one build request of a cell: its latest build, or the
// request itself while it has none.
type cellEntry struct {
	request     int64
	Class, URL  string
	Label, Hint string
}

// GET /console?limit=N&before=CHANGEID&tag=T: the latest changes as rows,
// newest first, and the builders as columns; each cell holds the builds of
// that change on that builder. Two queries whatever the history: a keyset
// page of changes, then their build requests with their latest builds.
func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	p := queryParams(r)
	limit := int(p.intIn("limit", 1, consoleMaxChanges, consoleChanges))
	before := p.id("before")
	if err := p.Err(); err != nil {
		return err
	}
	tags := splitList(r.URL.Query()["tag"])
	for k := range r.URL.Query() {
		if k != "limit" && k != "before" && k != "tag" {
			return errorf(http.StatusBadRequest, "%s: unknown query parameter (the console takes limit=, before= and tag=)", k)
		}
	}
	d := consoleData{layout: layout{Site: s.m.Title(), Title: "Console", Nav: "console"},
		Tags: tags, Before: before, Limit: limit}
	if before == 0 {
		d.Refresh = 5
	}

	// One change more than shown tells whether there are older ones.
	changes, err := st.QueryChanges(ctx, store.Page{Before: before, Limit: limit + 1})
	if err != nil {
		return fmt.Errorf("list changes: %w", err)
	}
	if len(changes) > limit {
		changes = changes[:limit]
		d.Older = changes[len(changes)-1].ID
	}
	if len(changes) == 0 {
		return s.render(w, http.StatusOK, "console", d)
	}
	cbs, err := st.ChangeBuilds(ctx, changes[len(changes)-1].ID, changes[0].ID)
	if err != nil {
		return err
	}
	builders, err := st.ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}

	// Rows by revision, in the order of their newest change.
	rowOf := map[int64]int{} // change id → row
	byRev := map[string]int{}
	for _, c := range changes {
		key := c.Repository + "\x00" + c.Codebase + "\x00" + c.Revision
		if c.Revision == "" {
			key = fmt.Sprintf("change %d", c.ID)
		}
		i, ok := byRev[key]
		if !ok {
			i = len(d.Rows)
			byRev[key] = i
			d.Rows = append(d.Rows, consoleRow{Revision: c.Revision})
		}
		d.Rows[i].Changes = append(d.Rows[i].Changes, c)
		rowOf[c.ID] = i
	}

	// Columns: the builders that have something on this page.
	used := map[int64]bool{}
	for _, cb := range cbs {
		used[cb.Request.BuilderID] = true
	}
	colOf := map[int64]int{}
	for _, b := range builders {
		if used[b.ID] && hasAll(b.Tags, tags) {
			colOf[b.ID] = len(d.Builders)
			d.Builders = append(d.Builders, b)
		}
	}
	for i := range d.Rows {
		d.Rows[i].Cells = make([]consoleCell, len(d.Builders))
	}
	for _, cb := range slices.Backward(cbs) { // oldest request first within a cell
		col, ok := colOf[cb.Request.BuilderID]
		if !ok {
			continue
		}
		cell := &d.Rows[rowOf[cb.ChangeID]].Cells[col]
		if slices.ContainsFunc(cell.Entries, func(e cellEntry) bool { return e.request == cb.Request.ID }) {
			continue // one buildset building two changes of the row
		}
		cell.Entries = append(cell.Entries, newCellEntry(cb))
	}
	for i := range d.Rows {
		for j := range d.Rows[i].Cells {
			slices.SortFunc(d.Rows[i].Cells[j].Entries, func(a, b cellEntry) int { return int(a.request - b.request) })
		}
	}
	return s.render(w, http.StatusOK, "console", d)
}

func newCellEntry(cb store.ChangeBuild) cellEntry {
	rq := cb.Request
	e := cellEntry{request: rq.ID}
	if b := cb.Build; b != nil {
		e.Class = statusClass(b.Results, !b.StartedAt.IsZero(), !b.CompleteAt.IsZero())
		e.URL = fmt.Sprintf("/builders/%d/builds/%d", b.BuilderID, b.Number)
		e.Label = fmt.Sprint(b.Number)
		e.Hint = fmt.Sprintf("%s #%d: %s", rq.BuilderName, b.Number, e.Class)
		if b.StateString != "" {
			e.Hint += " — " + b.StateString
		}
		return e
	}
	switch {
	case rq.Complete:
		e.Class = statusClass(rq.Results, false, true)
		e.URL = fmt.Sprintf("/builders/%d", rq.BuilderID)
		e.Label = "–"
		e.Hint = fmt.Sprintf("%s: request %d %s without a build", rq.BuilderName, rq.ID, rq.Results)
		if rq.CancelReason != "" {
			e.Hint += ": " + rq.CancelReason
		}
	default:
		e.Class = "pending"
		e.URL = "/queue"
		e.Label = "…"
		e.Hint = fmt.Sprintf("%s: request %d waits in the queue", rq.BuilderName, rq.ID)
	}
	return e
}
