package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

// GET /api/v2/forceschedulers with the list conventions.
func (s *Server) listForceSchedulers(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[forceSchedulerJSON]("forceschedulers"))
	if err != nil {
		return err
	}
	fss := s.m.ForceSchedulers()
	out := make([]forceSchedulerJSON, len(fss))
	for i, f := range fss {
		out[i] = toForceSchedulerJSON(f)
	}
	writeSmallList(w, q, out)
	return nil
}

// POST /api/v2/forceschedulers/{scheduler}, method "force".
//
// params, as Buildbot's force form sends them: builderNames (the
// scheduler's builders if absent or empty), reason, owner ("username", as
// Buildbot's form calls it, is accepted too), one member per declared
// parameter by its request key (see ForceRequest.Params), and every other
// member a free property whose value must be a string. The declared
// parameters are checked here with ForceScheduler.Resolve, so that a
// mistake gets a 400 naming it; the master checks them again.
// The result is [buildsetid, {"<builderid>": buildrequestid, …}].
func (s *Server) force(r *http.Request, call rpcRequest) (any, error) {
	name := r.PathValue("scheduler")
	fss := s.m.ForceSchedulers()
	i := slices.IndexFunc(fss, func(f ForceScheduler) bool { return f.Name == name })
	if i < 0 {
		return nil, rpcErrorf(http.StatusNotFound, rpcInvalidParams, "force scheduler %q not found", name)
	}
	fs := fss[i]
	if call.Method != "force" {
		return nil, rpcErrorf(http.StatusBadRequest, rpcMethodNotFound, "method %q not found; a force scheduler has \"force\"", call.Method)
	}
	if err := allowAny(r, "force", "force builds"); err != nil { // auth.go
		return nil, err
	}
	params, err := rpcParams(call)
	if err != nil {
		return nil, err
	}
	declared := fs.paramKeys()
	req := ForceRequest{Scheduler: fs.Name, Properties: map[string]string{}, Params: map[string]any{}}
	var username string
	for k, raw := range params {
		if _, ok := declared[k]; ok && k != "builderNames" {
			if req.Params[k], err = anyParam(k, raw); err != nil {
				return nil, err
			}
			continue
		}
		switch k {
		case "builderNames":
			if err := json.Unmarshal(raw, &req.Builders); err != nil {
				return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "builderNames: want a list of builder names, got %s", raw)
			}
		case "reason":
			req.Reason, err = stringParam(k, raw)
		case "owner":
			req.Owner, err = stringParam(k, raw)
		case "username":
			username, err = stringParam(k, raw)
		default:
			if k == "" {
				return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "property names must not be empty")
			}
			req.Properties[k], err = stringParam(k, raw)
		}
		if err != nil {
			return nil, err
		}
	}
	if req.Owner == "" {
		req.Owner = username
	}
	if len(req.Builders) == 0 {
		req.Builders = slices.Clone(fs.Builders)
	}
	if len(req.Builders) == 0 {
		return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "builderNames: force scheduler %q has no builders", fs.Name)
	}
	for i, b := range req.Builders {
		if slices.Contains(req.Builders[:i], b) {
			return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "builderNames: builder %q is listed twice", b)
		}
		if !slices.Contains(fs.Builders, b) {
			return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "builderNames: builder %q is not one force scheduler %q may force", b, fs.Name)
		}
		if err := allow(r, "force", b, "force builds of "+b); err != nil {
			return nil, err
		}
	}
	if u := userOf(r); u != "" {
		req.Owner = u // a logged-in user forces as themselves
	}

	if _, err := fs.Resolve(req); err != nil {
		return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "force scheduler %q: %s", fs.Name, err)
	}

	bs, reqs, err := s.m.Force(r.Context(), req)
	if err != nil {
		return nil, fmt.Errorf("force scheduler %q: %w", fs.Name, err)
	}
	brids := make(map[string]int64, len(reqs))
	for _, br := range reqs {
		brids[strconv.FormatInt(br.BuilderID, 10)] = br.ID
	}
	return []any{bs.ID, brids}, nil
}

// POST /api/v2/builds/{build}, method "stop" with params {"reason": "…"}.
// The result is null once the master has been asked to stop the build;
// the build finishes (as cancelled) shortly after.
func (s *Server) buildControl(r *http.Request, call rpcRequest) (any, error) {
	b, err := s.buildFromPath(r)
	if err != nil {
		return nil, err
	}
	if call.Method != "stop" {
		return nil, rpcErrorf(http.StatusBadRequest, rpcMethodNotFound, "method %q not found; a build has \"stop\"", call.Method)
	}
	params, err := rpcParams(call)
	if err != nil {
		return nil, err
	}
	reason := ""
	if raw, ok := params["reason"]; ok {
		if reason, err = stringParam("reason", raw); err != nil {
			return nil, err
		}
	}
	if err := s.m.StopBuild(r.Context(), b.ID, reason); err != nil {
		return nil, fmt.Errorf("stop build %d: %w", b.ID, err)
	}
	return nil, nil
}

// anyParam decodes a declared parameter's value, keeping numbers as
// json.Number so that large integers stay exact.
func anyParam(name string, raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "%s: invalid value %s", name, raw)
	}
	return v, nil
}
