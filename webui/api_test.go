package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// The exact field sets of each kind of item.
var (
	builderFields = []string{"builderid", "name", "description", "tags"}
	buildFields   = []string{"buildid", "number", "builderid", "builder_name", "buildrequestid", "buildsetid", "workerid", "worker_name",
		"started_at", "complete_at", "complete", "state_string", "results", "properties"}
	stepFields = []string{"stepid", "number", "name", "buildid", "started_at", "complete_at", "complete",
		"state_string", "results", "hidden", "urls"}
	logFields    = []string{"logid", "name", "slug", "stepid", "complete", "num_lines", "type"}
	workerFields = []string{"workerid", "name", "workerinfo", "paused", "pause_reason", "graceful", "connected_to",
		"connected", "last_connected", "last_disconnected", "running_builds", "donated", "donated_build_hours",
		"latent_worker", "latent_state", "latent_stop_reason", "latent_instance", "latent_since", "latent_failures",
		"latent_last_error", "latent_quarantined_until", "latent_disabled", "latent_disabled_reason"}
	requestFields = []string{"buildrequestid", "buildsetid", "builderid", "priority", "claimed", "claimed_at",
		"complete", "complete_at", "results", "submitted_at", "waited_for", "waiting_reason", "cancel_reason"}
	forceFields = []string{"name", "label", "builder_names", "button_name", "all_fields"}
)

func TestAPIShapes(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path   string
		coll   string
		fields []string // nil: not checked
		n      int
	}{
		{"/api/v2/builders", "builders", builderFields, 3},
		{"/api/v2/builders/linux", "builders", builderFields, 1},
		{fmt.Sprintf("/api/v2/builders/%d", f.linux), "builders", builderFields, 1},
		{"/api/v2/builders/linux/builds", "builds", buildFields, 4},
		{"/api/v2/builders/linux/builds?limit=2", "builds", buildFields, 2},
		{"/api/v2/builders/linux/builds/2", "builds", buildFields, 1},
		{fmt.Sprintf("/api/v2/builders/%d/builds/1", f.xss), "builds", buildFields, 1},
		{"/api/v2/builds", "builds", buildFields, 5},
		{"/api/v2/builds?running=1", "builds", buildFields, 1},
		{"/api/v2/builds?running=0&limit=1000", "builds", buildFields, 5},
		{fmt.Sprintf("/api/v2/builds?builderid=%d", f.xss), "builds", buildFields, 1},
		{fmt.Sprintf("/api/v2/builds?workerid=%d", f.w2), "builds", buildFields, 0},
		{fmt.Sprintf("/api/v2/builds?buildrequestid=%d", f.running.RequestID), "builds", buildFields, 1},
		{fmt.Sprintf("/api/v2/builds?before=%d", f.running.ID), "builds", buildFields, 4},
		{fmt.Sprintf("/api/v2/builds/%d", f.running.ID), "builds", buildFields, 1},
		{fmt.Sprintf("/api/v2/builds/%d/steps", f.running.ID), "steps", stepFields, 3},
		{fmt.Sprintf("/api/v2/builds/%d/steps", f.finished[0].ID), "steps", stepFields, 0},
		{fmt.Sprintf("/api/v2/builds/%d/properties", f.running.ID), "properties", nil, 1},
		{fmt.Sprintf("/api/v2/steps/%d/logs", f.doneStep.ID), "logs", logFields, 1},
		{fmt.Sprintf("/api/v2/logs/%d", f.doneLog.ID), "logs", logFields, 1},
		{"/api/v2/workers", "workers", workerFields, 2},
		{"/api/v2/buildrequests", "buildrequests", requestFields, 6},
		{"/api/v2/buildrequests?pending=1", "buildrequests", requestFields, 1},
		{fmt.Sprintf("/api/v2/buildrequests?builderid=%d&limit=2", f.linux), "buildrequests", requestFields, 2},
		{"/api/v2/forceschedulers", "forceschedulers", forceFields, 2},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st, h, body := f.get(t, tt.path)
			if st != http.StatusOK {
				t.Fatalf("status %d, body %s", st, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(body, &top); err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(top)); !slices.Equal(got, []string{"meta", tt.coll}) && !slices.Equal(got, []string{tt.coll, "meta"}) {
				t.Fatalf("top-level keys %v", got)
			}
			var items []map[string]json.RawMessage
			if err := json.Unmarshal(top[tt.coll], &items); err != nil || items == nil {
				t.Fatalf("%s is not a list: %s", tt.coll, top[tt.coll])
			}
			var m meta
			if err := json.Unmarshal(top["meta"], &m); err != nil {
				t.Fatal(err)
			}
			if len(items) != tt.n || m.Total != tt.n {
				t.Errorf("got %d items, meta.total %d; want %d", len(items), m.Total, tt.n)
			}
			if tt.fields == nil {
				return
			}
			want := slices.Sorted(slices.Values(tt.fields))
			for _, it := range items {
				if got := slices.Sorted(maps.Keys(it)); !slices.Equal(got, want) {
					t.Errorf("item fields\n got %v\nwant %v", got, want)
				}
			}
		})
	}
}

