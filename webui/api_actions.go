package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"

	"github.com/starforge/starforge/master/store"
)

// The JSON-RPC actions of Buildbot's control API beyond force and stop:
//
//	POST /api/v2/builds/{id}          stop {reason}, rebuild
//	POST /api/v2/buildrequests/{id}   cancel {reason}, set_priority {priority}
//	POST /api/v2/workers/{id|name}    pause, unpause, stop, kill, enable {reason}
//	POST /api/v2/schedulers/{id|name} enable {enabled}, disable
//
// Each checks the caller's permission (see auth.go): stop, rebuild and
// cancel on the builder concerned (set_priority needs cancel: both
// decide what stays in the queue), pause for pause, unpause and a
// worker's graceful stop, admin for kill, reconfig for schedulers.

// Controller is what the actions need of the master, besides Master.
// The Master given to New implements it to enable them; without it they
// answer 501. Errors are as for Master (HTTPStatus, store.ErrNotFound).
type Controller interface {
	// Rebuild queues build buildID again for owner; see master.Rebuild.
	Rebuild(ctx context.Context, buildID int64, owner string) (store.Buildset, []store.BuildRequest, error)
	CancelRequest(ctx context.Context, id int64, reason string) error
	SetRequestPriority(ctx context.Context, id int64, priority int) error
	PauseWorker(ctx context.Context, name, reason string) error
	UnpauseWorker(ctx context.Context, name, reason string) error
	// StopWorker stops a worker once its builds have ended; KillWorker
	// disconnects it now (its builds end RETRY).
	StopWorker(ctx context.Context, name, reason string) error
	KillWorker(ctx context.Context, name, reason string) error
	// EnableScheduler sets a scheduler's enabled flag; why says who
	// disabled it and why.
	EnableScheduler(ctx context.Context, name string, enabled bool, why string) error
}

func (s *Server) actionRoutes(api *http.ServeMux) {
	api.Handle("POST /api/v2/buildrequests/{id}", s.rpc(s.requestActions))
	api.Handle("POST /api/v2/workers/{worker}", s.rpc(s.workerActions))
	api.Handle("POST /api/v2/schedulers/{scheduler}", s.rpc(s.schedulerActions))
}

func (s *Server) controller() (Controller, error) {
	c, ok := s.m.(Controller)
	if !ok {
		return nil, rpcErrorf(http.StatusNotImplemented, rpcInternalError, "this master has no control actions")
	}
	return c, nil
}

// methodNotFound is the error for a method resource does not have.
func methodNotFound(method, resource string, methods ...string) error {
	list := ""
	for i, m := range methods {
		if i > 0 {
			list += ", "
		}
		list += strconv.Quote(m)
	}
	return rpcErrorf(http.StatusBadRequest, rpcMethodNotFound, "method %q not found; %s has %s", method, resource, list)
}

// actionParams decodes the params object, allowing only the names in
// allowed.
func actionParams(call rpcRequest, allowed ...string) (map[string]json.RawMessage, error) {
	params, err := rpcParams(call)
	if err != nil {
		return nil, err
	}
	for k := range params {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "%s: unknown parameter; %q takes none", k, call.Method)
			}
			return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "%s: unknown parameter; %q takes %v", k, call.Method, allowed)
		}
	}
	return params, nil
}

// reasonParam is params' "reason", or def (with the user's name where it
// has %s) if it is absent or empty.
func reasonParam(r *http.Request, params map[string]json.RawMessage, def string) (string, error) {
	reason := ""
	if raw, ok := params["reason"]; ok {
		var err error
		if reason, err = stringParam("reason", raw); err != nil {
			return "", err
		}
	}
	if reason != "" {
		return reason, nil
	}
	who := userOf(r)
	if who == "" {
		who = "a user"
	}
	return fmt.Sprintf(def, who), nil
}

