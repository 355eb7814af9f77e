package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

var changeFields = []string{"changeid", "author", "committer", "comments", "branch", "revision", "revlink",
	"when_timestamp", "category", "repository", "codebase", "project", "files", "properties", "sourcestamp"}

// postChanges POSTs body as JSON and decodes the reply.
func (f *fixture) postChanges(t *testing.T, body string) (int, []map[string]any, string) {
	t.Helper()
	st, _, b := f.do(t, http.MethodPost, "/api/v2/changes", "application/json", body)
	var r struct {
		Changes []map[string]any `json:"changes"`
		Error   string           `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("POST: %v in %s", err, b)
	}
	return st, r.Changes, r.Error
}

func (f *fixture) lastChange(t *testing.T) int64 {
	t.Helper()
	id, err := f.st.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPostChange(t *testing.T) {
	f := newFixture(t)
	st, cs, msg := f.postChanges(t, `{
		"author": "Ann Dev <ann@example.org>",
		"comments": "Fix the frobnicator",
		"branch": "main",
		"revision": "1234abcd",
		"repository": "https://git.example.org/app.git",
		"project": "app",
		"codebase": "app",
		"category": "hotfix",
		"revlink": "https://git.example.org/app/commit/1234abcd",
		"when_timestamp": 1714564800,
		"files": ["src/frob.c", "README"],
		"properties": {"ticket": "T-42", "urgent": true}
	}`)
	if st != http.StatusOK || len(cs) != 1 {
		t.Fatalf("status %d, %d changes, error %q", st, len(cs), msg)
	}
	c := cs[0]
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range c {
			if !yield(k) {
				return
			}
		}
	})
	if want := slices.Sorted(slices.Values(changeFields)); !slices.Equal(keys, want) {
		t.Errorf("fields %q, want %q", keys, want)
	}
	want := map[string]any{
		"author": "Ann Dev <ann@example.org>", "committer": nil, "comments": "Fix the frobnicator",
		"branch": "main", "revision": "1234abcd", "when_timestamp": float64(1714564800),
		"category": "hotfix", "repository": "https://git.example.org/app.git", "codebase": "app", "project": "app",
		"revlink": "https://git.example.org/app/commit/1234abcd",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s: %#v, want %#v", k, c[k], v)
		}
	}
	if got := fmt.Sprint(c["files"]); got != "[src/frob.c README]" {
		t.Errorf("files: %s", got)
	}
	if got := fmt.Sprint(c["properties"]); got != "map[ticket:[T-42 Change] urgent:[true Change]]" {
		t.Errorf("properties: %s", got)
	}
	ss := c["sourcestamp"].(map[string]any)
	if ss["ssid"].(float64) < 1 || ss["branch"] != "main" || ss["revision"] != "1234abcd" || ss["codebase"] != "app" ||
		ss["repository"] != "https://git.example.org/app.git" || ss["project"] != "app" || ss["patch"] != nil {
		t.Errorf("sourcestamp: %v", ss)
	}

	// GET returns the same.
	var got struct{ Changes []map[string]any }
	f.getJSON(t, fmt.Sprintf("/api/v2/changes/%v", c["changeid"]), &got)
	if len(got.Changes) != 1 || fmt.Sprint(got.Changes[0]) != fmt.Sprint(c) {
		t.Errorf("GET: %v\nPOST: %v", got.Changes, c)
	}

	// A minimal change: now, and null for the empty optional strings.
	before := time.Now().Unix()
	st, cs, msg = f.postChanges(t, `{"changes": [{"author": "a"}, {"author": "b", "branch": "dev"}]}`)
	if st != http.StatusOK || len(cs) != 2 {
		t.Fatalf("status %d, %d changes, error %q", st, len(cs), msg)
	}
	if cs[0]["changeid"].(float64) >= cs[1]["changeid"].(float64) {
		t.Errorf("ids not in order: %v, %v", cs[0]["changeid"], cs[1]["changeid"])
	}
	for _, k := range []string{"branch", "revision", "revlink", "category", "committer"} {
		if cs[0][k] != nil {
			t.Errorf("%s: %#v, want null", k, cs[0][k])
		}
	}
	if w := int64(cs[0]["when_timestamp"].(float64)); w < before || w > time.Now().Unix() {
		t.Errorf("when_timestamp %d, want now", w)
	}
	if fmt.Sprint(cs[0]["files"]) != "[]" || fmt.Sprint(cs[0]["properties"]) != "map[]" {
		t.Errorf("files %v properties %v, want empty", cs[0]["files"], cs[0]["properties"])
	}
	if n := f.m.addCalls(); n != 2 {
		t.Errorf("AddChanges called %d times, want once per POST", n)
	}
}

func TestPostChangeErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, ct, body string
		status         int
		want           string
	}{
		{"no content type", "", `{"author": "a"}`, 415, "Content-Type: want application/json"},
		{"form", "application/x-www-form-urlencoded", `author=a`, 415, "Content-Type: want application/json"},
		{"broken JSON", "application/json", `{"author": "a"`, 400, "invalid JSON"},
		{"array", "application/json", `[{"author": "a"}]`, 400, "invalid JSON"},
		{"no author", "application/json", `{"comments": "x"}`, 400, "author: missing or empty"},
		{"blank author", "application/json", `{"author": "  "}`, 400, "author: missing or empty"},
		{"unknown field", "application/json", `{"author": "a", "brnach": "main"}`, 400, `change: unknown field "brnach"`},
		{"files not a list", "application/json", `{"author": "a", "files": "x.c"}`, 400, "change.files: want a list, got string"},
		{"empty file", "application/json", `{"author": "a", "files": ["x.c", ""]}`, 400, "files[1]: empty file name"},
		{"property name", "application/json", `{"author": "a", "properties": {"": 1}}`, 400, "properties: empty property name"},
		{"negative when", "application/json", `{"author": "a", "when_timestamp": -1}`, 400, "when_timestamp: want unix seconds, got -1"},
		{"when as string", "application/json", `{"author": "a", "when_timestamp": "now"}`, 400, "change.when_timestamp: want a number, got string"},
		{"second change bad", "application/json", `{"changes": [{"author": "a"}, {"who": "b"}]}`, 400, `changes[1]: unknown field "who"`},
		{"second change no author", "application/json", `{"changes": [{"author": "a"}, {"branch": "b"}]}`, 400, "changes[1].author: missing or empty"},
		{"element not object", "application/json", `{"changes": [{"author": "a"}, 5]}`, 400, "changes[1]: want an object, got number"},
		{"changes not list", "application/json", `{"changes": {"author": "a"}}`, 400, "changes: want a list"},
		{"empty list", "application/json", `{"changes": []}`, 400, "changes: empty list"},
		{"changes and more", "application/json", `{"changes": [{"author": "a"}], "author": "b"}`, 400, `"changes" must have no other field`},
		{"too many", "application/json", `{"changes": [` + strings.Repeat(`{"author": "a"},`, maxPostChanges) + `{"author": "a"}]}`, 400, "at most 1000 at once"},
		{"too big", "application/json", `{"author": "` + strings.Repeat("x", maxChangesBody) + `"}`, 413, "request body larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, b := f.do(t, http.MethodPost, "/api/v2/changes", tt.ct, tt.body)
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%v in %.200s", err, b)
			}
			if st != tt.status || !strings.Contains(e.Error, tt.want) {
				t.Errorf("status %d error %q, want %d and %q", st, e.Error, tt.status, tt.want)
			}
		})
	}
	if id, n := f.lastChange(t), f.m.addCalls(); id != 0 || n != 0 {
		t.Errorf("last change %d, %d AddChanges calls; want nothing stored", id, n)
	}
}

func TestListChanges(t *testing.T) {
	f := newFixture(t)
	var ids []int64
	for i := range 5 {
		cs, err := f.st.AddChanges(context.Background(), []store.Change{{Author: fmt.Sprintf("dev%d", i), Revision: fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cs[0].ID)
	}
	page := func(q string) []int64 {
		var r struct {
			Changes []changeJSON
			Meta    meta
		}
		f.getJSON(t, "/api/v2/changes"+q, &r)
		if r.Meta.Total != len(r.Changes) {
			t.Errorf("%s: meta.total %d for %d changes", q, r.Meta.Total, len(r.Changes))
		}
		var out []int64
		for _, c := range r.Changes {
			out = append(out, c.ChangeID)
		}
		return out
	}
	if got := page(""); !slices.Equal(got, []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}) {
		t.Errorf("all: %v", got)
	}
	if got := page("?limit=2"); !slices.Equal(got, []int64{ids[4], ids[3]}) {
		t.Errorf("limit=2: %v", got)
	}
	if got := page(fmt.Sprintf("?limit=2&before=%d", ids[3])); !slices.Equal(got, []int64{ids[2], ids[1]}) {
		t.Errorf("second page: %v", got)
	}
	if got := page(fmt.Sprintf("?before=%d", ids[0])); len(got) != 0 {
		t.Errorf("past the end: %v", got)
	}
	for path, want := range map[string]int{
		"/api/v2/changes?limit=0":    400,
		"/api/v2/changes?before=x":   400,
		"/api/v2/changes/999":        404,
		"/api/v2/changes/abc":        400,
		"/api/v2/builds/999/changes": 404,
	} {
		if st, _, b := f.get(t, path); st != want {
			t.Errorf("GET %s: %d %s, want %d", path, st, b, want)
		}
	}
}

func TestBuildChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cs, err := f.st.AddChanges(ctx, []store.Change{
		{Author: "a", Revision: "r1", Branch: "main"},
		{Author: "b", Revision: "r2", Branch: "main"},
		{Author: "c", Revision: "r3", Branch: "other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{Reason: "changes", BuilderIDs: []int64{f.empty},
		ChangeIDs: []int64{cs[1].ID, cs[0].ID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.ClaimRequest(ctx, reqs[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.empty, RequestID: reqs[0].ID, WorkerID: f.w1, StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Changes []changeJSON }
	f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/changes", b.ID), &r)
	var revs []string
	for _, c := range r.Changes {
		revs = append(revs, *c.Revision)
	}
	if !slices.Equal(revs, []string{"r1", "r2"}) {
		t.Errorf("changes of the build: %q, want r1, r2", revs)
	}
	// A build without changes has an empty list.
	var none struct{ Changes []changeJSON }
	f.getJSON(t, fmt.Sprintf("/api/v2/builds/%d/changes", f.running.ID), &none)
	if none.Changes == nil || len(none.Changes) != 0 {
		t.Errorf("changes of a forced build: %v, want []", none.Changes)
	}
}

// TestChangeHookMount checks that Options.ChangeHook serves /change_hook/
// and nothing else, and that without it the path is an ordinary 404 page.
func TestChangeHookMount(t *testing.T) {
	st := openStore(t)
	var paths []string
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(New(&fakeMaster{st: st}, Options{ChangeHook: hook}).Handler())
	defer srv.Close()
	for _, p := range []string{"/change_hook/github", "/change_hook/poller?poller=x"} {
		resp, err := srv.Client().Post(srv.URL+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Errorf("POST %s: %d, want the hook's 418", p, resp.StatusCode)
		}
	}
	sort.Strings(paths)
	if want := []string{"POST /change_hook/github", "POST /change_hook/poller"}; !slices.Equal(paths, want) {
		t.Errorf("hook saw %q, want %q", paths, want)
	}

	bare := httptest.NewServer(New(&fakeMaster{st: st}, Options{}).Handler())
	defer bare.Close()
	resp, err := bare.Client().Post(bare.URL+"/change_hook/github", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a hook: %d, want 404", resp.StatusCode)
	}
}
