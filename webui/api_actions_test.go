package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestActions runs every JSON-RPC action as users with and without the
// permission, as nobody, with bad parameters and on unknown ids, and
// checks the status, the JSON-RPC error and what the master was asked.
func TestActions(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	build := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	done := fmt.Sprintf("/api/v2/builds/%d", f.finished[0].ID)
	xssBuild := "" // a build of the builder lin may not touch
	var bs struct {
		Builds []struct {
			ID int64 `json:"buildid"`
		} `json:"builds"`
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/builders/%d/builds", f.xss), &bs)
	xssBuild = fmt.Sprintf("/api/v2/builds/%d", bs.Builds[0].ID)
	req := fmt.Sprintf("/api/v2/buildrequests/%d", f.pending.ID)
	w1 := fmt.Sprintf("/api/v2/workers/%d", f.w1)

	tests := []struct {
		name, user, path, method, params string
		status, code                     int
		msg                              string // in the error message, or the call the master got
	}{
		// builds: stop and rebuild
		{"stop", "dev", build, "stop", `{"reason":"enough"}`, 200, 0, ""},
		{"stop anonymous", "", build, "stop", ``, 401, rpcUnauthorized, "needs a login"},
		{"stop viewer", "vic", build, "stop", ``, 403, rpcForbidden, `user "vic" may not stop builds`},
		{"stop unknown build", "dev", "/api/v2/builds/4242", "stop", ``, 404, -32602, "build 4242 not found"},
		{"stop bad reason", "dev", build, "stop", `{"reason":5}`, 400, -32602, "reason: want a string"},
		{"stop limited role", "lin", build, "stop", ``, 200, 0, ""},
		{"stop limited role, other builder", "lin", xssBuild, "stop", ``, 403, rpcForbidden, "may not stop builds of <script>"},
		{"rebuild", "dev", done, "rebuild", ``, 200, 0, fmt.Sprintf("rebuild %d owner=dev", f.finished[0].ID)},
		{"rebuild anonymous", "", done, "rebuild", ``, 401, rpcUnauthorized, "needs a login"},
		{"rebuild viewer", "vic", done, "rebuild", ``, 403, rpcForbidden, "may not rebuild"},
		{"rebuild unknown", "dev", "/api/v2/builds/4242", "rebuild", ``, 404, -32602, "not found"},
		{"rebuild bad param", "dev", done, "rebuild", `{"x":1}`, 400, -32602, "x: unknown parameter"},
		{"rebuild bad params", "dev", done, "rebuild", `[1]`, 400, -32602, "params: want an object"},
		{"build unknown method", "dev", done, "fly", ``, 400, -32601, `method "fly" not found; a build has "stop", "rebuild"`},

		// build requests: cancel and set_priority
		{"cancel", "dev", req, "cancel", ``, 200, 0, fmt.Sprintf("cancel %d reason=cancelled by dev from the web UI", f.pending.ID)},
		{"cancel with reason", "lin", req, "cancel", `{"reason":"dup"}`, 200, 0, fmt.Sprintf("cancel %d reason=dup", f.pending.ID)},
		{"cancel anonymous", "", req, "cancel", ``, 401, rpcUnauthorized, "needs a login"},
		{"cancel viewer", "vic", req, "cancel", ``, 403, rpcForbidden, "may not cancel build requests"},
		{"cancel unknown", "dev", "/api/v2/buildrequests/4242", "cancel", ``, 404, -32602, "build request 4242 not found"},
		{"cancel bad id", "dev", "/api/v2/buildrequests/x", "cancel", ``, 400, -32602, "build request id"},
		{"cancel bad reason", "dev", req, "cancel", `{"reason":null}`, 400, -32602, "reason: want a string"},
		{"set_priority", "dev", req, "set_priority", `{"priority":7}`, 200, 0, fmt.Sprintf("set_priority %d 7", f.pending.ID)},
		{"set_priority negative", "dev", req, "set_priority", `{"priority":-2}`, 200, 0, fmt.Sprintf("set_priority %d -2", f.pending.ID)},
		{"set_priority missing", "dev", req, "set_priority", ``, 400, -32602, "priority: missing"},
		{"set_priority not an int", "dev", req, "set_priority", `{"priority":1.5}`, 400, -32602, "priority: want an integer"},
		{"set_priority string", "dev", req, "set_priority", `{"priority":"7"}`, 400, -32602, "priority: want an integer"},
		{"set_priority anonymous", "", req, "set_priority", `{"priority":7}`, 401, rpcUnauthorized, ""},
		{"set_priority viewer", "vic", req, "set_priority", `{"priority":7}`, 403, rpcForbidden, "may not change the priority"},
		{"set_priority unknown", "dev", "/api/v2/buildrequests/4242", "set_priority", `{"priority":7}`, 404, -32602, "not found"},
		{"request unknown method", "dev", req, "stop", ``, 400, -32601, `a build request has "cancel", "set_priority"`},

		// workers: pause, unpause, stop, kill
		{"pause", "ops", w1, "pause", `{"reason":"disk"}`, 200, 0, "pause w1 reason=disk"},
		{"pause by name", "ops", "/api/v2/workers/w2", "pause", ``, 200, 0, "pause w2 reason=paused by ops from the web UI"},
		{"unpause", "ops", w1, "unpause", ``, 200, 0, "unpause w1 reason=unpaused by ops from the web UI"},
		{"worker stop", "ops", w1, "stop", ``, 200, 0, "stop w1 reason=stop requested by ops from the web UI"},
		{"kill", "ann", w1, "kill", `{"reason":"hung"}`, 200, 0, "kill w1 reason=hung"},
		{"kill operator", "ops", w1, "kill", ``, 403, rpcForbidden, `user "ops" may not kill workers`},
		{"pause developer", "dev", w1, "pause", ``, 403, rpcForbidden, `user "dev" may not pause workers`},
		{"pause anonymous", "", w1, "pause", ``, 401, rpcUnauthorized, ""},
		{"pause unknown", "ops", "/api/v2/workers/nope", "pause", ``, 404, -32602, `worker "nope" not found`},
		{"pause bad reason", "ops", w1, "pause", `{"reason":[]}`, 400, -32602, "reason: want a string"},
		{"worker unknown method", "ops", w1, "reboot", ``, 400, -32601, `a worker has "pause", "unpause", "stop", "kill"`},

		// schedulers: enable, disable
		{"disable", "ops", "/api/v2/schedulers/nightly", "disable", `{"reason":"freeze"}`, 200, 0, "enable nightly false why=disabled by ops: freeze"},
		{"disable by id", "ops", "/api/v2/schedulers/2", "enable", `{"enabled":false}`, 200, 0, "enable on-push false why=disabled by ops from the web UI"},
		{"enable", "ann", "/api/v2/schedulers/nightly", "enable", ``, 200, 0, "enable nightly true why="},
		{"enable bad flag", "ops", "/api/v2/schedulers/nightly", "enable", `{"enabled":"yes"}`, 400, -32602, "enabled: want true or false"},
		{"disable with enabled", "ops", "/api/v2/schedulers/nightly", "disable", `{"enabled":true}`, 400, -32602, "enabled: unknown parameter"},
		{"enable developer", "dev", "/api/v2/schedulers/nightly", "enable", ``, 403, rpcForbidden, "may not enable or disable schedulers"},
		{"enable anonymous", "", "/api/v2/schedulers/nightly", "enable", ``, 401, rpcUnauthorized, ""},
		{"enable unknown", "ops", "/api/v2/schedulers/nope", "enable", ``, 404, -32602, `scheduler "nope" not found`},
		{"enable unknown id", "ops", "/api/v2/schedulers/3", "enable", ``, 404, -32602, `scheduler "3" not found`},
		{"scheduler unknown method", "ops", "/api/v2/schedulers/nightly", "trigger", ``, 400, -32601, `a scheduler has "enable", "disable"`},

		// force, which existed before logins
		{"force", "dev", "/api/v2/forceschedulers/force", "force", `{"builderNames":["linux"]}`, 200, 0, ""},
		{"force anonymous", "", "/api/v2/forceschedulers/force", "force", ``, 401, rpcUnauthorized, ""},
		{"force viewer", "vic", "/api/v2/forceschedulers/force", "force", ``, 403, rpcForbidden, `user "vic" may not force builds`},
		{"force limited role", "lin", "/api/v2/forceschedulers/force", "force", `{"builderNames":["linux"]}`, 200, 0, ""},
		{"force limited role, other builder", "lin", "/api/v2/forceschedulers/force", "force", `{"builderNames":["linux","empty"]}`, 403, rpcForbidden, "may not force builds of empty"},
		{"force unknown scheduler", "dev", "/api/v2/forceschedulers/nope", "force", ``, 404, -32602, "not found"},
		{"force bad builder", "dev", "/api/v2/forceschedulers/force", "force", `{"builderNames":["nope"]}`, 400, -32602, "builderNames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.user != "" {
				hdr = bearer(tt.user)
			}
			before := f.cm.lastCall()
			st, r := c.rpc(t, tt.path, tt.method, tt.params, hdr...)
			if st != tt.status {
				t.Fatalf("status %d, want %d (error %+v)", st, tt.status, r.Error)
			}
			if tt.status == 200 {
				if r.Error != nil {
					t.Fatalf("error %+v", r.Error)
				}
				if tt.msg != "" && f.cm.lastCall() != tt.msg {
					t.Errorf("the master got %q, want %q", f.cm.lastCall(), tt.msg)
				}
				return
			}
			if r.Error == nil || r.Error.Code != tt.code || !strings.Contains(r.Error.Message, tt.msg) {
				t.Errorf("error %+v, want code %d with %q", r.Error, tt.code, tt.msg)
			}
			if f.cm.lastCall() != before {
				t.Errorf("a refused call reached the master: %q", f.cm.lastCall())
			}
		})
	}

	// What force and rebuild answer, and who the owner is.
	st, r := c.rpc(t, done, "rebuild", "", bearer("dev")...)
	var res []json.RawMessage
	if st != 200 || json.Unmarshal(r.Result, &res) != nil || len(res) != 2 || !strings.Contains(string(res[1]), strconv.FormatInt(f.linux, 10)) {
		t.Errorf("rebuild result %s", r.Result)
	}
	f.m.mu.Lock()
	last := f.m.forced[len(f.m.forced)-1]
	f.m.mu.Unlock()
	if last.Owner != "lin" {
		t.Errorf("forced by lin with owner %q; a logged-in user forces as themselves", last.Owner)
	}
}