func TestAPIValues(t *testing.T) {
	f := newFixture(t)

	t.Run("builder", func(t *testing.T) {
		var got struct{ Builders []builderJSON }
		f.getJSON(t, "/api/v2/builders/linux", &got)
		b := got.Builders[0]
		if b.BuilderID != f.linux || b.Name != "linux" || *b.Description != "Builds on Linux" || !slices.Equal(b.Tags, []string{"tier1", "amd64"}) {
			t.Errorf("got %+v", b)
		}
		var raw map[string]any
		f.getJSON(t, "/api/v2/builders/empty", &raw)
		raw["builders"] = raw["builders"].([]any)[0]
		eb := raw["builders"].(map[string]any)
		if d, ok := eb["description"]; !ok || d != nil {
			t.Errorf("empty description: got %v, want null", d)
		}
		if tags := eb["tags"]; fmt.Sprint(tags) != "[]" {
			t.Errorf("no tags: got %v, want []", tags)
		}
	})

	t.Run("finished build", func(t *testing.T) {
		var got struct{ Builds []map[string]any }
		b := f.finished[1]
		f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d", b.ID), &got)
		want := map[string]any{
			"buildid": float64(b.ID), "number": float64(2), "builderid": float64(f.linux), "builder_name": "linux", "worker_name": "w1",
			"buildrequestid": float64(b.RequestID), "buildsetid": float64(b.BuildsetID), "workerid": float64(f.w1),
			"started_at": float64(b.StartedAt.UnixMilli()) / 1000, "complete_at": float64(b.CompleteAt.UnixMilli()) / 1000,
			"complete": true, "state_string": "build failure", "results": float64(result.Failure), "properties": map[string]any{},
		}
		if g := got.Builds[0]; fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("\n got %v\nwant %v", g, want)
		}
	})

	t.Run("running build", func(t *testing.T) {
		var got struct{ Builds []map[string]any }
		f.getJSON(t, fmt.Sprintf("/api/v2/builders/linux/builds/%d", f.running.Number), &got)
		g := got.Builds[0]
		if g["results"] != nil || g["complete_at"] != nil || g["complete"] != false || g["buildid"] != float64(f.running.ID) {
			t.Errorf("got %v", g)
		}
	})

	t.Run("steps", func(t *testing.T) {
		var got struct{ Steps []map[string]any }
		f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/steps", f.running.ID), &got)
		s0, s1, s2 := got.Steps[0], got.Steps[1], got.Steps[2]
		if s0["name"] != "compile" || s0["results"] != float64(0) || s0["complete"] != true || s0["state_string"] != "compiled" {
			t.Errorf("step 1: %v", s0)
		}
		if s1["name"] != "test" || s1["results"] != nil || s1["complete"] != false || s1["started_at"] == nil {
			t.Errorf("step 2: %v", s1)
		}
		if s2["hidden"] != true || s2["started_at"] != nil {
			t.Errorf("step 3: %v", s2)
		}
	})

	t.Run("properties", func(t *testing.T) {
		var got struct{ Properties []map[string][2]any }
		f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/properties", f.running.ID), &got)
		p := got.Properties[0]
		if fmt.Sprint(p["buildername"]) != "[x Builder]" || fmt.Sprint(p["branch"]) != "[main Scheduler]" || len(p) != 2 {
			t.Errorf("got %v", p)
		}
	})

	t.Run("logs", func(t *testing.T) {
		var got struct{ Logs []logJSON }
		f.getJSON(t, fmt.Sprintf("/api/v2/steps/%d/logs", f.runStep.ID), &got)
		want := logJSON{LogID: f.growLog.ID, Name: "stdio", Slug: "stdio", StepID: f.runStep.ID, Complete: false, NumLines: 1, Type: "s"}
		if len(got.Logs) != 1 || got.Logs[0] != want {
			t.Errorf("got %+v, want %+v", got.Logs, want)
		}
		f.getJSON(t, fmt.Sprintf("/api/v2/logs/%d", f.doneLog.ID), &got)
		if l := got.Logs[0]; !l.Complete || l.NumLines != 6 {
			t.Errorf("finished log: %+v", l)
		}
	})

	t.Run("workers", func(t *testing.T) {
		var got struct{ Workers []map[string]any }
		f.getJSON(t, "/api/v2/workers", &got)
		byName := map[string]map[string]any{}
		for _, w := range got.Workers {
			byName[w["name"].(string)] = w
		}
		w1, w2 := byName["w1"], byName["w2"]
		if w1["connected"] != true || fmt.Sprint(w1["connected_to"]) != "[map[masterid:1]]" ||
			fmt.Sprint(w1["running_builds"]) != fmt.Sprintf("[%d]", f.running.ID) ||
			fmt.Sprint(w1["workerinfo"]) != "map[numcpus:4 os:linux version:1.2.3]" || w1["paused"] != false || w1["pause_reason"] != nil {
			t.Errorf("w1: %v", w1)
		}
		if w2["connected"] != false || fmt.Sprint(w2["connected_to"]) != "[]" || w2["paused"] != true ||
			w2["pause_reason"] != "owner is back" || fmt.Sprint(w2["workerinfo"]) != "map[]" || fmt.Sprint(w2["running_builds"]) != "[]" {
			t.Errorf("w2: %v", w2)
		}
		if w1["last_connected"] != float64(f.start.UnixMilli())/1000 {
			t.Errorf("w1 last_connected %v, want %v", w1["last_connected"], f.start.Unix())
		}
	})

	t.Run("buildrequests", func(t *testing.T) {
		var got struct{ BuildRequests []map[string]any }
		f.getJSON(t, "/api/v2/buildrequests?pending=1", &got)
		r := got.BuildRequests[0]
		if r["buildrequestid"] != float64(f.pending.ID) || r["waiting_reason"] != "no worker connected for builder linux" ||
			r["claimed"] != false || r["results"] != nil || r["submitted_at"] == nil {
			t.Errorf("pending: %v", r)
		}
		f.getJSON(t, fmt.Sprintf("/api/v2/buildrequests?before=%d&limit=1", f.pending.ID), &got)
		if r := got.BuildRequests[0]; r["claimed"] != true || r["waiting_reason"] != nil {
			t.Errorf("claimed: %v", r)
		}
	})

	t.Run("forceschedulers", func(t *testing.T) {
		var got struct{ ForceSchedulers []forceSchedulerJSON }
		f.getJSON(t, "/api/v2/forceschedulers", &got)
		want := []forceSchedulerJSON{
			{Name: "force", Label: "Force a build", BuilderNames: []string{"linux", "empty"}, ButtonName: "Force"},
			{Name: "other", Label: "other", BuilderNames: []string{"empty"}, ButtonName: "Force"},
		}
		if fmt.Sprint(got.ForceSchedulers) != fmt.Sprint(want) {
			t.Errorf("got %+v", got.ForceSchedulers)
		}
	})
}

