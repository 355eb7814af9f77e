package webui

import (
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/workers
//
// Stored workers merged with the master's live state: connected, paused
// and running builds come from the master when it knows the worker.
func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.m.Store().ListWorkers(r.Context())
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	live := s.m.WorkerStates()
	out := make([]workerJSON, len(ws))
	for i, wk := range ws {
		st, ok := live[wk.Name]
		out[i] = toWorkerJSON(wk, st, ok)
	}
	writeCollection(w, "workers", out)
	return nil
}

// GET /api/v2/buildrequests?pending=1&builderid=&limit=&before=
//
// Newest first. Each request carries waiting_reason, the master's
// explanation of why a pending request has not started (or null).
func (s *Server) listRequests(w http.ResponseWriter, r *http.Request) error {
	p := queryParams(r)
	f := store.RequestFilter{
		BuilderID:   p.id("builderid"),
		PendingOnly: p.flag("pending"),
		Limit:       p.limit(),
		Before:      p.id("before"),
	}
	if err := p.Err(); err != nil {
		return err
	}
	reqs, err := s.m.Store().ListRequests(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list build requests: %w", err)
	}
	reasons := s.m.QueueReasons()
	out := make([]requestJSON, len(reqs))
	for i, br := range reqs {
		reason := ""
		if !br.Claimed && !br.Complete {
			reason = reasons[br.ID]
		}
		out[i] = toRequestJSON(br, reason)
	}
	writeCollection(w, "buildrequests", out)
	return nil
}

// GET /api/v2/buildrequests/{id}
func (s *Server) getRequest(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "build request id")
	if err != nil {
		return err
	}
	br, err := s.m.Store().GetRequest(r.Context(), id)
	if err != nil {
		return lookupErr(err, "build request %d", id)
	}
	reason := ""
	if !br.Claimed && !br.Complete {
		reason = s.m.QueueReasons()[br.ID]
	}
	writeCollection(w, "buildrequests", []requestJSON{toRequestJSON(br, reason)})
	return nil
}
