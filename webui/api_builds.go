package webui

import (
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/builds?builderid=&workerid=&buildrequestid=&running=1&limit=&before=
//
// buildrequestid is an extension: the force form uses it to find the build
// its request started.
func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) error {
	p := queryParams(r)
	f := store.BuildFilter{
		BuilderID:   p.id("builderid"),
		WorkerID:    p.id("workerid"),
		RequestID:   p.id("buildrequestid"),
		RunningOnly: p.flag("running"),
		Limit:       p.limit(),
		Before:      p.id("before"),
	}
	if err := p.Err(); err != nil {
		return err
	}
	return s.writeBuilds(w, r, f)
}

func (s *Server) writeBuilds(w http.ResponseWriter, r *http.Request, f store.BuildFilter) error {
	bs, err := s.m.Store().ListBuilds(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list builds: %w", err)
	}
	out := make([]buildJSON, len(bs))
	for i, b := range bs {
		out[i] = toBuildJSON(b)
	}
	writeCollection(w, "builds", out)
	return nil
}

// GET /api/v2/builds/{build}
func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	writeCollection(w, "builds", []buildJSON{toBuildJSON(b)})
	return nil
}

// GET /api/v2/builds/{build}/steps
func (s *Server) listSteps(w http.ResponseWriter, r *http.Request) error {
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
	writeCollection(w, "steps", out)
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
