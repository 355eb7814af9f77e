package webui

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/starforge/starforge/master/store"
)

// buildersLast is how many of each builder's latest builds the builders
// page shows. Each builder costs one keyset query of that many builds, so
// the page costs the same for any history size.
const buildersLast = 15

type buildersData struct {
	layout
	Tags     []tagLink // every tag of every builder, by name
	Selected []string  // the tags the page is filtered on (all of them, together)
	AllURL   string    // the page without a filter
	Builders []builderRow
}

// tagLink is a tag as a filter: the page's URL with it added, or with it
// removed if it is selected.
type tagLink struct {
	Name     string
	Count    int // builders with the tag
	Selected bool
	URL      string
}

type builderRow struct {
	Builder store.Builder
	Last    []store.Build // newest first
	Pending int           // requests waiting in the queue
	Running int
}

// GET /builders?tag=T&tag=U: every builder (with all of the tags) with its
// latest results as coloured boxes, and the tags to filter on.
func (s *Server) buildersPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	selected := splitList(r.URL.Query()["tag"])
	for k := range r.URL.Query() {
		if k != "tag" {
			return errorf(http.StatusBadRequest, "%s: unknown query parameter (the builders page takes tag=)", k)
		}
	}
	d := buildersData{layout: layout{Site: s.m.Title(), Title: "Builders", Nav: "builders", Refresh: 10},
		Selected: selected, AllURL: "/builders"}

	builders, err := st.ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}
	counts := map[string]int{}
	for _, b := range builders {
		for _, t := range b.Tags {
			counts[t]++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		on := slices.Contains(selected, name)
		next := slices.DeleteFunc(slices.Clone(selected), func(t string) bool { return t == name })
		if !on {
			next = append(next, name)
		}
		d.Tags = append(d.Tags, tagLink{Name: name, Count: counts[name], Selected: on, URL: tagsURL(next)})
	}

	pending, err := st.ListRequests(ctx, store.RequestFilter{PendingOnly: true, Limit: maxLimit})
	if err != nil {
		return fmt.Errorf("list pending requests: %w", err)
	}
	waiting := map[int64]int{}
	for _, p := range pending {
		waiting[p.BuilderID]++
	}
	for _, b := range builders {
		if !hasAll(b.Tags, selected) {
			continue
		}
		last, err := st.ListBuilds(ctx, store.BuildFilter{BuilderID: b.ID, Limit: buildersLast})
		if err != nil {
			return fmt.Errorf("list builds of builder %d: %w", b.ID, err)
		}
		row := builderRow{Builder: b, Last: last, Pending: waiting[b.ID]}
		for _, bd := range last {
			if bd.CompleteAt.IsZero() {
				row.Running++
			}
		}
		d.Builders = append(d.Builders, row)
	}
	return s.render(w, http.StatusOK, "builders", d)
}

// hasAll reports whether tags holds every tag of want.
func hasAll(tags, want []string) bool {
	for _, t := range want {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	return true
}

// tagsURL is the builders page filtered on tags.
func tagsURL(tags []string) string {
	if len(tags) == 0 {
		return "/builders"
	}
	return "/builders?" + url.Values{"tag": tags}.Encode()
}
