package webui

import (
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

type queueData struct {
	layout
	Requests []queueRow
	More     bool // more than maxLimit requests wait
}

type queueRow struct {
	Request store.BuildRequest
	Reason  string
}

// GET /queue: every pending request, oldest first, with why it waits.
func (s *Server) queuePage(w http.ResponseWriter, r *http.Request) error {
	reqs, err := s.m.Store().PendingRequests(r.Context())
	if err != nil {
		return fmt.Errorf("list pending requests: %w", err)
	}
	reasons := s.m.QueueReasons()
	d := queueData{layout: layout{Site: s.m.Title(), Title: "Queue", Nav: "queue", Refresh: 5}}
	if len(reqs) > maxLimit {
		reqs, d.More = reqs[:maxLimit], true
	}
	for _, q := range reqs {
		d.Requests = append(d.Requests, queueRow{Request: q, Reason: reasons[q.ID]})
	}
	return s.render(w, http.StatusOK, "queue", d)
}