// POST /api/v2/builds/{build}: "stop" (api_control.go) and "rebuild",
// whose result is [buildsetid, {"<builderid>": buildrequestid}].
func (s *Server) buildActions(r *http.Request, call rpcRequest) (any, error) {
	perm, what := "", ""
	switch call.Method {
	case "stop":
		perm, what = "stop", "stop builds"
	case "rebuild":
		perm, what = "rebuild", "rebuild builds"
	default:
		return nil, methodNotFound(call.Method, "a build", "stop", "rebuild")
	}
	if err := allowAny(r, perm, what); err != nil {
		return nil, err
	}
	b, err := s.buildFromPath(r)
	if err != nil {
		return nil, err
	}
	if err := allow(r, perm, b.BuilderName, fmt.Sprintf("%s builds of %s", perm, b.BuilderName)); err != nil {
		return nil, err
	}
	if call.Method == "stop" {
		return s.buildControl(r, call)
	}
	if _, err := actionParams(call, "reason"); err != nil {
		return nil, err
	}
	c, err := s.controller()
	if err != nil {
		return nil, err
	}
	owner := userOf(r)
	bs, reqs, err := c.Rebuild(r.Context(), b.ID, owner)
	if err != nil {
		return nil, fmt.Errorf("rebuild build %d: %w", b.ID, err)
	}
	brids := make(map[string]int64, len(reqs))
	for _, br := range reqs {
		brids[strconv.FormatInt(br.BuilderID, 10)] = br.ID
	}
	return []any{bs.ID, brids}, nil
}

// POST /api/v2/buildrequests/{id}: "cancel" {reason} and "set_priority"
// {priority}. The result is null.
func (s *Server) requestActions(r *http.Request, call rpcRequest) (any, error) {
	var what string
	switch call.Method {
	case "cancel":
		what = "cancel build requests"
	case "set_priority":
		what = "change the priority of build requests"
	default:
		return nil, methodNotFound(call.Method, "a build request", "cancel", "set_priority")
	}
	if err := allowAny(r, "cancel", what); err != nil {
		return nil, err
	}
	id, err := pathID(r, "id", "build request id")
	if err != nil {
		return nil, err
	}
	br, err := s.m.Store().GetRequest(r.Context(), id)
	if err != nil {
		return nil, lookupErr(err, "build request %d", id)
	}
	var params map[string]json.RawMessage
	var prio int
	if call.Method == "cancel" {
		params, err = actionParams(call, "reason")
	} else if params, err = actionParams(call, "priority"); err == nil {
		prio, err = priorityParam(params)
	}
	if err != nil {
		return nil, err
	}
	if err := allow(r, "cancel", br.BuilderName, fmt.Sprintf("%s of %s", what, br.BuilderName)); err != nil {
		return nil, err
	}
	c, err := s.controller()
	if err != nil {
		return nil, err
	}
	if call.Method == "set_priority" {
		if err := c.SetRequestPriority(r.Context(), id, prio); err != nil {
			return nil, fmt.Errorf("set priority of build request %d: %w", id, err)
		}
		return nil, nil
	}
	reason, err := reasonParam(r, params, "cancelled by %s from the web UI")
	if err != nil {
		return nil, err
	}
	if err := c.CancelRequest(r.Context(), id, reason); err != nil {
		return nil, fmt.Errorf("cancel build request %d: %w", id, err)
	}
	return nil, nil
}

func priorityParam(params map[string]json.RawMessage) (int, error) {
	raw, ok := params["priority"]
	if !ok {
		return 0, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "priority: missing; want an integer (higher goes first)")
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "priority: want an integer (higher goes first), got %s", raw)
	}
	return int(f), nil
}

