// Package event is the master's live event bus. Parts of the master
// publish what just happened (a build started, log lines were stored, a
// worker connected) under Buildbot-style routing keys such as
// builds/12/new or logs/7/append; the web UI's websocket and its metrics
// consume them.
//
// Publishing never waits for a consumer: a subscriber whose buffer is full
// is dropped (its channel is closed and Err says why), so a slow browser
// can never hold up a build. Everything published is already in the
// store, so a dropped consumer recovers by reading the store again.
package event

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Key is a routing key, such as {"builds", "12", "new"}: the kind of
// resource, its id (several pairs for nested resources), then what
// happened.
type Key []string

// String joins k with "/", as the websocket protocol sends it.
func (k Key) String() string { return strings.Join(k, "/") }

// Filter selects routing keys: a key matches if it has as many elements
// and each element is equal to the filter's or the filter's is "*".
type Filter []string

// maxFilterLen bounds the elements of a filter; Buildbot's longest keys
// have 7.
const maxFilterLen = 16

// ParseFilter parses a websocket path such as "builds/*/*" or
// "logs/7/append".
func ParseFilter(path string) (Filter, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	f := Filter(strings.Split(path, "/"))
	if len(f) > maxFilterLen {
		return nil, fmt.Errorf("path %q has %d elements, at most %d are allowed", path, len(f), maxFilterLen)
	}
	for i, e := range f {
		if e == "" {
			return nil, fmt.Errorf("path %q: element %d is empty", path, i+1)
		}
	}
	return f, nil
}

// String returns f as ParseFilter reads it.
func (f Filter) String() string { return strings.Join(f, "/") }

// Match reports whether f selects k.
func (f Filter) Match(k Key) bool {
	if len(f) != len(k) {
		return false
	}
	for i, e := range f {
		if e != "*" && e != k[i] {
			return false
		}
	}
	return true
}

func (f Filter) equal(g Filter) bool {
	if len(f) != len(g) {
		return false
	}
	for i := range f {
		if f[i] != g[i] {
			return false
		}
	}
	return true
}

// Event is one published message: a value (a store.Build, a store.Step,
// a LogLines, ...) and every routing key it is published under.
type Event struct {
	Keys  []Key
	Value any
}

// Message is what a subscriber receives: one event's value, under one of
// its keys that the subscriber's filters select.
type Message struct {
	Key   Key
	Value any
}

// ErrSlow is the Err of a subscription dropped because its buffer was
// full.
var ErrSlow = errors.New("event: subscriber dropped: it fell too far behind")

// ErrClosed is the Err of a subscription ended by Bus.Close.
var ErrClosed = errors.New("event: the bus is closed: the master is stopping")

// Bus delivers published events to subscribers. Make one with New.
// Publish and Stats also work on a nil *Bus, which drops everything, so
// that parts of the master can publish whether or not anyone listens.
// Its methods are safe for concurrent use.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
	taps map[int]func(Event)
	next int // next tap id

	dropped uint64 // subscribers dropped for being slow; guarded by mu (write)
	closed  bool
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{subs: map[*Subscription]struct{}{}, taps: map[int]func(Event){}}
}

// Publish sends v under keys to every tap, then to every subscriber with
// a filter matching one of the keys (once per matching key). It never
// blocks: a subscriber whose buffer is full is dropped. Publish from one
// goroutine reaches each subscriber in order.
func (b *Bus) Publish(v any, keys ...Key) {
	if b == nil || len(keys) == 0 {
		return
	}
	ev := Event{Keys: keys, Value: v}
	var slow []*Subscription
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return
	}
	for _, fn := range b.taps {
		fn(ev)
	}
	for s := range b.subs {
		if !s.deliver(ev) {
			slow = append(slow, s)
		}
	}
	b.mu.RUnlock()
	if len(slow) > 0 {
		b.mu.Lock()
		for _, s := range slow {
			if _, ok := b.subs[s]; ok {
				delete(b.subs, s)
				b.dropped++
			}
		}
		b.mu.Unlock()
	}
}

// Tap calls fn with every event published from now on, synchronously in
// the publisher's goroutine, before subscribers get it. fn must return
// quickly and never block (count, add to a histogram); it must not call
// the bus. The returned function removes the tap.
func (b *Bus) Tap(fn func(Event)) (remove func()) {
	b.mu.Lock()
	id := b.next
	b.next++
	b.taps[id] = fn
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.taps, id)
		b.mu.Unlock()
	}
}

// Subscribe returns a subscription with room for buffer messages (at
// least 1) that receives the messages selected by filters, which Add and
// Remove change later.
// On a closed bus the subscription is ended at once, with ErrClosed.
func (b *Bus) Subscribe(buffer int, filters ...Filter) *Subscription {
	s := &Subscription{bus: b, c: make(chan Message, max(buffer, 1))}
	for _, f := range filters {
		s.addLocked(f)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.end(ErrClosed)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Close ends every subscription, with ErrClosed, and the ones made
// later; later events are dropped. The master closes its bus when it
// stops, which ends the websockets that follow it.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.mu.Lock()
		s.end(ErrClosed)
		s.mu.Unlock()
		delete(b.subs, s)
	}
	clear(b.taps)
}

// Stats says how many subscribers the bus has and how many it dropped
// for being slow since it was made.
func (b *Bus) Stats() (subscribers int, dropped uint64) {
	if b == nil {
		return 0, 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs), b.dropped
}

// Subscription is one consumer's view of the bus. Its methods are safe
// for concurrent use.
type Subscription struct {
	bus *Bus
	c   chan Message

	mu      sync.Mutex
	filters []Filter
	closed  bool  // c is closed
	err     error // why: ErrSlow, or nil after Close
}

// C returns the channel the messages arrive on. It is closed when the
// subscription ends: by Close, or because it fell behind (see Err).
func (s *Subscription) C() <-chan Message { return s.c }

// Err says why the subscription ended: ErrSlow if the bus dropped it,
// ErrClosed if the bus was closed, nil if it was closed by Close or has
// not ended.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Add makes the subscription receive messages that f selects. It reports
// false if f was there already.
func (s *Subscription) Add(f Filter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLocked(f)
}

func (s *Subscription) addLocked(f Filter) bool {
	for _, g := range s.filters {
		if g.equal(f) {
			return false
		}
	}
	s.filters = append(s.filters, f)
	return true
}

// Remove stops the messages that f selected (unless another filter
// selects them too). It reports false if f was not there.
func (s *Subscription) Remove(f Filter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.filters {
		if g.equal(f) {
			s.filters = append(s.filters[:i], s.filters[i+1:]...)
			return true
		}
	}
	return false
}

// Filters returns the subscription's filters.
func (s *Subscription) Filters() []Filter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Filter(nil), s.filters...)
}

// Close ends the subscription and closes its channel. Closing twice, or
// after the bus dropped it, does nothing.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(nil)
}

// end closes s's channel with err, unless it is closed already. s.mu is
// held (or s is not shared yet).
func (s *Subscription) end(err error) {
	if !s.closed {
		s.closed, s.err = true, err
		close(s.c)
	}
}

// deliver queues the messages of ev that s selects; it reports false if
// s fell behind and was closed.
func (s *Subscription) deliver(ev Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true // being closed by Close
	}
	for _, k := range ev.Keys {
		if !s.selects(k) {
			continue
		}
		select {
		case s.c <- Message{Key: k, Value: ev.Value}:
		default:
			s.end(ErrSlow)
			return false
		}
	}
	return true
}

func (s *Subscription) selects(k Key) bool {
	for _, f := range s.filters {
		if f.Match(k) {
			return true
		}
	}
	return false
}