func TestAPIErrors(t *testing.T) {
	f := newFixture(t)
	log := fmt.Sprintf("/api/v2/logs/%d", f.doneLog.ID)
	tests := []struct {
		method, path string
		status       int
		msg          string // the exact error message, or its start if it ends with "…"
	}{
		{"GET", "/api/v2/builds?limit=abc", 400, `limit: want an integer from 1 to 1000, got "abc"`},
		{"GET", "/api/v2/builds?limit=0", 400, `limit: want an integer from 1 to 1000, got "0"`},
		{"GET", "/api/v2/builds?limit=1001", 400, `limit: want an integer from 1 to 1000, got "1001"`},
		{"GET", "/api/v2/builds?limit=2.5", 400, `limit: want an integer from 1 to 1000, got "2.5"`},
		{"GET", "/api/v2/builds?before=x", 400, `before: want a positive integer, got "x"`},
		{"GET", "/api/v2/builds?before=-4", 400, `before: want a positive integer, got "-4"`},
		{"GET", "/api/v2/builds?builderid=0", 400, `builderid: want a positive integer, got "0"`},
		{"GET", "/api/v2/builds?workerid=w", 400, `workerid: want a positive integer, got "w"`},
		{"GET", "/api/v2/builds?running=yes", 400, `running: want 1, 0, true or false, got "yes"`},
		{"GET", "/api/v2/builds?limit=5&before=1&running=maybe", 400, `running: …`},
		{"GET", "/api/v2/builders/linux/builds?limit=", 200, ""},
		{"GET", "/api/v2/builders/linux/builds?limit=99999999999999999999", 400, `limit: …`},
		{"GET", "/api/v2/builders/linux/builds?before=zz", 400, `before: …`},
		{"GET", "/api/v2/buildrequests?pending=2", 400, `pending: want 1, 0, true or false, got "2"`},
		{"GET", "/api/v2/buildrequests?limit=-1", 400, `limit: …`},
		{"GET", "/api/v2/builds/abc", 400, `build id: want a positive integer, got "abc"`},
		{"GET", "/api/v2/builds/0/steps", 400, `build id: …`},
		{"GET", "/api/v2/builds/99999", 404, `build 99999 not found`},
		{"GET", "/api/v2/builds/99999/steps", 404, `build 99999 not found`},
		{"GET", "/api/v2/builds/99999/properties", 404, `build 99999 not found`},
		{"GET", "/api/v2/builders/nope", 404, `builder "nope" not found`},
		{"GET", "/api/v2/builders/999", 404, `builder "999" not found`},
		{"GET", "/api/v2/builders/nope/builds", 404, `builder "nope" not found`},
		{"GET", "/api/v2/builders/linux/builds/77", 404, `build linux/77 not found`},
		{"GET", "/api/v2/builders/linux/builds/x", 400, `build number: want a non-negative integer, got "x"`},
		{"GET", "/api/v2/steps/999/logs", 404, `step 999 not found`},
		{"GET", "/api/v2/steps/x/logs", 400, `step id: …`},
		{"GET", "/api/v2/logs/999", 404, `log 999 not found`},
		{"GET", "/api/v2/logs/999/contents", 404, `log 999 not found`},
		{"GET", "/api/v2/logs/999/raw", 404, `log 999 not found`},
		{"GET", log + "/contents?first=-1", 400, `first: want a non-negative integer, got "-1"`},
		{"GET", log + "/contents?first=a", 400, `first: …`},
		{"GET", log + "/contents?last=abc", 400, `last: want an integer from -1 to 2147483647, got "abc"`},
		{"GET", log + "/contents?first=5&last=2", 400, `last: want -1 or an integer from first (5) to 2147483647, got "2"`},
		{"GET", "/api/v2/nothing", 404, `no API endpoint GET /api/v2/nothing`},
		{"GET", "/api/", 404, `no API endpoint GET /api/`},
		{"GET", "/api/v2/builds/1/nothing", 404, `no API endpoint …`},
		{"GET", "/api/v2//builds", 200, ""}, // redirected to the clean path, then served
		{"DELETE", "/api/v2/builders", 405, `method DELETE not allowed on /api/v2/builders`},
		{"POST", "/api/v2/workers", 405, `method POST not allowed on /api/v2/workers`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			st, h, body := f.do(t, tt.method, tt.path, "", "")
			if st != tt.status {
				t.Fatalf("status %d, want %d; body %s", st, tt.status, body)
			}
			if tt.status == 200 {
				return
			}
			if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if prefix, ok := strings.CutSuffix(tt.msg, "…"); ok {
				if !strings.HasPrefix(e.Error, prefix) {
					t.Errorf("error %q, want it to start with %q", e.Error, prefix)
				}
			} else if e.Error != tt.msg {
				t.Errorf("error %q, want %q", e.Error, tt.msg)
			}
		})
	}
}

