package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// queryFixture is the fixture with changes, source stamps and a triggered
// buildset added, so every collection has something to filter.
type queryFixture struct {
	*fixture
	changes []store.Change
	child   store.Buildset // triggered by finished[0], building changes[1]
	sets    []int64        // every buildset id, ascending
}

func newQueryFixture(t *testing.T) *queryFixture {
	t.Helper()
	ctx := context.Background()
	f := &queryFixture{fixture: newFixture(t)}
	var err error
	f.changes, err = f.st.AddChanges(ctx, []store.Change{
		{Author: "Ada <ada@example.org>", Branch: "main", Revision: "aaa111", Files: []string{"a.c", "b.c"}, Comments: "Fix a"},
		{Author: "Bob <bob@example.org>", Branch: "dev", Revision: "bbb222", Files: []string{"b.c"}, Comments: "Speed up b"},
		{Author: "Ada <ada@example.org>", Branch: "dev", Revision: "ccc333", Files: []string{"c.c"}, Comments: "Add c",
			Properties: map[string]store.Property{"ticket": {Value: "T-1", Source: "Change"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.child, _, err = f.st.AddBuildset(ctx, store.NewBuildset{Reason: "deploy it", BuilderIDs: []int64{f.empty},
		SourceStamps: []store.SourceStamp{{Branch: "dev", Revision: "bbb222"}}, ChangeIDs: []int64{f.changes[1].ID},
		ParentBuildID: f.finished[0].ID, ParentRelationship: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	sets, err := f.st.ListBuildsets(ctx, store.BuildsetFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range sets {
		f.sets = append(f.sets, bs.ID)
	}
	slices.Sort(f.sets)
	return f
}

// idFields names the id field of each collection.
var idFields = map[string]string{
	"builders": "builderid", "builds": "buildid", "steps": "stepid", "logs": "logid", "workers": "workerid",
	"buildrequests": "buildrequestid", "buildsets": "bsid", "changes": "changeid", "sourcestamps": "ssid",
	"schedulers": "name", "forceschedulers": "name", "changesources": "name",
}

// listReply is a decoded list reply.
type listReply struct {
	items []map[string]json.RawMessage
	meta  listMeta
}

// getList GETs path, expects 200, and returns its items and meta.
func (f *queryFixture) getList(t *testing.T, path string) listReply {
	t.Helper()
	st, _, body := f.get(t, path)
	if st != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, st, body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var r listReply
	if err := json.Unmarshal(top["meta"], &r.meta); err != nil {
		t.Fatalf("GET %s: meta: %v", path, err)
	}
	delete(top, "meta")
	if len(top) != 1 {
		t.Fatalf("GET %s: keys %v", path, slices.Collect(maps.Keys(top)))
	}
	for _, raw := range top {
		if err := json.Unmarshal(raw, &r.items); err != nil || r.items == nil {
			t.Fatalf("GET %s: not a list: %s", path, raw)
		}
	}
	if r.meta.Total != len(r.items) {
		t.Errorf("GET %s: meta.total %d for %d items", path, r.meta.Total, len(r.items))
	}
	return r
}

// keys returns the value of field of each item, as JSON text.
func (r listReply) keys(field string) []string {
	out := make([]string, len(r.items))
	for i, it := range r.items {
		out[i] = string(it[field])
	}
	return out
}

func ids(vs ...int64) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprint(v)
	}
	return out
}

func quoted(vs ...string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		b, _ := json.Marshal(v)
		out[i] = string(b)
	}
	return out
}

func reversed(vs []string) []string {
	out := slices.Clone(vs)
	slices.Reverse(out)
	return out
}

// TestListQueries runs filters, orders, pages and field selections on
// every collection and checks exactly which items come back, in order.
func TestListQueries(t *testing.T) {
	f := newQueryFixture(t)
	fin := f.finished // linux: SUCCESS, FAILURE, WARNINGS
	run := f.running
	allBuilds := ids(run.ID, run.ID-1, fin[2].ID, fin[1].ID, fin[0].ID) // newest first: running, xss, finished
	xssBuild := run.ID - 1
	ts := func(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64) }
	c := f.changes
	reqs, err := f.st.ListRequests(context.Background(), store.RequestFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var allReqs []string
	for _, r := range reqs {
		allReqs = append(allReqs, fmt.Sprint(r.ID))
	}
	childReq := reqs[0].ID
	q := url.QueryEscape

	tests := []struct {
		path string
		want []string // the id field's values, in order
	}{
		// builders: small, filtered and ordered here.
		// The store lists builders by name: "<script>..." sorts first.
		{"/api/v2/builders", ids(f.xss, f.empty, f.linux)},
		{"/api/v2/builders?name=linux", ids(f.linux)},
		{"/api/v2/builders?name__eq=linux&name__eq=empty", ids(f.empty, f.linux)},
		{"/api/v2/builders?name=linux&name=empty", ids(f.empty, f.linux)},
		{"/api/v2/builders?name__ne=linux", ids(f.xss, f.empty)},
		{"/api/v2/builders?name__ne=linux&name__ne=empty", ids(f.xss)},
		{"/api/v2/builders?name__in=empty&name__in=nope", ids(f.empty)},
		{"/api/v2/builders?name__notin=empty&name__notin=linux", ids(f.xss)},
		{"/api/v2/builders?name__contains=nu", ids(f.linux)},
		{"/api/v2/builders?name__contains=nu&name__contains=mp", ids(f.empty, f.linux)},
		{"/api/v2/builders?name__gt=e", ids(f.empty, f.linux)},
		{"/api/v2/builders?name__ge=linux", ids(f.linux)},
		{"/api/v2/builders?name__lt=empty", ids(f.xss)},
		{"/api/v2/builders?name__le=empty", ids(f.xss, f.empty)},
		{"/api/v2/builders?tags__contains=tier1", ids(f.linux)},
		{"/api/v2/builders?tags__contains=nope&tags__contains=amd64", ids(f.linux)},
		{"/api/v2/builders?tags__contains=nope", nil},
		{"/api/v2/builders?description=Builds+on+Linux", ids(f.linux)},
		{"/api/v2/builders?description__contains=bold", ids(f.xss)},
		{fmt.Sprintf("/api/v2/builders?builderid=%d", f.xss), ids(f.xss)},
		{fmt.Sprintf("/api/v2/builders?builderid__gt=%d", f.linux), ids(f.xss, f.empty)},
		{"/api/v2/builders?order=builderid", ids(f.linux, f.xss, f.empty)},
		{"/api/v2/builders?order=name", ids(f.xss, f.empty, f.linux)},
		{"/api/v2/builders?order=-name", ids(f.linux, f.empty, f.xss)},
		{"/api/v2/builders?order=-builderid", ids(f.empty, f.xss, f.linux)},
		{"/api/v2/builders?order=-name&limit=2", ids(f.linux, f.empty)},
		{"/api/v2/builders?order=-name&limit=2&offset=1", ids(f.empty, f.xss)},
		{"/api/v2/builders?offset=2", ids(f.linux)},
		{"/api/v2/builders?offset=5", nil},
		{"/api/v2/builders?order=-name&name__ne=linux", ids(f.empty, f.xss)},
		// null descriptions sort first; equal keys keep their order.
		{"/api/v2/builders?order=description,-builderid", ids(f.empty, f.xss, f.linux)},

		// builds: large, read in keyset pages.
		{"/api/v2/builds", allBuilds},
		{"/api/v2/builds?order=buildid", reversed(allBuilds)},
		{"/api/v2/builds?order=-buildid", allBuilds},
		{"/api/v2/builds?results=2", ids(fin[1].ID)},
		{"/api/v2/builds?results__ne=0", ids(run.ID, xssBuild, fin[2].ID, fin[1].ID)},
		{"/api/v2/builds?results__gt=0", ids(xssBuild, fin[2].ID, fin[1].ID)},
		{"/api/v2/builds?results__le=1", ids(fin[2].ID, fin[0].ID)},
		{"/api/v2/builds?results=1&results=4", ids(xssBuild, fin[2].ID)},
		{"/api/v2/builds?complete=false", ids(run.ID)},
		{"/api/v2/builds?complete=0", ids(run.ID)},
		{"/api/v2/builds?complete=true", ids(xssBuild, fin[2].ID, fin[1].ID, fin[0].ID)},
		{"/api/v2/builds?running=1&complete=false", ids(run.ID)},
		{"/api/v2/builds?running=1&complete=true", nil},
		{fmt.Sprintf("/api/v2/builds?buildid=%d", fin[1].ID), ids(fin[1].ID)},
		{fmt.Sprintf("/api/v2/builds?buildid=%d&buildid=%d", fin[1].ID, run.ID), ids(run.ID, fin[1].ID)},
		{fmt.Sprintf("/api/v2/builds?buildid__lt=%d", fin[2].ID), ids(fin[1].ID, fin[0].ID)},
		{fmt.Sprintf("/api/v2/builds?buildid__le=%d", fin[2].ID), ids(fin[2].ID, fin[1].ID, fin[0].ID)},
		{fmt.Sprintf("/api/v2/builds?buildid__gt=%d&order=buildid", fin[1].ID), ids(fin[2].ID, xssBuild, run.ID)},
		{fmt.Sprintf("/api/v2/builds?buildid__ge=%d&buildid__lt=%d&order=buildid", fin[1].ID, run.ID), ids(fin[1].ID, fin[2].ID, xssBuild)},
		{fmt.Sprintf("/api/v2/builds?buildid__ne=%d", run.ID), allBuilds[1:]},
		{fmt.Sprintf("/api/v2/builds?before=%d&buildid__lt=%d", run.ID, fin[2].ID), ids(fin[1].ID, fin[0].ID)},
		{fmt.Sprintf("/api/v2/builds?builderid=%d", f.linux), ids(run.ID, fin[2].ID, fin[1].ID, fin[0].ID)},
		{fmt.Sprintf("/api/v2/builds?builderid=%d&order=number", f.linux), ids(fin[0].ID, fin[1].ID, fin[2].ID, run.ID)},
		{fmt.Sprintf("/api/v2/builds?builderid=%d&order=-number&limit=1", f.linux), ids(run.ID)},
		{fmt.Sprintf("/api/v2/builds?builderid=%d&builderid=%d", f.linux, f.xss), allBuilds},
		{fmt.Sprintf("/api/v2/builds?builderid__ne=%d", f.linux), ids(xssBuild)},
		{"/api/v2/builds?builder_name=linux&number__ge=3", ids(run.ID, fin[2].ID)},
		{"/api/v2/builds?builder_name__contains=script", ids(xssBuild)},
		{"/api/v2/builds?state_string__contains=build+" + q("f"), ids(fin[1].ID)},
		{fmt.Sprintf("/api/v2/builds?workerid=%d&complete=true&limit=2", f.w1), ids(xssBuild, fin[2].ID)},
		{fmt.Sprintf("/api/v2/builds?buildrequestid=%d", fin[0].RequestID), ids(fin[0].ID)},
		{fmt.Sprintf("/api/v2/builds?buildsetid=%d", fin[0].BuildsetID), ids(fin[0].ID)},
		{"/api/v2/builds?started_at__gt=" + ts(fin[0].StartedAt), ids(run.ID, fin[2].ID, fin[1].ID)},
		{"/api/v2/builds?started_at__le=" + ts(fin[1].StartedAt) + "&order=buildid", ids(fin[0].ID, fin[1].ID, xssBuild)},
		{"/api/v2/builds?complete_at__gt=0", ids(xssBuild, fin[2].ID, fin[1].ID, fin[0].ID)},
		{"/api/v2/builds?limit=2&offset=1", ids(run.ID-1, fin[2].ID)},
		{"/api/v2/builds?complete=true&offset=3", ids(fin[0].ID)},
		{"/api/v2/builds?offset=10000", nil},
		{fmt.Sprintf("/api/v2/builders/%d/builds?results=0", f.linux), ids(fin[0].ID)},
		{fmt.Sprintf("/api/v2/builders/%d/builds?order=number&limit=2", f.linux), ids(fin[0].ID, fin[1].ID)},
		{fmt.Sprintf("/api/v2/builders/linux/builds?builderid=%d", f.xss), nil},
		{fmt.Sprintf("/api/v2/builders/linux/builds?builderid=%d", f.linux), ids(run.ID, fin[2].ID, fin[1].ID, fin[0].ID)},

		// steps and logs: small, per build and step.
		{fmt.Sprintf("/api/v2/builds/%d/steps?hidden=false", run.ID), ids(f.doneStep.ID, f.runStep.ID)},
		{fmt.Sprintf("/api/v2/builds/%d/steps?order=-number&limit=2", run.ID), ids(f.runStep.ID+1, f.runStep.ID)},
		{fmt.Sprintf("/api/v2/builds/%d/steps?name__contains=t&complete=false", run.ID), ids(f.runStep.ID, f.runStep.ID+1)},
		{fmt.Sprintf("/api/v2/builds/%d/steps?results=0", run.ID), ids(f.doneStep.ID)},
		{fmt.Sprintf("/api/v2/steps/%d/logs?type=s&complete=true", f.doneStep.ID), ids(f.doneLog.ID)},
		{fmt.Sprintf("/api/v2/steps/%d/logs?num_lines__gt=6", f.doneStep.ID), nil},

		// workers: small, with the live state merged before filtering.
		{"/api/v2/workers?paused=true", ids(f.w2)},
		{"/api/v2/workers?connected=true", ids(f.w1)},
		{"/api/v2/workers?order=-name", ids(f.w2, f.w1)},
		{fmt.Sprintf("/api/v2/workers?running_builds__contains=%d", run.ID), ids(f.w1)},
		{"/api/v2/workers?pause_reason__contains=owner", ids(f.w2)},
		{"/api/v2/workers?last_connected__gt=0", ids(f.w1)},

		// build requests: large.
		{"/api/v2/buildrequests", allReqs},
		{"/api/v2/buildrequests?order=buildrequestid", reversed(allReqs)},
		{"/api/v2/buildrequests?pending=1", ids(childReq, f.pending.ID)},
		{"/api/v2/buildrequests?claimed=false", ids(childReq, f.pending.ID)},
		{fmt.Sprintf("/api/v2/buildrequests?claimed=false&builderid=%d", f.linux), ids(f.pending.ID)},
		{fmt.Sprintf("/api/v2/buildrequests?buildsetid=%d", f.child.ID), ids(childReq)},
		{"/api/v2/buildrequests?waiting_reason__contains=no+worker", ids(f.pending.ID)},
		{fmt.Sprintf("/api/v2/buildrequests?builderid=%d&claimed=true&order=buildrequestid&limit=1", f.linux), ids(fin[0].RequestID)},

		// buildsets: large.
		{fmt.Sprintf("/api/v2/buildsets?parent_buildid=%d", fin[0].ID), ids(f.child.ID)},
		{"/api/v2/buildsets?reason__contains=deploy", ids(f.child.ID)},
		{"/api/v2/buildsets?order=bsid&limit=2", ids(f.sets[0], f.sets[1])},
		{fmt.Sprintf("/api/v2/buildsets?bsid__ge=%d", f.sets[len(f.sets)-2]), ids(f.sets[len(f.sets)-1], f.sets[len(f.sets)-2])},

		// changes: large.
		{"/api/v2/changes", ids(c[2].ID, c[1].ID, c[0].ID)},
		{"/api/v2/changes?order=changeid", ids(c[0].ID, c[1].ID, c[2].ID)},
		{"/api/v2/changes?author__contains=ada", ids(c[2].ID, c[0].ID)},
		{"/api/v2/changes?branch=dev&order=changeid", ids(c[1].ID, c[2].ID)},
		{"/api/v2/changes?files__contains=b.c", ids(c[1].ID, c[0].ID)},
		{"/api/v2/changes?revision=ccc333", ids(c[2].ID)},
		{fmt.Sprintf("/api/v2/changes?changeid__lt=%d", c[2].ID), ids(c[1].ID, c[0].ID)},
		{"/api/v2/changes?comments__contains=b&limit=1", ids(c[1].ID)},
		{fmt.Sprintf("/api/v2/builds/%d/changes?author__contains=bob", fin[0].ID), nil},

		// source stamps: large.
		{"/api/v2/sourcestamps?revision=bbb222", ids(c[1].SourceStampID)},
		{"/api/v2/sourcestamps?branch=dev&order=ssid", ids(c[1].SourceStampID, c[2].SourceStampID)},
		{"/api/v2/sourcestamps?revision__contains=3", ids(c[2].SourceStampID)},

		// schedulers: small, from the master.
		{"/api/v2/forceschedulers?name=other", quoted("other")},
		{"/api/v2/forceschedulers?builder_names__contains=linux", quoted("force")},
		{"/api/v2/forceschedulers?order=-name", quoted("other", "force")},
		{"/api/v2/forceschedulers?label__contains=build", quoted("force")},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			coll := strings.Split(strings.TrimPrefix(tt.path, "/api/v2/"), "?")[0]
			parts := strings.Split(coll, "/")
			field := idFields[parts[len(parts)-1]]
			r := f.getList(t, tt.path)
			if got := r.keys(field); !slices.Equal(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
				t.Errorf("%s: got %v, want %v", field, got, tt.want)
			}
			if r.meta.Truncated {
				t.Errorf("truncated: %+v", r.meta)
			}
		})
	}
}

// TestListFields checks field= on lists and single items: exactly the
// fields asked for, with their values as without field=.
func TestListFields(t *testing.T) {
	f := newQueryFixture(t)
	run := f.running
	tests := []struct {
		path   string
		fields []string
	}{
		{"/api/v2/builders?field=name", []string{"name"}},
		{"/api/v2/builders?field=name&field=tags", []string{"name", "tags"}},
		{"/api/v2/builders?field=name,builderid&field=name", []string{"builderid", "name"}},
		{"/api/v2/builds?field=buildid,results,started_at&limit=3", []string{"buildid", "results", "started_at"}},
		{"/api/v2/builds?field=properties&property=branch", []string{"properties"}},
		{fmt.Sprintf("/api/v2/builds/%d?field=number", run.ID), []string{"number"}},
		{fmt.Sprintf("/api/v2/builders/linux/builds/%d?field=number&field=complete", run.Number), []string{"complete", "number"}},
		{"/api/v2/builders/linux?field=tags", []string{"tags"}},
		{"/api/v2/workers?field=workerinfo", []string{"workerinfo"}},
		{"/api/v2/buildrequests?field=waiting_reason&pending=1", []string{"waiting_reason"}},
		{fmt.Sprintf("/api/v2/buildrequests/%d?field=claimed", f.pending.ID), []string{"claimed"}},
		{"/api/v2/buildsets?field=sourcestamps", []string{"sourcestamps"}},
		{fmt.Sprintf("/api/v2/buildsets/%d?field=reason", f.child.ID), []string{"reason"}},
		{"/api/v2/changes?field=files,sourcestamp", []string{"files", "sourcestamp"}},
		{fmt.Sprintf("/api/v2/changes/%d?field=author", f.changes[0].ID), []string{"author"}},
		{"/api/v2/sourcestamps?field=created_at", []string{"created_at"}},
		{fmt.Sprintf("/api/v2/sourcestamps/%d?field=revision", f.changes[0].SourceStampID), []string{"revision"}},
		{fmt.Sprintf("/api/v2/builds/%d/steps?field=name", run.ID), []string{"name"}},
		{fmt.Sprintf("/api/v2/steps/%d/logs?field=slug", f.doneStep.ID), []string{"slug"}},
		{fmt.Sprintf("/api/v2/logs/%d?field=num_lines", f.doneLog.ID), []string{"num_lines"}},
		{"/api/v2/schedulers?field=name", []string{"name"}},
		{"/api/v2/forceschedulers?field=all_fields", []string{"all_fields"}},
		{"/api/v2/changesources?field=name", []string{"name"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := f.getList(t, tt.path)
			full := f.getList(t, fieldless(tt.path))
			if len(r.items) != len(full.items) {
				t.Fatalf("%d items, %d without field=", len(r.items), len(full.items))
			}
			for i, it := range r.items {
				if got := slices.Sorted(maps.Keys(it)); !slices.Equal(got, tt.fields) {
					t.Errorf("item %d fields %v, want %v", i, got, tt.fields)
				}
				for k, v := range it {
					if string(full.items[i][k]) != string(v) {
						t.Errorf("item %d %s = %s, without field= %s", i, k, v, full.items[i][k])
					}
				}
			}
		})
	}
}

// fieldless is path without its field= parameters.
func fieldless(path string) string {
	p, query, _ := strings.Cut(path, "?")
	v, _ := url.ParseQuery(query)
	v.Del("field")
	if len(v) == 0 {
		return p
	}
	return p + "?" + v.Encode()
}

func TestListProperties(t *testing.T) {
	f := newQueryFixture(t)
	type reply struct {
		Builds []struct {
			BuildID    int64             `json:"buildid"`
			Properties map[string][2]any `json:"properties"`
		}
	}
	var got reply
	f.getJSON(t, fmt.Sprintf("/api/v2/builds?property=branch&buildid=%d", f.running.ID), &got)
	if len(got.Builds) != 1 || fmt.Sprint(got.Builds[0].Properties) != "map[branch:[main Scheduler]]" {
		t.Errorf("property=branch: %+v", got.Builds)
	}
	got = reply{}
	f.getJSON(t, fmt.Sprintf("/api/v2/builds?property=*&buildid=%d", f.running.ID), &got)
	if len(got.Builds) != 1 || len(got.Builds[0].Properties) != 2 {
		t.Errorf("property=*: %+v", got.Builds)
	}
	got = reply{}
	f.getJSON(t, "/api/v2/builds?limit=2", &got)
	for _, b := range got.Builds {
		if len(b.Properties) != 0 {
			t.Errorf("without property=, build %d has %v", b.BuildID, b.Properties)
		}
	}
}

// TestListScanCap checks the bound on rows read for filters applied in Go:
// past it the reply says it is truncated and where to resume, and
// resuming there finds the rest.
func TestListScanCap(t *testing.T) {
	f := newQueryFixture(t)
	testScanCap = 2
	t.Cleanup(func() { testScanCap = 0 })
	fin := f.finished
	// Newest first: running, xss, fin[2], fin[1], fin[0]; SUCCESS is fin[0].
	// (The cap is at least offset+limit: limit=1 lets it be 2.)
	r := f.getList(t, "/api/v2/builds?results=0&limit=1")
	if len(r.items) != 0 || !r.meta.Truncated || r.meta.Resume != f.running.ID-1 {
		t.Fatalf("first page: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	r = f.getList(t, fmt.Sprintf("/api/v2/builds?results=0&limit=1&before=%d", r.meta.Resume))
	if len(r.items) != 0 || !r.meta.Truncated || r.meta.Resume != fin[1].ID {
		t.Fatalf("second page: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	r = f.getList(t, fmt.Sprintf("/api/v2/builds?results=0&limit=1&buildid__lt=%d", r.meta.Resume))
	if got := r.keys("buildid"); !slices.Equal(got, ids(fin[0].ID)) || r.meta.Truncated {
		t.Fatalf("third page: %v, meta %+v", got, r.meta)
	}
	// Oldest first resumes with __gt.
	r = f.getList(t, "/api/v2/builds?results=4&order=buildid&limit=1")
	if len(r.items) != 0 || !r.meta.Truncated || r.meta.Resume != fin[1].ID {
		t.Fatalf("ascending: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	// A page that fills up before the cap is not truncated, and SQL
	// filters alone never are.
	if r := f.getList(t, "/api/v2/builds?complete=true&limit=1"); len(r.items) != 1 || r.meta.Truncated {
		t.Errorf("limit=1: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	if r := f.getList(t, fmt.Sprintf("/api/v2/builds?builderid=%d", f.linux)); len(r.items) != 4 || r.meta.Truncated {
		t.Errorf("SQL filter: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	// The cap grows to offset+limit rows, but rows the filters refuse
	// count too.
	if r := f.getList(t, "/api/v2/builds?complete=true&offset=3&limit=1"); len(r.items) != 0 || !r.meta.Truncated || r.meta.Resume != fin[1].ID {
		t.Errorf("offset=3: %v, meta %+v", r.keys("buildid"), r.meta)
	}
	// Reading the last row is not a truncation.
	if r := f.getList(t, "/api/v2/builds?complete=true&offset=1&limit=4"); !slices.Equal(r.keys("buildid"), ids(fin[2].ID, fin[1].ID, fin[0].ID)) || r.meta.Truncated {
		t.Errorf("offset=1: %v, meta %+v", r.keys("buildid"), r.meta)
	}
}

// TestListQueryErrors checks that every bad query is refused with a 400
// whose message names the parameter and says what is wrong.
func TestListQueryErrors(t *testing.T) {
	f := newQueryFixture(t)
	tests := []struct {
		path string
		msg  string // the start of the error message
	}{
		{"/api/v2/builders?nope=1", `nope: unknown query parameter: builders have no field "nope" (fields: builderid, name, description, tags; other parameters: field, order, limit, offset)`},
		{"/api/v2/builders?name__like=x", `name__like: unknown operator "like" (operators: eq, ne, lt, le, gt, ge, contains, in, notin)`},
		{"/api/v2/builders?nope__eq=x", `nope__eq: builders have no field "nope"`},
		{"/api/v2/builders?tags=x", `tags: tags is a list: the only operator for it is contains`},
		{"/api/v2/builders?tags__lt=x", `tags__lt: tags is a list`},
		{"/api/v2/builders?builderid=x", `builderid: want a positive integer, got "x"`},
		{"/api/v2/builders?builderid__gt=-3", `builderid__gt: want a positive integer, got "-3"`},
		{"/api/v2/builders?builderid__lt=1&builderid__lt=2", `builderid__lt: given 2 times; lt takes one value`},
		{"/api/v2/builders?builderid__contains=1", `builderid__contains: contains needs a string or list field; builderid is not one`},
		{"/api/v2/builders?field=nope", `field: builders have no field "nope"`},
		{"/api/v2/builders?field=name,nope", `field: builders have no field "nope"`},
		{"/api/v2/builders?order=nope", `order: builders have no field "nope"`},
		{"/api/v2/builders?order=-nope", `order: builders have no field "nope"`},
		{"/api/v2/builders?order=tags", `order: tags cannot be ordered by`},
		{"/api/v2/builders?limit=0", `limit: want an integer from 1 to 1000, got "0"`},
		{"/api/v2/builders?limit=1&limit=2", `limit: given 2 times`},
		{"/api/v2/builders?offset=-1", `offset: want a non-negative integer, got "-1"`},
		{"/api/v2/builders?offset=x", `offset: want a non-negative integer, got "x"`},
		{"/api/v2/builders?offset=1&offset=1", `offset: given 2 times`},
		{"/api/v2/builds?results=x", `results: want an integer, got "x"`},
		{"/api/v2/builds?results__ge=1.5", `results__ge: want an integer, got "1.5"`},
		{"/api/v2/builds?started_at__gt=yesterday", `started_at__gt: want a number, got "yesterday"`},
		{"/api/v2/builds?started_at__gt=NaN", `started_at__gt: want a number, got "NaN"`},
		{"/api/v2/builds?complete=maybe", `complete: want true or false, got "maybe"`},
		{"/api/v2/builds?complete__lt=true", `complete__lt: complete is true or false: use eq or ne`},
		{"/api/v2/builds?properties=x", `properties: properties cannot be filtered on`},
		{"/api/v2/builds?order=started_at", `order: builds can be ordered by buildid or -buildid only, not started_at`},
		{"/api/v2/builds?order=number", `order: builds can be ordered by buildid or -buildid only, not number`},
		{"/api/v2/builds?order=buildid,number", `order: builds can be ordered by one key only`},
		{"/api/v2/builds?offset=10001", `offset: want at most 10000 on builds, got 10001`},
		{"/api/v2/builds?before=0", `before: want a positive integer, got "0"`},
		{"/api/v2/builds?running=2", `running: want 1, 0, true or false, got "2"`},
		{"/api/v2/builds?field=nope", `field: builds have no field "nope"`},
		{"/api/v2/builds?pending=1", `pending: unknown query parameter`},
		{"/api/v2/builds/1?limit=1", `limit: a single item takes field= only`},
		{"/api/v2/builds/1?results=1", `results: a single item takes field= only`},
		{"/api/v2/builds/1?field=nope", `field: builds have no field "nope"`},
		{"/api/v2/builders/linux?order=name", `order: a single item takes field= only`},
		{"/api/v2/builders/linux/builds?order=started_at", `order: builds can be ordered by buildid or -buildid only`},
		{"/api/v2/builders/linux/builds/1?nope=1", `nope: unknown query parameter`},
		{"/api/v2/buildrequests?pending=x", `pending: want 1, 0, true or false, got "x"`},
		{"/api/v2/buildrequests?order=-priority", `order: buildrequests can be ordered by buildrequestid or -buildrequestid only`},
		{"/api/v2/buildrequests?buildsetid=0", `buildsetid: want a positive integer, got "0"`},
		{"/api/v2/buildsets?sourcestamps=x", `sourcestamps: sourcestamps cannot be filtered on`},
		{"/api/v2/buildsets?parent_buildid=-1", `parent_buildid: want a positive integer, got "-1"`},
		{"/api/v2/changes?when_timestamp__gt=x", `when_timestamp__gt: want an integer, got "x"`},
		{"/api/v2/changes?sourcestamp=1", `sourcestamp: sourcestamp cannot be filtered on`},
		{"/api/v2/changes?order=author", `order: changes can be ordered by changeid or -changeid only`},
		{"/api/v2/sourcestamps?patch=1", `patch: patch cannot be filtered on`},
		{"/api/v2/sourcestamps?ssid=x", `ssid: want a positive integer, got "x"`},
		{"/api/v2/sourcestamps/x", `source stamp id: want a positive integer, got "x"`},
		{"/api/v2/workers?workerinfo=x", `workerinfo: workerinfo cannot be filtered on`},
		{"/api/v2/workers?connected_to=1", `connected_to: connected_to cannot be filtered on`},
		{"/api/v2/workers?running_builds__contains=x", `running_builds__contains: want an integer, got "x"`},
		{"/api/v2/schedulers?nope=1", `nope: unknown query parameter`},
		{"/api/v2/forceschedulers?all_fields=1", `all_fields: all_fields cannot be filtered on`},
		{"/api/v2/changesources?refs=1", `refs: refs cannot be filtered on`},
		{fmt.Sprintf("/api/v2/builds/%d/steps?urls=1", f.running.ID), `urls: urls cannot be filtered on`},
		{fmt.Sprintf("/api/v2/steps/%d/logs?num_lines=x", f.doneStep.ID), `num_lines: want an integer, got "x"`},
		{fmt.Sprintf("/api/v2/logs/%d?first=1", f.doneLog.ID), `first: unknown query parameter`},
		// The first bad parameter in name order is the one reported.
		{"/api/v2/builds?zz=1&aa=1", `aa: unknown query parameter`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st, h, body := f.get(t, tt.path)
			if st != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", st, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if !strings.HasPrefix(e.Error, tt.msg) {
				t.Errorf("error %q\nwant it to start with %q", e.Error, tt.msg)
			}
		})
	}
}

func TestSourceStamps(t *testing.T) {
	f := newQueryFixture(t)
	c := f.changes[2]
	var got struct{ SourceStamps []map[string]any }
	f.getJSON(t, fmt.Sprintf("/api/v2/sourcestamps/%d", c.SourceStampID), &got)
	want := map[string]any{"ssid": float64(c.SourceStampID), "codebase": "", "repository": "", "branch": "dev",
		"revision": "ccc333", "project": "", "patch": nil}
	ss := got.SourceStamps[0]
	created := ss["created_at"]
	delete(ss, "created_at")
	if fmt.Sprint(ss) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", ss, want)
	}
	if ct, ok := created.(float64); !ok || ct < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("created_at %v", created)
	}
	if st, _, body := f.get(t, "/api/v2/sourcestamps/99999"); st != http.StatusNotFound || !strings.Contains(string(body), "source stamp 99999 not found") {
		t.Errorf("missing stamp: %d %s", st, body)
	}
}

// TestCompareValues covers the comparisons filters and orders rely on.
func TestCompareValues(t *testing.T) {
	for _, tt := range []struct {
		a, b any
		c    int
		ok   bool
	}{
		{int64(1), int64(2), -1, true},
		{int64(2), 1.5, 1, true},
		{1.5, int64(2), -1, true},
		{"b", "a", 1, true},
		{false, true, -1, true},
		{true, true, 0, true},
		{nil, int64(1), 0, false},
		{int64(1), nil, 0, false},
		{"1", int64(1), 0, false},
		{result.Success, int64(0), 0, false},
	} {
		c, ok := compare(tt.a, tt.b)
		if c != tt.c || ok != tt.ok {
			t.Errorf("compare(%v, %v) = %d, %t; want %d, %t", tt.a, tt.b, c, ok, tt.c, tt.ok)
		}
	}
}
