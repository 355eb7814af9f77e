// Package clock lets timers, leases and schedules be driven by a fake
// clock in tests.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and runs functions later. Real is the system clock;
// Fake is one that tests move by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed, unless the
	// returned Timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the function from running; it reports whether it did
	// (false: it already ran or was stopped).
	Stop() bool
}

// Real is the system clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Fake is a clock that only moves when Advance or Set is called. Its
// methods are safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced when a timer is added
}

// NewFake returns a fake clock set to now.
func NewFake(now time.Time) *Fake {
	return &Fake{now: now, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements Clock. f runs in its own goroutine when Advance
// moves the clock to or past its time; a d of zero or less runs it at the
// next Advance (even by zero).
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	close(c.changed)
	c.changed = make(chan struct{})
	return t
}

// Advance moves the clock forward by d and starts the functions of the
// timers that are due, in time order.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	c.set(c.now.Add(d))
}

// Set moves the clock to t (which may not be before Now) and starts the
// functions of the timers that are due.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	if t.Before(c.now) {
		c.mu.Unlock()
		panic("clock: Fake.Set moves the clock backwards")
	}
	c.set(t)
}

// set is called with c.mu held and releases it.
func (c *Fake) set(t time.Time) {
	c.now = t
	var due, rest []*fakeTimer
	for _, tm := range c.timers {
		if !tm.at.After(t) {
			due = append(due, tm)
		} else {
			rest = append(rest, tm)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, tm := range due {
		go tm.f()
	}
}

// Pending returns how many timers are waiting.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Added returns a channel closed the next time a timer is added, so a
// test can wait for code under test to arm its timer before advancing.
func (c *Fake) Added() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

type fakeTimer struct {
	c  *Fake
	at time.Time
	f  func()
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, tm := range t.c.timers {
		if tm == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}