// TestAPIPaging walks lists page by page and checks that every item comes
// exactly once, newest first.
func TestAPIPaging(t *testing.T) {
	f := newFixture(t)
	for i := range 23 {
		f.addBuild(t, f.empty, f.w2, f.start.Add(time.Duration(i)*time.Second))
	}
	type page struct {
		Builds []struct {
			BuildID int64 `json:"buildid"`
		}
		BuildRequests []struct {
			BuildRequestID int64 `json:"buildrequestid"`
		}
	}
	walk := func(t *testing.T, base string, ids func(page) []int64) []int64 {
		var all []int64
		before := int64(0)
		for range 100 {
			url := base + "&limit=5"
			if before != 0 {
				url += "&before=" + strconv.FormatInt(before, 10)
			}
			var p page
			f.getJSON(t, url, &p)
			got := ids(p)
			if len(got) > 5 {
				t.Fatalf("%s: %d items", url, len(got))
			}
			if len(got) == 0 {
				return all
			}
			all = append(all, got...)
			before = got[len(got)-1]
		}
		t.Fatal("paging does not end")
		return nil
	}
	buildIDs := func(p page) (ids []int64) {
		for _, b := range p.Builds {
			ids = append(ids, b.BuildID)
		}
		return ids
	}
	reqIDs := func(p page) (ids []int64) {
		for _, r := range p.BuildRequests {
			ids = append(ids, r.BuildRequestID)
		}
		return ids
	}
	tests := []struct {
		url  string
		ids  func(page) []int64
		want int
	}{
		{fmt.Sprintf("/api/v2/builds?builderid=%d", f.empty), buildIDs, 23},
		{"/api/v2/builders/empty/builds?", buildIDs, 23},
		{"/api/v2/builds?running=1", buildIDs, 24},
		{fmt.Sprintf("/api/v2/builds?workerid=%d", f.w2), buildIDs, 23},
		{"/api/v2/builds?order=-buildid", buildIDs, 28},
		{fmt.Sprintf("/api/v2/buildrequests?builderid=%d", f.empty), reqIDs, 23},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			ids := walk(t, tt.url, tt.ids)
			if len(ids) != tt.want {
				t.Errorf("got %d items, want %d", len(ids), tt.want)
			}
			for i := 1; i < len(ids); i++ {
				if ids[i] >= ids[i-1] {
					t.Fatalf("ids not strictly decreasing (so not unique) at %d: %v", i, ids)
				}
			}
		})
	}
}

