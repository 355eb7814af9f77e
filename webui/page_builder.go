package webui

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/starforge/starforge/master/store"
)

// builderPageSize is the number of builds on one page of a builder's history.
const builderPageSize = 50

type builderData struct {
	layout
	Builder store.Builder
	Forces  []forceForm // the forms of the force schedulers that may force this builder
	Pending []pendingRequest
	Builds  []store.Build
	Before  int64 // the keyset cursor of this page; 0 for the newest builds
	Older   int64 // the cursor of the next, older page; 0 if there is none
}

type pendingRequest struct {
	Request store.BuildRequest
	Reason  string // why it waits, if the master knows
}

// GET /builders/{builder}?before=<buildid>
func (s *Server) builderPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	b, err := s.builder(ctx, r.PathValue("builder"))
	if err != nil {
		return err
	}
	p := queryParams(r)
	before := p.id("before")
	if err := p.Err(); err != nil {
		return err
	}
	d := builderData{layout: layout{Site: s.m.Title(), Title: b.Name}, Builder: b, Before: before}
	if before == 0 {
		// Only the newest page changes by itself.
		d.Refresh = 5
	}
	for _, f := range s.m.ForceSchedulers() {
		if slices.Contains(f.Builders, b.Name) {
			d.Forces = append(d.Forces, newForceForm(f))
		}
	}

	reqs, err := st.ListRequests(ctx, store.RequestFilter{BuilderID: b.ID, PendingOnly: true, Limit: maxLimit})
	if err != nil {
		return fmt.Errorf("list pending requests of builder %d: %w", b.ID, err)
	}
	reasons := s.m.QueueReasons()
	// Oldest first: the head of the queue is what the reader looks for.
	for _, rq := range slices.Backward(reqs) {
		d.Pending = append(d.Pending, pendingRequest{Request: rq, Reason: reasons[rq.ID]})
	}

	d.Builds, err = st.ListBuilds(ctx, store.BuildFilter{BuilderID: b.ID, Before: before, Limit: builderPageSize})
	if err != nil {
		return fmt.Errorf("list builds of builder %d: %w", b.ID, err)
	}
	if len(d.Builds) == builderPageSize {
		d.Older = d.Builds[len(d.Builds)-1].ID
	}
	return s.render(w, http.StatusOK, "builder", d)
}