// POST /api/v2/workers/{worker} (id or name): "pause", "unpause", "stop"
// (when its builds have ended) and "kill" (now), each with {reason}.
// The result is null.
func (s *Server) workerActions(r *http.Request, call rpcRequest) (any, error) {
	perm, what := "pause", ""
	switch call.Method {
	case "pause", "unpause", "stop":
		what = call.Method + " workers"
	case "kill":
		perm, what = "admin", "kill workers"
	case "enable": // a latent worker disabled by failures: api_latent.go
		perm, what = "admin", "enable latent workers"
	default:
		return nil, methodNotFound(call.Method, "a worker", "pause", "unpause", "stop", "kill", "enable")
	}
	if err := allow(r, perm, "", what); err != nil {
		return nil, err
	}
	name, err := s.workerFromPath(r)
	if err != nil {
		return nil, err
	}
	params, err := actionParams(call, "reason")
	if err != nil {
		return nil, err
	}
	defs := map[string]string{
		"pause":   "paused by %s from the web UI",
		"unpause": "unpaused by %s from the web UI",
		"stop":    "stop requested by %s from the web UI",
		"kill":    "killed by %s from the web UI",
		"enable":  "enabled by %s from the web UI",
	}
	reason, err := reasonParam(r, params, defs[call.Method])
	if err != nil {
		return nil, err
	}
	if call.Method == "enable" {
		return nil, s.enableWorker(r.Context(), name, reason)
	}
	c, err := s.controller()
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	switch call.Method {
	case "pause":
		err = c.PauseWorker(ctx, name, reason)
	case "unpause":
		err = c.UnpauseWorker(ctx, name, reason)
	case "stop":
		err = c.StopWorker(ctx, name, reason)
	case "kill":
		err = c.KillWorker(ctx, name, reason)
	}
	if err != nil {
		return nil, fmt.Errorf("%s worker %s: %w", call.Method, name, err)
	}
	return nil, nil
}

// workerFromPath resolves {worker}: a worker id, or else a name.
func (s *Server) workerFromPath(r *http.Request) (string, error) {
	key := r.PathValue("worker")
	st := s.m.Store()
	if id, err := strconv.ParseInt(key, 10, 64); err == nil && id > 0 {
		w, err := st.GetWorker(r.Context(), id)
		if err == nil {
			return w.Name, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", lookupErr(err, "worker %d", id)
		}
	}
	w, err := st.GetWorkerByName(r.Context(), key)
	if err != nil {
		return "", lookupErr(err, "worker %q", key)
	}
	return w.Name, nil
}

// POST /api/v2/schedulers/{scheduler} (its schedulerid, or its name):
// "enable" with {"enabled": bool} (default true), as Buildbot's, and
// "disable", each with an optional {reason}. The result is null.
func (s *Server) schedulerActions(r *http.Request, call rpcRequest) (any, error) {
	if call.Method != "enable" && call.Method != "disable" {
		return nil, methodNotFound(call.Method, "a scheduler", "enable", "disable")
	}
	if err := allow(r, "reconfig", "", "enable or disable schedulers"); err != nil {
		return nil, err
	}
	key := r.PathValue("scheduler")
	ss := s.m.Schedulers()
	i := slices.IndexFunc(ss, func(sc SchedulerState) bool { return sc.Name == key })
	if n, err := strconv.Atoi(key); i < 0 && err == nil && n >= 1 && n <= len(ss) {
		i = n - 1 // the schedulerid the API lists
	}
	if i < 0 {
		return nil, rpcErrorf(http.StatusNotFound, rpcInvalidParams, "scheduler %q not found", key)
	}
	name := ss[i].Name
	allowed := []string{"reason"}
	if call.Method == "enable" {
		allowed = append(allowed, "enabled")
	}
	params, err := actionParams(call, allowed...)
	if err != nil {
		return nil, err
	}
	enabled := call.Method == "enable"
	if raw, ok := params["enabled"]; ok {
		if err := json.Unmarshal(raw, &enabled); err != nil || string(raw) == "null" {
			return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "enabled: want true or false, got %s", raw)
		}
	}
	why := ""
	if !enabled {
		if why, err = reasonParam(r, params, "disabled by %s from the web UI"); err != nil {
			return nil, err
		}
		if raw, ok := params["reason"]; ok && string(raw) != `""` {
			if who := userOf(r); who != "" {
				why = "disabled by " + who + ": " + why
			}
		}
	}
	c, err := s.controller()
	if err != nil {
		return nil, err
	}
	if err := c.EnableScheduler(r.Context(), name, enabled, why); err != nil {
		return nil, fmt.Errorf("enable scheduler %s: %w", name, err)
	}
	return nil, nil
}
