package dispatch

import (
	"testing"
	"time"
)

// TestSetPriority: a request given a higher priority moves ahead of the
// queue and starts first; unknown ids change nothing.
func TestSetPriority(t *testing.T) {
	d, f := setup(t, Config{Builders: []Builder{{Name: "b", Workers: []string{"w1"}}}})
	d.Add(req(1, "b", 0, 3*time.Second), req(2, "b", 0, 2*time.Second), req(3, "b", 0, time.Second))
	d.SetPriority(3, 10)
	d.SetPriority(1, -1)
	d.SetPriority(99, 7)
	snap := settle(t, d)
	var order []int64
	for _, r := range snap.Pending {
		order = append(order, r.ID)
	}
	if len(order) != 3 || order[0] != 3 || order[1] != 2 || order[2] != 1 || snap.Pending[0].Priority != 10 {
		t.Fatalf("queue %v (%+v), want 3 2 1 with 3 at priority 10", order, snap.Pending)
	}
	d.Attached("w1")
	if s := next(t, f); s.req.ID != 3 {
		t.Errorf("started %d first, want 3", s.req.ID)
	}
}
