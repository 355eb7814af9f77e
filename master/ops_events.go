package master

import (
	"sync"

	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/store"
)

// buildHub tells subscribers that some build progressed (started, a step
// changed, finished), so that followers reread the store instead of
// waiting for a timer. It relays every event to next. Safe for concurrent
// use.
type buildHub struct {
	next build.Observer // may be nil

	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// watchBuilds makes m's build observer tell m.hub first.
func (m *Master) watchBuilds() {
	m.hub = &buildHub{next: m.opts.Observer, subs: map[chan struct{}]struct{}{}}
	m.opts.Observer = m.hub
}

// Subscribe returns a channel that receives a value after any build
// event (several events may share one value: it holds at most one), and
// the function that ends the subscription.
func (h *buildHub) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *buildHub) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // one pending wake-up is enough
		}
	}
}

func (h *buildHub) BuildStarted(b store.Build) {
	h.notify()
	if h.next != nil {
		h.next.BuildStarted(b)
	}
}

func (h *buildHub) StepChanged(id int64, s store.Step) {
	h.notify()
	if h.next != nil {
		h.next.StepChanged(id, s)
	}
}

func (h *buildHub) CommandStarted(id int64, s store.Step, cmd string) {
	if h.next != nil {
		h.next.CommandStarted(id, s, cmd)
	}
}

func (h *buildHub) BuildFinished(b store.Build) {
	h.notify()
	if h.next != nil {
		h.next.BuildFinished(b)
	}
}
