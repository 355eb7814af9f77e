package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadFuncs(t *testing.T, src string) *Builder {
	t.Helper()
	file := filepath.Join(t.TempDir(), "m.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Builder("b")
}

var (
	testBuilder = BuilderInfo{Name: "b", Tags: []string{"t"}, Properties: map[string]any{"x": int64(1)}}
	testWorkers = []WorkerInfo{
		{Name: "w1", Properties: map[string]any{"os": "linux"}, RunningBuilds: 2},
		{Name: "w2", Properties: map[string]any{"os": "windows", "fast": true}},
	}
	testReqs = []RequestInfo{
		{ID: 7, Priority: 1, SubmittedAt: time.Unix(1000, 500e6), Properties: map[string]any{"want_os": "windows"}},
		{ID: 8, SubmittedAt: time.Unix(2000, 0)},
	}
)

func TestCallCanStart(t *testing.T) {
	b := loadFuncs(t, `
def can(builder, worker, request):
    if builder.name != "b" or builder.tags != ["t"] or builder.properties["x"] != 1:
        fail("builder", builder)
    return worker.properties.get("os") == request.properties.get("want_os", "linux") and worker.running_builds < 2
worker("w1", "p")
builder("b", ["w1"], [shell("x")], can_start = can)
`)
	for _, tc := range []struct {
		w    WorkerInfo
		r    RequestInfo
		want bool
	}{
		{testWorkers[0], testReqs[0], false},
		{testWorkers[1], testReqs[0], true},
		{testWorkers[0], testReqs[1], false}, // running_builds
	} {
		got, err := b.CanStart.CallCanStart(testBuilder, tc.w, tc.r, 0)
		if err != nil || got != tc.want {
			t.Errorf("can_start(%s, %d) = %v, %v; want %v", tc.w.Name, tc.r.ID, got, err, tc.want)
		}
	}
}

func TestCallCanStartErrors(t *testing.T) {
	b := loadFuncs(t, `
def can(builder, worker, request):
    if request.id == 7:
        return "yes"
    if request.id == 8:
        return 1 // 0
    for i in range(1000000000):
        pass
worker("w1", "p")
builder("b", ["w1"], [shell("x")], can_start = can)
`)
	_, err := b.CanStart.CallCanStart(testBuilder, testWorkers[0], testReqs[0], 0)
	if err == nil || err.Error() != "can: returned string; want True or False" {
		t.Errorf("wrong type: %v", err)
	}
	_, err = b.CanStart.CallCanStart(testBuilder, testWorkers[0], testReqs[1], 0)
	fe, ok := err.(*FuncError)
	if !ok || !strings.Contains(err.Error(), "division by zero") || !strings.Contains(fe.Backtrace(), "in can") {
		t.Errorf("division: %v (%T)", err, err)
	} else if !strings.Contains(fe.Backtrace(), "m.star:6:") {
		t.Errorf("backtrace lacks the line: %s", fe.Backtrace())
	}
	_, err = b.CanStart.CallCanStart(testBuilder, testWorkers[0], RequestInfo{ID: 9}, 1000)
	if err == nil || !strings.Contains(err.Error(), "too many steps") {
		t.Errorf("budget: %v", err)
	}
}

func TestCallNextWorker(t *testing.T) {
	b := loadFuncs(t, `
def pick(builder, workers, request):
    if request.id == 8:
        return None
    for w in workers:
        if w.properties.get("fast"):
            return w
    return workers[0].name
worker("w1", "p")
builder("b", ["w1"], [shell("x")], next_worker = pick)
`)
	got, err := b.NextWorker.CallNextWorker(testBuilder, testWorkers, testReqs[0], 0)
	if err != nil || got != "w2" {
		t.Errorf("pick = %q, %v; want w2", got, err)
	}
	got, err = b.NextWorker.CallNextWorker(testBuilder, testWorkers[:1], testReqs[0], 0)
	if err != nil || got != "w1" {
		t.Errorf("pick by name = %q, %v; want w1", got, err)
	}
	got, err = b.NextWorker.CallNextWorker(testBuilder, testWorkers, testReqs[1], 0)
	if err != nil || got != "" {
		t.Errorf("None = %q, %v", got, err)
	}
}

func TestCallNextWorkerErrors(t *testing.T) {
	b := loadFuncs(t, `
def pick(builder, workers, request):
    if request.id == 7:
        return "w9"
    workers.append(1)
worker("w1", "p")
builder("b", ["w1"], [shell("x")], next_worker = pick)
`)
	_, err := b.NextWorker.CallNextWorker(testBuilder, testWorkers, testReqs[0], 0)
	if err == nil || err.Error() != `pick: returned "w9", which is not one of the workers offered (w1, w2)` {
		t.Errorf("unknown worker: %v", err)
	}
	_, err = b.NextWorker.CallNextWorker(testBuilder, testWorkers, testReqs[1], 0)
	if err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Errorf("the list is frozen: %v", err)
	}
}