func TestLogContents(t *testing.T) {
	f := newFixture(t)
	lines := strings.SplitAfter(fixtureLog, "\n")
	lines = lines[:len(lines)-1]
	tests := []struct {
		query       string
		first, last int // the lines expected
	}{
		{"", 0, 5},
		{"?first=0", 0, 5},
		{"?last=-1", 0, 5},
		{"?first=1&last=2", 1, 2},
		{"?first=2&last=2", 2, 2},
		{"?first=4&last=4", 4, 4},
		{"?first=3", 3, 5},
		{"?first=2&last=1000", 2, 5},
		{"?first=6", 6, 5},
		{"?first=600&last=700", 600, 5},
		{"?last=0", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			st, _, body := f.get(t, fmt.Sprintf("/api/v2/logs/%d/contents%s", f.doneLog.ID, tt.query))
			if st != 200 {
				t.Fatalf("status %d: %s", st, body)
			}
			content := ""
			if tt.first <= tt.last {
				content = strings.Join(lines[tt.first:tt.last+1], "")
			}
			// Byte-exact: the streamed JSON is what encoding/json makes of it.
			c, _ := json.Marshal(content)
			want := fmt.Sprintf(`{"logchunks":[{"firstline":%d,"content":%s}],"meta":{"total":1}}`+"\n", tt.first, c)
			if string(body) != want {
				t.Errorf("\n got %s\nwant %s", body, want)
			}
		})
	}
}

func TestLogRaw(t *testing.T) {
	f := newFixture(t)
	st, h, body := f.get(t, fmt.Sprintf("/api/v2/logs/%d/raw", f.doneLog.ID))
	if st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
	want := "make all\ncompiling <main.c> & \"util.c\"\nwarning: unused variable\n unicode é ✓\n\ndone\n"
	if string(body) != want {
		t.Errorf("\n got %q\nwant %q", body, want)
	}
	if ct := h.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd, want := h.Get("Content-Disposition"), fmt.Sprintf("attachment; filename=linux_build_%d_compile_stdio.log", f.running.Number); cd != want {
		t.Errorf("Content-Disposition %q, want %q", cd, want)
	}
}

