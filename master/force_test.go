package master_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// startMaster runs a master on cfg (plus the listening addresses) until
// the test ends. No worker connects, so forced builds stay queued.
func startMaster(t *testing.T, cfg string) *master.Master {
	t.Helper()
	dir := t.TempDir()
	src := `master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")` + "\n" + cfg
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := master.New(master.Options{Basedir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-m.Ready()
	return m
}

const forceConfig = `
worker("w", "pw")
builder("proj", ["w"], [shell("make")])
force_scheduler("plain", ["proj"])
force_scheduler("params", ["proj"], params = [
    string_param("ticket", regex = "^[A-Z]+-[0-9]+$", default = "CI-1"),
    int_param("jobs", default = 4),
    bool_param("clean"),
    choice_param("target", ["all", "check", "dist"], default = "check"),
    choice_param("platforms", ["linux", "macos", "windows"], default = ["linux"], multiple = True),
    username_param(),
    codebase_param("", branch = "main", repository = "https://example.org/proj.git"),
    codebase_param("lib", repository = "https://example.org/lib.git"),
    fixed_param("origin", {"via": "web", "n": 1}),
])
`

// roundTrip is v as the store gives it back: through JSON.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestForceParams: a forced build's buildset gets the declared
// parameters' typed values, the free properties, and one source stamp per
// codebase parameter.
func TestForceParams(t *testing.T) {
	m := startMaster(t, forceConfig)
	ctx := context.Background()
	bs, reqs, err := m.Force(ctx, webui.ForceRequest{
		Scheduler: "params", Reason: "release", Owner: "cli-user",
		Properties: map[string]string{"color": "blue"},
		Params: map[string]any{
			"ticket": "REL-7", "jobs": json.Number("16"), "clean": "true", "platforms": []any{"macos", "windows"},
			"username": "Ann", "branch": "release", "lib_revision": "0123abcd",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	got, err := m.Store().GetBuildset(ctx, bs.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantProps := map[string]any{
		"ticket": "REL-7", "jobs": int64(16), "clean": true, "target": "check",
		"platforms": []string{"macos", "windows"}, "username": "Ann", "origin": map[string]any{"via": "web", "n": int64(1)},
		"color": "blue", "owner": "Ann", "reason": "release", "scheduler": "params",
	}
	for name, want := range wantProps {
		p, ok := got.Properties[name]
		if !ok {
			t.Errorf("property %s missing", name)
			continue
		}
		if !reflect.DeepEqual(roundTrip(t, p.Value), roundTrip(t, want)) {
			t.Errorf("property %s = %#v, want %#v", name, p.Value, want)
		}
		wantSource := "Force Build Form"
		if name == "scheduler" {
			wantSource = "Scheduler"
		}
		if p.Source != wantSource {
			t.Errorf("property %s has source %q, want %q", name, p.Source, wantSource)
		}
	}
	if len(got.Properties) != len(wantProps) {
		t.Errorf("properties %v, want exactly %v", got.Properties, wantProps)
	}
	// The values keep their types: an int is stored as a number (the
	// store reads it back as int64), a bool as a bool.
	if v, ok := got.Properties["jobs"].Value.(int64); !ok || v != 16 {
		t.Errorf("jobs = %#v, want int64 16", got.Properties["jobs"].Value)
	}
	if v, ok := got.Properties["clean"].Value.(bool); !ok || !v {
		t.Errorf("clean = %#v, want bool true", got.Properties["clean"].Value)
	}
	var stamps []store.SourceStamp
	for _, ss := range got.SourceStamps {
		ss.ID = 0
		stamps = append(stamps, ss)
	}
	wantStamps := []store.SourceStamp{
		{Codebase: "", Branch: "release", Repository: "https://example.org/proj.git"},
		{Codebase: "lib", Revision: "0123abcd", Repository: "https://example.org/lib.git"},
	}
	if !reflect.DeepEqual(stamps, wantStamps) {
		t.Errorf("source stamps\n\t%+v\nwant\n\t%+v", stamps, wantStamps)
	}
	if want := "A build was forced by 'Ann': release"; got.Reason != want {
		t.Errorf("buildset reason %q, want %q", got.Reason, want)
	}
}

// TestForceWithoutParams: a scheduler without parameters keeps today's
// single empty source stamp and string properties.
func TestForceWithoutParams(t *testing.T) {
	m := startMaster(t, forceConfig)
	ctx := context.Background()
	bs, _, err := m.Force(ctx, webui.ForceRequest{Scheduler: "plain", Properties: map[string]string{"jobs": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Store().GetBuildset(ctx, bs.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.SourceStamps) != 1 || got.SourceStamps[0].Codebase != "" || got.SourceStamps[0].Branch != "" || got.SourceStamps[0].Repository != "" {
		t.Errorf("source stamps %+v, want one empty stamp", got.SourceStamps)
	}
	if p := got.Properties["jobs"]; p.Value != "4" || p.Source != "Force Build Form" {
		t.Errorf("jobs = %+v", p)
	}
	if got.Properties["owner"].Value != "anonymous" || got.Properties["reason"].Value != "forced" {
		t.Errorf("owner and reason: %+v", got.Properties)
	}
}

// TestForceParamErrors: the master checks the values itself (an API
// caller need not go through the web UI's check) and stores nothing when
// one is wrong.
func TestForceParamErrors(t *testing.T) {
	m := startMaster(t, forceConfig)
	ctx := context.Background()
	tests := []struct {
		name   string
		params map[string]any
		props  map[string]string
		want   string
	}{
		{"regex", map[string]any{"ticket": "nope"}, nil, `ticket: "nope" does not match`},
		{"int", map[string]any{"jobs": "many"}, nil, `jobs: want an integer, got "many"`},
		{"bool", map[string]any{"clean": 2}, nil, `clean: want true or false, got 2`},
		{"choice", map[string]any{"target": "deploy"}, nil, `target: "deploy" is not one of`},
		{"fixed", map[string]any{"origin": "cli"}, nil, `origin: fixed to {"n":1,"via":"web"}`},
		{"unknown", map[string]any{"lib_tag": "v1"}, nil, `lib_tag: not a parameter of force scheduler "params"`},
		{"param as free property", nil, map[string]string{"jobs": "3"}, `jobs: a declared parameter`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := m.Force(ctx, webui.ForceRequest{Scheduler: "params", Params: tt.params, Properties: tt.props})
			var st interface{ HTTPStatus() int }
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &st) || st.HTTPStatus() != 400 {
				t.Fatalf("err %v, want a 400 with %q", err, tt.want)
			}
		})
	}
	bss, err := m.Store().ListBuildsets(ctx, store.BuildsetFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(bss) != 0 {
		t.Errorf("%d buildsets stored after refused requests", len(bss))
	}
}
