package webui

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/builds with the list conventions (api_query.go), and the
// extensions running=1 (complete=false), before=ID (buildid__lt=ID) and
// property=NAME or property=* (include those properties in each build).
// Newest first unless order=buildid. builderid, workerid, buildrequestid,
// complete=false and bounds on buildid are applied in SQL.
func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) error {
	return s.queryBuilds(w, r, 0)
}

// queryBuilds answers a builds query, of builder builderID's builds if it
// is not 0.
func (s *Server) queryBuilds(w http.ResponseWriter, r *http.Request, builderID int64) error {
	q, err := parseList(r, resourceOf[buildJSON]("builds"), "before", "running", "property")
	if err != nil {
		return err
	}
	p := &params{q: q.extra}
	f := store.BuildQuery{
		BuilderID:   q.sqlEq("builderid"),
		WorkerID:    q.sqlEq("workerid"),
		RequestID:   q.sqlEq("buildrequestid"),
		RunningOnly: p.flag("running") || q.sqlBool("complete", false),
	}
	if err := p.Err(); err != nil {
		return err
	}
	same := []string{}
	if builderID != 0 {
		if f.BuilderID != 0 && f.BuilderID != builderID {
			writeItems(w, q, []buildJSON(nil), listMeta{})
			return nil
		}
		f.BuilderID = builderID
	}
	if f.BuilderID != 0 {
		// A builder's builds are numbered in the order of their ids.
		same = append(same, "number")
	}
	props := splitList(q.extra["property"])
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[buildJSON]{
		idField:   "buildid",
		sameOrder: same,
		scanCap:   5000,
		fetch: func(ctx context.Context, p store.Page) ([]buildJSON, error) {
			f.Page = p
			bs, err := st.QueryBuilds(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("list builds: %w", err)
			}
			out := make([]buildJSON, len(bs))
			for i, b := range bs {
				out[i] = toBuildJSON(b)
			}
			return out, nil
		},
		id: func(b buildJSON) int64 { return b.BuildID },
		decorate: func(ctx context.Context, bs []buildJSON) error {
			if len(props) == 0 {
				return nil
			}
			for i := range bs {
				all, err := st.BuildProperties(ctx, bs[i].BuildID)
				if err != nil {
					return fmt.Errorf("properties of build %d: %w", bs[i].BuildID, err)
				}
				m := map[string]any{}
				for name, p := range all {
					if slices.Contains(props, "*") || slices.Contains(props, name) {
						m[name] = [2]any{p.Value, p.Source}
					}
				}
				bs[i].Properties = m
			}
			return nil
		},
	})
}

// GET /api/v2/builds/{build}?field=
func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[buildJSON]("builds"))
	if err != nil {
		return err
	}
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	writeOne(w, q, toBuildJSON(b))
	return nil
}

// GET /api/v2/builds/{build}/steps with the list conventions.
func (s *Server) listSteps(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[stepJSON]("steps"))
	if err != nil {
		return err
	}
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	steps, err := s.m.Store().ListSteps(r.Context(), b.ID)
	if err != nil {
		return fmt.Errorf("list steps of build %d: %w", b.ID, err)
	}
	out := make([]stepJSON, len(steps))
	for i, st := range steps {
		out[i] = toStepJSON(st)
	}
	writeSmallList(w, q, out)
	return nil
}

// GET /api/v2/builds/{build}/properties
//
// Buildbot sends all properties as one object in a one-element list:
// {"properties": [{"name": [value, "source"], ...}], "meta": {"total": 1}}.
func (s *Server) buildProperties(w http.ResponseWriter, r *http.Request) error {
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	props, err := s.m.Store().BuildProperties(r.Context(), b.ID)
	if err != nil {
		return fmt.Errorf("properties of build %d: %w", b.ID, err)
	}
	obj := make(map[string][2]any, len(props))
	for name, p := range props {
		obj[name] = [2]any{p.Value, p.Source}
	}
	writeCollection(w, "properties", []map[string][2]any{obj})
	return nil
}

func (s *Server) buildFromPath(r *http.Request) (store.Build, error) {
	id, err := pathID(r, "build", "build id")
	if err != nil {
		return store.Build{}, err
	}
	b, err := s.m.Store().GetBuild(r.Context(), id)
	if err != nil {
		return b, lookupErr(err, "build %d", id)
	}
	return b, nil
}