// TestLogLarge reads a log of many chunks in ranges that cross chunk
// boundaries, and as a whole.
func TestLogLarge(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l, err := f.st.AddLog(ctx, f.runStep.ID, "big", store.LogStdio)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := f.st.AddLog(ctx, f.runStep.ID, "text", store.LogText)
	if err != nil {
		t.Fatal(err)
	}
	var lines, text []string
	for i := range 20000 {
		stream := "oe"[i%2 : i%2+1]
		line := fmt.Sprintf("%s%05d %s é\x01\"\n", stream, i, strings.Repeat("x", i%40))
		lines = append(lines, line)
		text = append(text, line[1:])
	}
	for i := 0; i < len(lines); i += 3000 { // several appends, several chunks each
		batch := strings.Join(lines[i:min(i+3000, len(lines))], "")
		if _, _, err := f.st.AppendLog(ctx, l.ID, []byte(batch)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.st.AppendLog(ctx, l2.ID, []byte(strings.Join(text[i:min(i+3000, len(text))], ""))); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range [][2]int{{0, 999}, {1000, 1999}, {2500, 7777}, {19990, -1}, {0, -1}} {
		var got struct {
			LogChunks []struct {
				FirstLine int
				Content   string
			}
		}
		q := fmt.Sprintf("/api/v2/logs/%d/contents?first=%d&last=%d", l.ID, r[0], r[1])
		f.getJSON(t, q, &got)
		end := r[1] + 1
		if r[1] < 0 {
			end = len(lines)
		}
		if want := strings.Join(lines[r[0]:end], ""); got.LogChunks[0].Content != want || got.LogChunks[0].FirstLine != r[0] {
			t.Errorf("%s: got %d bytes from line %d, want %d bytes", q, len(got.LogChunks[0].Content), got.LogChunks[0].FirstLine, len(want))
		}
	}
	want := strings.Join(text, "")
	for _, id := range []int64{l.ID, l2.ID} { // prefixes removed from stdio, text kept whole
		_, _, body := f.get(t, fmt.Sprintf("/api/v2/logs/%d/raw", id))
		if string(body) != want {
			t.Errorf("raw log %d: got %d bytes, want %d", id, len(body), len(want))
		}
	}
}

// rpcReply is a JSON-RPC reply as a test reads it.
type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcErrorBody   `json:"error"`
}

func (f *fixture) rpc(t *testing.T, path, contentType, body string) (int, rpcReply) {
	t.Helper()
	st, _, b := f.do(t, http.MethodPost, path, contentType, body)
	var r rpcReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if r.JSONRPC != "2.0" {
		t.Errorf("jsonrpc %q in %s", r.JSONRPC, b)
	}
	return st, r
}

func TestForce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	empty := strconv.FormatInt(f.empty, 10)
	linux := strconv.FormatInt(f.linux, 10)

	tests := []struct {
		name, body string
		want       ForceRequest
	}{
		{"one builder",
			`{"jsonrpc":"2.0","method":"force","id":7,"params":{"builderNames":["linux"],"reason":"because","owner":"me","color":"blue","empty":""}}`,
			ForceRequest{Scheduler: "force", Builders: []string{"linux"}, Reason: "because", Owner: "me", Properties: map[string]string{"color": "blue", "empty": ""}}},
		{"all builders of the scheduler",
			`{"jsonrpc":"2.0","method":"force","id":"x","params":{"username":"Buildbot UI"}}`,
			ForceRequest{Scheduler: "force", Builders: []string{"linux", "empty"}, Owner: "Buildbot UI", Properties: map[string]string{}}},
		{"no params",
			`{"jsonrpc":"2.0","method":"force","id":1}`,
			ForceRequest{Scheduler: "force", Builders: []string{"linux", "empty"}, Properties: map[string]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.m.mu.Lock()
			f.m.forced = nil
			f.m.mu.Unlock()
			st, r := f.rpc(t, "/api/v2/forceschedulers/force", "application/json", tt.body)
			if st != 200 || r.Error != nil {
				t.Fatalf("status %d, error %+v", st, r.Error)
			}
			var call rpcRequest
			json.Unmarshal([]byte(tt.body), &call)
			if string(r.ID) != string(call.ID) {
				t.Errorf("id %s, want %s", r.ID, call.ID)
			}
			if len(f.m.forced) != 1 || fmt.Sprint(f.m.forced[0]) != fmt.Sprint(tt.want) {
				t.Errorf("master got %+v, want %+v", f.m.forced, tt.want)
			}
			var res []json.RawMessage
			if err := json.Unmarshal(r.Result, &res); err != nil || len(res) != 2 {
				t.Fatalf("result %s", r.Result)
			}
			var bsid int64
			var brids map[string]int64
			json.Unmarshal(res[0], &bsid)
			json.Unmarshal(res[1], &brids)
			if len(brids) != len(tt.want.Builders) {
				t.Errorf("result %s: want %d requests", r.Result, len(tt.want.Builders))
			}
			for bid, brid := range brids {
				br, err := f.st.GetRequest(ctx, brid)
				if err != nil || br.BuildsetID != bsid || strconv.FormatInt(br.BuilderID, 10) != bid || (bid != linux && bid != empty) {
					t.Errorf("request %d: %+v, %v", brid, br, err)
				}
			}
		})
	}
}

