package worker

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	// Each delay lies between half and all of min·2ⁿ, capped at max.
	for _, full := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		full *= time.Millisecond
		if d := b.next(); d < full/2 || d > full {
			t.Fatalf("delay %v outside [%v, %v]", d, full/2, full)
		}
	}
	b.reset()
	if d := b.next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
	b.next() // 200ms
	b.next() // 400ms
	b.next() // 800ms
	// Many attempts stay at the cap, never overflowing.
	for range 200 {
		if d := b.next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("delay %v after many attempts", d)
		}
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := backoff{min: time.Second, max: time.Minute}
		seen[b.next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct first delays in 50 tries: no jitter", len(seen))
	}
}
