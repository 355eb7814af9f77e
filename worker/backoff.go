package worker

import (
	"math/rand/v2"
	"time"
)

// backoff yields jittered, exponentially growing delays between connection
// attempts. It is not safe for concurrent use.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the last delay before jitter; 0 after a reset
}

// next returns the delay before the next attempt: min·2ⁿ capped at max,
// with "equal jitter" (uniform between half of it and all of it), so that a
// fleet of workers restarted together does not reconnect in lockstep, while
// no retry ever comes sooner than min/2.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max) // cur ≤ max, so doubling cannot overflow
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

// reset makes the next delay short again, after a connection that worked.
func (b *backoff) reset() { b.cur = 0 }