func TestForceErrors(t *testing.T) {
	f := newFixture(t)
	const ok = `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["linux"]}}`
	tests := []struct {
		name, sched, ctype, body string
		masterErr                error
		status, code             int
		msg                      string // a part of the message
	}{
		{"unknown scheduler", "nope", "application/json", ok, nil, 404, -32602, `force scheduler "nope" not found`},
		{"form content type", "force", "application/x-www-form-urlencoded", ok, nil, 415, -32600, "Content-Type: want application/json"},
		{"no content type", "force", "", ok, nil, 415, -32600, "Content-Type"},
		{"json with charset", "force", "application/json; charset=utf-8", ok, nil, 200, 0, ""},
		{"bad JSON", "force", "application/json", `{"jsonrpc":`, nil, 400, -32700, "invalid JSON"},
		{"not 2.0", "force", "application/json", `{"jsonrpc":"1.0","method":"force","id":1}`, nil, 400, -32600, `jsonrpc: want "2.0"`},
		{"wrong method", "force", "application/json", `{"jsonrpc":"2.0","method":"stop","id":1}`, nil, 400, -32601, `method "stop" not found`},
		{"params not an object", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":[1]}`, nil, 400, -32602, "params: want an object"},
		{"number property", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"jobs":4}}`, nil, 400, -32602, "jobs: want a string, got 4"},
		{"reason not a string", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"reason":null}}`, nil, 400, -32602, "reason: want a string"},
		{"builderNames a string", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":"linux"}}`, nil, 400, -32602, "builderNames: want a list"},
		{"unknown builder", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["windows"]}}`, nil, 400, -32602, `builder "windows"`},
		{"builder of another scheduler", "other", "application/json", ok, nil, 400, -32602, `builder "linux" is not one force scheduler "other" may force`},
		{"builder twice", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["linux","empty","linux"]}}`, nil, 400, -32602, `builder "linux" is listed twice`},
		{"empty property name", "force", "application/json", `{"jsonrpc":"2.0","method":"force","id":1,"params":{"":"x"}}`, nil, 400, -32602, "property names"},
		{"master refuses", "force", "application/json", ok, statusErr{409, "builder linux is shutting down"}, 409, -32602, "builder linux is shutting down"},
		{"master fails", "force", "application/json", ok, errBoom, 500, -32603, "internal server error"},
		{"master not found", "force", "application/json", ok, fmt.Errorf("lookup: %w", store.ErrNotFound), 404, -32602, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.m.mu.Lock()
			f.m.forceErr = tt.masterErr
			f.m.mu.Unlock()
			st, r := f.rpc(t, "/api/v2/forceschedulers/"+tt.sched, tt.ctype, tt.body)
			if st != tt.status {
				t.Fatalf("status %d, want %d (%+v)", st, tt.status, r.Error)
			}
			if tt.status == 200 {
				return
			}
			if r.Error == nil || r.Error.Code != tt.code || !strings.Contains(r.Error.Message, tt.msg) {
				t.Errorf("error %+v, want code %d and %q", r.Error, tt.code, tt.msg)
			}
			if strings.Contains(r.Error.Message, errBoom.Error()) {
				t.Errorf("internal error leaked: %q", r.Error.Message)
			}
			if r.Result != nil {
				t.Errorf("result %s with an error", r.Result)
			}
		})
	}
}

