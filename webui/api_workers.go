package webui

import (
	"context"
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/workers with the list conventions.
//
// Stored workers merged with the master's live state: connected, paused
// and running builds come from the master when it knows the worker.
func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[workerJSON]("workers"))
	if err != nil {
		return err
	}
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
	writeSmallList(w, q, out)
	return nil
}

// GET /api/v2/buildrequests with the list conventions and the extensions
// pending=1 (neither claimed nor complete) and before=ID
// (buildrequestid__lt=ID). Newest first unless order=buildrequestid.
// builderid, buildsetid, pending and bounds on buildrequestid are applied
// in SQL.
//
// Each request carries waiting_reason, the master's explanation of why a
// pending request has not started (or null).
func (s *Server) listRequests(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[requestJSON]("buildrequests"), "before", "pending")
	if err != nil {
		return err
	}
	p := &params{q: q.extra}
	f := store.RequestQuery{
		BuilderID:   q.sqlEq("builderid"),
		BuildsetID:  q.sqlEq("buildsetid"),
		PendingOnly: p.flag("pending"),
	}
	if err := p.Err(); err != nil {
		return err
	}
	reasons := s.m.QueueReasons()
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[requestJSON]{
		idField: "buildrequestid",
		scanCap: 5000,
		fetch: func(ctx context.Context, p store.Page) ([]requestJSON, error) {
			f.Page = p
			reqs, err := st.QueryRequests(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("list build requests: %w", err)
			}
			out := make([]requestJSON, len(reqs))
			for i, br := range reqs {
				reason := ""
				if !br.Claimed && !br.Complete {
					reason = reasons[br.ID]
				}
				out[i] = toRequestJSON(br, reason)
			}
			return out, nil
		},
		id: func(r requestJSON) int64 { return r.BuildRequestID },
	})
}

// GET /api/v2/buildrequests/{id}?field=
func (s *Server) getRequest(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[requestJSON]("buildrequests"))
	if err != nil {
		return err
	}
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
	writeOne(w, q, toRequestJSON(br, reason))
	return nil
}