// TestChangesNeedForce: POST /api/v2/changes starts builds, so it needs
// the force permission on every builder.
func TestChangesNeedForce(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	body := `{"revision":"abc","branch":"main","repository":"r","author":"A <a@example.org>"}`
	for user, want := range map[string]int{"": 401, "vic": 403, "lin": 403, "dev": 200} {
		var hdr []string
		if user != "" {
			hdr = bearer(user)
		}
		r := c.do(t, http.MethodPost, "/api/v2/changes", "application/json", body, hdr...)
		var e errorBody
		if r.status != want || (want != 200 && (json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "")) {
			t.Errorf("%q: %d %s, want %d with a JSON error", user, r.status, r.body, want)
		}
	}
}

// TestPagesShowWhatYouMay: the pages render only the buttons that
// would work for the reader.
func TestPagesShowWhatYouMay(t *testing.T) {
	f := newAuthFixture(t, true)
	buildPage := fmt.Sprintf("/builders/%d/builds/%d", f.linux, f.running.Number)
	donePage := fmt.Sprintf("/builders/%d/builds/%d", f.linux, f.finished[0].Number)
	builderPage := fmt.Sprintf("/builders/%d", f.linux)
	emptyPage := fmt.Sprintf("/builders/%d", f.empty)
	type want struct {
		page string
		has  []string
		not  []string
	}
	stop, rebuild := `id="stop"`, `id="rebuild"`
	forceForm, login := `<form class="force"`, `to force a build`
	cancel, pause, wstop := `data-method="cancel"`, `data-method="pause"`, `data-method="stop"`
	tests := map[string][]want{
		"": {
			{buildPage, nil, []string{stop, rebuild, "csrf-token"}},
			{builderPage, []string{login}, []string{forceForm, cancel}},
			{"/queue", nil, []string{cancel}},
			{"/workers", nil, []string{pause, wstop}},
		},
		"dev": {
			{buildPage, []string{stop, rebuild, `<meta name="csrf-token"`}, nil},
			{donePage, []string{rebuild}, []string{stop}},
			{builderPage, []string{forceForm, cancel}, []string{login}},
			{"/queue", []string{cancel}, nil},
			{"/workers", nil, []string{pause, wstop}},
		},
		"lin": {
			{builderPage, []string{forceForm, cancel}, nil},
			{emptyPage, nil, []string{forceForm, login}},
		},
		"ops": {
			{buildPage, nil, []string{stop, rebuild}},
			{"/workers", []string{pause, wstop, `data-method="unpause"`}, nil},
		},
	}
	for user, pages := range tests {
		c := f.browser(t)
		if user != "" {
			c.mustLogin(t, user)
		}
		for _, w := range pages {
			r := c.get(t, w.page)
			if r.status != 200 {
				t.Fatalf("%q: GET %s: %d", user, w.page, r.status)
			}
			for _, s := range w.has {
				if !strings.Contains(r.body, s) {
					t.Errorf("%q: %s lacks %s", user, w.page, s)
				}
			}
			for _, s := range w.not {
				if strings.Contains(r.body, s) {
					t.Errorf("%q: %s has %s", user, w.page, s)
				}
			}
		}
	}
}