func TestStopBuild(t *testing.T) {
	f := newFixture(t)
	path := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	st, r := f.rpc(t, path, "application/json", `{"jsonrpc":"2.0","method":"stop","id":3,"params":{"reason":"enough"}}`)
	if st != 200 || r.Error != nil || string(r.Result) != "null" || string(r.ID) != "3" {
		t.Fatalf("status %d, reply %+v", st, r)
	}
	if len(f.m.stopped) != 1 || f.m.stopped[0] != (stopCall{f.running.ID, "enough"}) {
		t.Errorf("master got %+v", f.m.stopped)
	}

	tests := []struct {
		name, path, body string
		masterErr        error
		status, code     int
		msg              string
	}{
		{"unknown build", "/api/v2/builds/4242", `{"jsonrpc":"2.0","method":"stop","id":1}`, nil, 404, -32602, "build 4242 not found"},
		{"bad id", "/api/v2/builds/x", `{"jsonrpc":"2.0","method":"stop","id":1}`, nil, 400, -32602, "build id:"},
		{"unknown method", path, `{"jsonrpc":"2.0","method":"fly","id":1}`, nil, 400, -32601, `method "fly" not found`},
		{"reason not a string", path, `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":5}}`, nil, 400, -32602, "reason: want a string"},
		{"finished", path, `{"jsonrpc":"2.0","method":"stop","id":1}`, statusErr{409, "build is finished"}, 409, -32602, "build is finished"},
		{"master fails", path, `{"jsonrpc":"2.0","method":"stop","id":1}`, errBoom, 500, -32603, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.m.mu.Lock()
			f.m.stopErr = tt.masterErr
			f.m.mu.Unlock()
			st, r := f.rpc(t, tt.path, "application/json", tt.body)
			if st != tt.status || r.Error == nil || r.Error.Code != tt.code || !strings.Contains(r.Error.Message, tt.msg) {
				t.Errorf("status %d, error %+v; want %d, code %d, %q", st, r.Error, tt.status, tt.code, tt.msg)
			}
		})
	}
}

func TestMastersShowsConfigStatus(t *testing.T) {
	f := newFixture(t)
	loaded := time.Unix(1795300000, 0)
	failed := loaded.Add(time.Minute)
	f.m.mu.Lock()
	f.m.config = ConfigStatus{Path: "/srv/master.star", Summary: "1 worker, 1 builder, 1 scheduler", LoadedAt: loaded,
		LastError: "master.star:3:1: builder: unknown worker \"w9\"", LastErrorAt: failed}
	f.m.mu.Unlock()
	var got struct {
		Masters []map[string]any `json:"masters"`
	}
	f.getJSON(t, "/api/v2/masters", &got)
	if len(got.Masters) != 1 {
		t.Fatalf("masters = %v", got.Masters)
	}
	m := got.Masters[0]
	if m["config_file"] != "/srv/master.star" || m["config_loaded_at"] != float64(loaded.Unix()) ||
		m["reconfig_error"] != `master.star:3:1: builder: unknown worker "w9"` || m["reconfig_error_at"] != float64(failed.Unix()) {
		t.Fatalf("master = %v", m)
	}
	f.m.mu.Lock()
	f.m.config.LastError, f.m.config.LastErrorAt = "", time.Time{}
	f.m.mu.Unlock()
	f.getJSON(t, "/api/v2/masters", &got)
	if got.Masters[0]["reconfig_error"] != nil {
		t.Fatalf("reconfig_error = %v, want null", got.Masters[0]["reconfig_error"])
	}
}

func TestGetRequest(t *testing.T) {
	f := newFixture(t)
	var got struct {
		Requests []map[string]any `json:"buildrequests"`
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/buildrequests/%d", f.pending.ID), &got)
	if len(got.Requests) != 1 || got.Requests[0]["buildrequestid"] != float64(f.pending.ID) || got.Requests[0]["complete"] != false {
		t.Fatalf("request = %v", got.Requests)
	}
	for path, want := range map[string]int{"/api/v2/buildrequests/99999": 404, "/api/v2/buildrequests/abc": 400} {
		if st, _, body := f.get(t, path); st != want {
			t.Errorf("%s: status %d, want %d: %s", path, st, want, body)
		}
	}
}