func TestCallNextBuild(t *testing.T) {
	b := loadFuncs(t, `
def nb(builder, requests):
    if len(requests) == 1:
        return None
    if len(requests) == 3:
        return requests[2].id + 100
    best = requests[0]
    for r in requests:
        if r.submitted_at > best.submitted_at:
            best = r
    return best
worker("w1", "p")
builder("b", ["w1"], [shell("x")], next_build = nb)
`)
	got, err := b.NextBuild.CallNextBuild(testBuilder, testReqs, 0)
	if err != nil || got != 8 {
		t.Errorf("newest = %d, %v; want 8", got, err)
	}
	got, err = b.NextBuild.CallNextBuild(testBuilder, testReqs[:1], 0)
	if err != nil || got != 0 {
		t.Errorf("None = %d, %v", got, err)
	}
	three := append(append([]RequestInfo(nil), testReqs...), RequestInfo{ID: 9})
	_, err = b.NextBuild.CallNextBuild(testBuilder, three, 0)
	if err == nil || !strings.Contains(err.Error(), "request 109, which is not one of the requests offered") {
		t.Errorf("unknown id: %v", err)
	}
}

// TestBuilderFuncsConcurrent: the functions are frozen and may be called
// from several goroutines at once (the race detector checks).
func TestBuilderFuncsConcurrent(t *testing.T) {
	b := loadFuncs(t, `
seen = {}
def pick(builder, workers, request):
    return workers[-1]
worker("w1", "p")
builder("b", ["w1"], [shell("x")], next_worker = pick)
`)
	done := make(chan error)
	for range 4 {
		go func() {
			var err error
			for range 50 {
				if _, e := b.NextWorker.CallNextWorker(testBuilder, testWorkers, testReqs[0], 0); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestCallCollapse(t *testing.T) {
	b := loadFuncs(t, `
def same_os(builder, req1, req2):
    if req2.id == 9:
        return None
    if req2.id == 10:
        return req1.sources[0].branch == req2.sources[0].branch and req2.sources[0].codebase == "cb"
    return req1.properties.get("want_os") == req2.properties.get("want_os")
worker("w1", "p")
builder("b", ["w1"], [shell("x")], collapse_requests = same_os)
`)
	f := b.CollapseRequestsFn
	if ok, err := f.CallCollapse(testBuilder, testReqs[0], testReqs[0], 0); err != nil || !ok {
		t.Errorf("same = %v, %v", ok, err)
	}
	if ok, err := f.CallCollapse(testBuilder, testReqs[0], testReqs[1], 0); err != nil || ok {
		t.Errorf("different = %v, %v", ok, err)
	}
	main := []SourceStamp{{Codebase: "cb", Branch: "main", Revision: "abc"}}
	r1, r2 := RequestInfo{ID: 1, Sources: main}, RequestInfo{ID: 10, Sources: main}
	if ok, err := f.CallCollapse(testBuilder, r1, r2, 0); err != nil || !ok {
		t.Errorf("same branch = %v, %v", ok, err)
	}
	r2.Sources = []SourceStamp{{Codebase: "cb", Branch: "dev"}}
	if ok, err := f.CallCollapse(testBuilder, r1, r2, 0); err != nil || ok {
		t.Errorf("other branch = %v, %v", ok, err)
	}
	if _, err := f.CallCollapse(testBuilder, testReqs[0], RequestInfo{ID: 9}, 0); err == nil || !strings.Contains(err.Error(), "returned NoneType") {
		t.Errorf("None: %v", err)
	}
}
