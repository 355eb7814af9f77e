package master

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/dispatch"
	"github.com/starforge/starforge/master/store"
)

// TestDispatchConfigBuilderFuncs: the builder's Starlark functions become
// the dispatcher's callbacks, fed the workers' configured properties.
func TestDispatchConfigBuilderFuncs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "master.star")
	src := `
worker("w1", "p", properties = {"gpu": False})
worker("w2", "p", properties = {"gpu": True})
def can(builder, worker, request):
    return worker.running_builds < 2 and request.priority >= 0
def pick(builder, workers, request):
    for w in workers:
        if w.properties["gpu"]:
            return w
def newest(builder, requests):
    return requests[-1].id
builder("b", ["w1", "w2"], [shell("x")], can_start = can, next_worker = pick, next_build = newest)
builder("plain", ["w1"], [shell("x")])
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	dc := dispatchConfig(cfg, nil)
	var b, plain dispatch.Builder
	for _, x := range dc.Builders {
		switch x.Name {
		case "b":
			b = x
		case "plain":
			plain = x
		}
	}
	if plain.CanStart != nil || plain.NextWorker != nil || plain.NextBuild != nil {
		t.Error("a builder without functions got callbacks")
	}
	if b.CanStart == nil || b.NextWorker == nil || b.NextBuild == nil {
		t.Fatal("callbacks missing")
	}
	r := store.BuildRequest{ID: 4, BuilderName: "b"}
	if ok, err := b.CanStart(dispatch.Candidate{Name: "w1", Running: 1}, r); err != nil || !ok {
		t.Errorf("can_start = %v, %v", ok, err)
	}
	if ok, err := b.CanStart(dispatch.Candidate{Name: "w1", Running: 2}, r); err != nil || ok {
		t.Errorf("can_start busy = %v, %v", ok, err)
	}
	w, err := b.NextWorker([]dispatch.Candidate{{Name: "w1"}, {Name: "w2"}}, r)
	if err != nil || w != "w2" {
		t.Errorf("next_worker = %q, %v", w, err)
	}
	w, err = b.NextWorker([]dispatch.Candidate{{Name: "w1"}}, r)
	if err != nil || w != "" {
		t.Errorf("next_worker without a gpu = %q, %v", w, err)
	}
	id, err := b.NextBuild([]store.BuildRequest{{ID: 1}, {ID: 2}})
	if err != nil || id != 2 {
		t.Errorf("next_build = %d, %v", id, err)
	}
}
