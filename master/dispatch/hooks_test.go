package dispatch

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

// TestHooks: each hook hears of its call, after which a snapshot of the
// queue accounts for it.
func TestHooks(t *testing.T) {
	d, _ := setup(t, Config{Builders: []Builder{{Name: "a", Workers: []string{"w1"}}}})
	var got []string
	d.SetHooks(Hooks{
		Added: func(reqs []store.BuildRequest) {
			for _, r := range reqs {
				got = append(got, fmt.Sprintf("added %d", r.ID))
			}
		},
		Removed: func(ids []int64) { got = append(got, fmt.Sprintf("removed %v", ids)) },
		Paused:  func(w string, p bool, why string) { got = append(got, fmt.Sprintf("paused %s %v %q", w, p, why)) },
	})
	d.Add(req(1, "a", 0, time.Second), req(2, "a", 0, 0))
	if _, ok := settle(t, d).Reasons[2]; !ok {
		t.Error("request 2 is not in the queue after its hook ran")
	}
	d.Remove(1)
	d.Add() // nothing: no hook
	d.Remove()
	d.Pause("w1", "owner active")
	d.Unpause("w1")
	want := []string{"added 1", "added 2", "removed [1]", `paused w1 true "owner active"`, `paused w1 false ""`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hooks heard %q, want %q", got, want)
	}
}
