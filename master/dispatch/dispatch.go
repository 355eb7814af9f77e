// Package dispatch matches pending build requests with idle workers. It is
// event-driven: it acts when a request is queued, a worker attaches or
// detaches, a build ends or the configuration changes, and never polls.
package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/starforge/starforge/master/store"
)

// Starter runs builds for the dispatcher.
type Starter interface {
	// RunBuild runs req on the named worker and returns when the build has
	// ended. It returns requeue=true when the request went back to the
	// queue (the build ended in RETRY, or it never started), in which case
	// the dispatcher queues it again at the head. RunBuild is called on a
	// goroutine of its own.
	RunBuild(req store.BuildRequest, worker string) (requeue bool)
}

// Builder is what the dispatcher needs to know of a configured builder.
type Builder struct {
	Name     string
	Workers  []string     // names of the workers allowed to run it
	Locks    []LockAccess // taken for the whole build, released at its end
	Priority int          // among requests of equal priority, higher builders first
}

// Lock is a configured lock. A master lock is one lock for the whole
// master; a worker lock is one lock per worker.
type Lock struct {
	Name              string
	PerWorker         bool
	MaxCount          int            // holders in counting mode; at least 1
	MaxCountForWorker map[string]int // per-worker MaxCount overrides (worker locks)
}

// LockAccess is a builder's use of a lock: counting (up to MaxCount
// holders at once) or exclusive (the only holder), as in Buildbot.
type LockAccess struct {
	Lock      string
	Exclusive bool
}

// Worker is what the dispatcher needs to know of a configured worker.
type Worker struct {
	Name      string
	MaxBuilds int          // 0: no limit
	Locks     []LockAccess // taken for every build on this worker
}

// Config is the part of the master's configuration the dispatcher uses.
type Config struct {
	Builders []Builder
	Workers  []Worker
	Locks    []Lock
}

type event struct {
	add      []store.BuildRequest
	remove   []int64
	attach   string
	detach   string
	done     *doneEvent
	config   *Config
	snapshot chan<- Snapshot
}

type doneEvent struct {
	req     store.BuildRequest
	worker  string
	requeue bool
}

type workerState struct {
	attached bool
	running  int
	builders map[string]int // builder name → running builds of it
}

// Dispatcher assigns requests to workers. Its methods are safe for
// concurrent use; the assignment itself runs on one goroutine (Run).
type Dispatcher struct {
	starter Starter
	log     *slog.Logger
	events  chan event
	quit    chan struct{} // closed when Run stops taking events
	once    sync.Once

	// Owned by the Run goroutine.
	pending  []store.BuildRequest
	head     map[int64]bool // requests requeued at the head
	builders map[string]Builder
	limits   map[string]int
	wlocks   map[string][]LockAccess // worker → locks every build there takes
	locks    map[string]Lock
	held     map[string]*lockState // by lock key: name, or name@worker
	holds    map[int64][]heldLock  // request id → the locks it holds
	workers  map[string]*workerState
	inflight sync.WaitGroup
	waiting  []chan<- Snapshot // snapshot requests of the current batch

	mu      sync.Mutex
	reasons map[int64]string
	running map[string][]int64 // worker → request ids running there
}

// New returns a dispatcher that starts builds with s.
func New(s Starter, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{
		starter:  s,
		log:      log,
		events:   make(chan event, 1024),
		quit:     make(chan struct{}),
		head:     make(map[int64]bool),
		builders: make(map[string]Builder),
		limits:   make(map[string]int),
		locks:    make(map[string]Lock),
		held:     make(map[string]*lockState),
		holds:    make(map[int64][]heldLock),
		workers:  make(map[string]*workerState),
		reasons:  make(map[int64]string),
		running:  make(map[string][]int64),
	}
}

// Add queues requests (new ones, or the pending ones found at start-up).
func (d *Dispatcher) Add(reqs ...store.BuildRequest) {
	if len(reqs) > 0 {
		d.send(event{add: reqs})
	}
}

// Remove drops pending requests (cancelled ones) from the queue; ids that
// are not pending are ignored.
func (d *Dispatcher) Remove(ids ...int64) {
	if len(ids) > 0 {
		d.send(event{remove: ids})
	}
}

// Attached tells the dispatcher the named worker can take builds.
func (d *Dispatcher) Attached(worker string) { d.send(event{attach: worker}) }

// Detached tells the dispatcher the named worker is gone.
func (d *Dispatcher) Detached(worker string) { d.send(event{detach: worker}) }

// SetConfig replaces the builders and worker limits. Running builds are not
// affected.
func (d *Dispatcher) SetConfig(c Config) { d.send(event{config: &c}) }

// send delivers ev unless the dispatcher has stopped; after Run returns
// events are dropped (the store still holds every request).
func (d *Dispatcher) send(ev event) {
	select {
	case d.events <- ev:
	case <-d.quit:
	}
}

// Snapshot is the dispatcher's view at one moment.
type Snapshot struct {
	Pending []store.BuildRequest
	Reasons map[int64]string // pending request id → why it waits
}

// Snapshot returns the pending queue in order with the reason each request
// waits. It fails only when ctx ends first.
func (d *Dispatcher) Snapshot(ctx context.Context) (Snapshot, error) {
	ch := make(chan Snapshot, 1)
	select {
	case d.events <- event{snapshot: ch}:
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	case <-d.quit:
		return Snapshot{}, fmt.Errorf("dispatcher stopped")
	}
	select {
	case s := <-ch:
		return s, nil
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	}
}

// Reasons returns why each pending request waits, as of the last
// assignment pass.
func (d *Dispatcher) Reasons() map[int64]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int64]string, len(d.reasons))
	for k, v := range d.reasons {
		out[k] = v
	}
	return out
}

// Running returns, per worker name, the ids of the requests it runs.
func (d *Dispatcher) Running() map[string][]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]int64, len(d.running))
	for k, v := range d.running {
		out[k] = append([]int64(nil), v...)
	}
	return out
}

// Run processes events until ctx ends, then waits for the builds it started
// to return.
func (d *Dispatcher) Run(ctx context.Context) {
	defer d.inflight.Wait()
	defer d.once.Do(func() { close(d.quit) })
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-d.events:
			d.apply(ev)
			// Drain what else is queued so a burst costs one pass.
			for more := true; more; {
				select {
				case ev := <-d.events:
					d.apply(ev)
				default:
					more = false
				}
			}
			d.assign(ctx)
			for _, ch := range d.waiting {
				ch <- Snapshot{Pending: append([]store.BuildRequest(nil), d.pending...), Reasons: d.Reasons()}
			}
			d.waiting = d.waiting[:0]
		}
	}
}

func (d *Dispatcher) apply(ev event) {
	switch {
	case ev.add != nil:
		for _, r := range ev.add {
			d.insert(r)
		}
	case ev.remove != nil:
		drop := make(map[int64]bool, len(ev.remove))
		for _, id := range ev.remove {
			drop[id] = true
			delete(d.head, id)
		}
		kept := d.pending[:0]
		for _, r := range d.pending {
			if !drop[r.ID] {
				kept = append(kept, r)
			}
		}
		for i := len(kept); i < len(d.pending); i++ {
			d.pending[i] = store.BuildRequest{}
		}
		d.pending = kept
	case ev.attach != "":
		w := d.worker(ev.attach)
		w.attached = true
	case ev.detach != "":
		if w := d.workers[ev.detach]; w != nil {
			w.attached = false
		}
	case ev.done != nil:
		d.release(ev.done.req.ID)
		w := d.worker(ev.done.worker)
		w.running--
		b := ev.done.req.BuilderName
		if w.builders[b]--; w.builders[b] <= 0 {
			delete(w.builders, b)
		}
		d.mu.Lock()
		ids := d.running[ev.done.worker]
		for i, id := range ids {
			if id == ev.done.req.ID {
				ids = append(ids[:i], ids[i+1:]...)
				break
			}
		}
		if len(ids) == 0 {
			delete(d.running, ev.done.worker)
		} else {
			d.running[ev.done.worker] = ids
		}
		d.mu.Unlock()
		if ev.done.requeue {
			d.head[ev.done.req.ID] = true
			d.insert(ev.done.req)
		}
	case ev.config != nil:
		d.builders = make(map[string]Builder, len(ev.config.Builders))
		for _, b := range ev.config.Builders {
			d.builders[b.Name] = b
		}
		d.limits = make(map[string]int, len(ev.config.Workers))
		d.wlocks = make(map[string][]LockAccess, len(ev.config.Workers))
		for _, w := range ev.config.Workers {
			d.limits[w.Name] = w.MaxBuilds
			if len(w.Locks) > 0 {
				d.wlocks[w.Name] = w.Locks
			}
		}
		d.locks = make(map[string]Lock, len(ev.config.Locks))
		for _, l := range ev.config.Locks {
			d.locks[l.Name] = l
		}
		// Builder priorities may have changed the order.
		sort.SliceStable(d.pending, func(i, j int) bool { return d.before(d.pending[i], d.pending[j]) })
	case ev.snapshot != nil:
		// Answered after the assignment pass, so it reflects it.
		d.waiting = append(d.waiting, ev.snapshot)
	}
}

func (d *Dispatcher) worker(name string) *workerState {
	w := d.workers[name]
	if w == nil {
		w = &workerState{builders: make(map[string]int)}
		d.workers[name] = w
	}
	return w
}

// before orders the queue: higher priority first, then requests requeued
// at the head, then the oldest.
func (d *Dispatcher) before(a, b store.BuildRequest) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if pa, pb := d.builders[a.BuilderName].Priority, d.builders[b.BuilderName].Priority; pa != pb {
		return pa > pb
	}
	if ha, hb := d.head[a.ID], d.head[b.ID]; ha != hb {
		return ha
	}
	if !a.SubmittedAt.Equal(b.SubmittedAt) {
		return a.SubmittedAt.Before(b.SubmittedAt)
	}
	return a.ID < b.ID
}

func (d *Dispatcher) insert(r store.BuildRequest) {
	for _, p := range d.pending {
		if p.ID == r.ID {
			return
		}
	}
	i := sort.Search(len(d.pending), func(i int) bool { return d.before(r, d.pending[i]) })
	d.pending = append(d.pending, store.BuildRequest{})
	copy(d.pending[i+1:], d.pending[i:])
	d.pending[i] = r
}

// assign walks the queue in order and starts every request that has an
// eligible idle worker. A builder found without capacity is skipped for
// the rest of the pass, so a long queue for a busy builder costs little.
func (d *Dispatcher) assign(ctx context.Context) {
	full := make(map[string]bool)
	kept := d.pending[:0]
	reasons := make(map[int64]string)
	for _, r := range d.pending {
		if ctx.Err() != nil || full[r.BuilderName] {
			kept = append(kept, r)
			reasons[r.ID] = d.reason(r.BuilderName)
			continue
		}
		w := d.pick(r.BuilderName)
		if w == "" {
			full[r.BuilderName] = true
			kept = append(kept, r)
			reasons[r.ID] = d.reason(r.BuilderName)
			continue
		}
		d.start(r, w)
	}
	// Clear the tail so dropped entries do not pin memory.
	for i := len(kept); i < len(d.pending); i++ {
		d.pending[i] = store.BuildRequest{}
	}
	d.pending = kept
	d.mu.Lock()
	d.reasons = reasons
	d.mu.Unlock()
}

// pick returns the least busy eligible worker for builder whose locks are
// free, or "".
func (d *Dispatcher) pick(builder string) string {
	b, ok := d.builders[builder]
	if !ok {
		return ""
	}
	best, bestLoad := "", 0
	for _, name := range b.Workers {
		w := d.workers[name]
		if w == nil || !w.attached || w.builders[builder] > 0 {
			continue
		}
		if max := d.limits[name]; max > 0 && w.running >= max {
			continue
		}
		if d.blockingLock(b, name) != "" {
			continue
		}
		if best == "" || w.running < bestLoad {
			best, bestLoad = name, w.running
		}
	}
	return best
}

func (d *Dispatcher) start(r store.BuildRequest, worker string) {
	d.acquire(r.ID, d.builders[r.BuilderName], worker)
	w := d.worker(worker)
	w.running++
	w.builders[r.BuilderName]++
	delete(d.head, r.ID)
	d.mu.Lock()
	d.running[worker] = append(d.running[worker], r.ID)
	d.mu.Unlock()
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		requeue := d.starter.RunBuild(r, worker)
		d.send(event{done: &doneEvent{req: r, worker: worker, requeue: requeue}})
	}()
}

// reason says why a request for builder cannot start now.
func (d *Dispatcher) reason(builder string) string {
	b, ok := d.builders[builder]
	if !ok {
		return fmt.Sprintf("builder %s is not in the configuration", builder)
	}
	var connected []string
	for _, name := range b.Workers {
		if w := d.workers[name]; w != nil && w.attached {
			connected = append(connected, name)
		}
	}
	if len(connected) == 0 {
		return fmt.Sprintf("no worker connected for builder %s (it runs on %s)", builder, strings.Join(b.Workers, ", "))
	}
	for _, name := range connected {
		w := d.workers[name]
		if w.builders[builder] > 0 {
			continue
		}
		if max := d.limits[name]; max > 0 && w.running >= max {
			continue
		}
		if l := d.blockingLock(b, name); l != "" {
			return fmt.Sprintf("waiting for lock %s", l)
		}
	}
	if len(connected) == 1 {
		return fmt.Sprintf("worker %s is busy", connected[0])
	}
	return fmt.Sprintf("all %d connected workers busy", len(connected))
}

// lockState counts a lock instance's holders.
type lockState struct {
	counting  int
	exclusive bool
}

type heldLock struct {
	key       string
	exclusive bool
}

// lockKey names the instance of lock l a build on worker uses.
func lockKey(l Lock, worker string) string {
	if l.PerWorker {
		return l.Name + "@" + worker
	}
	return l.Name
}

func (l Lock) max(worker string) int {
	if n, ok := l.MaxCountForWorker[worker]; ok && l.PerWorker {
		return n
	}
	if l.MaxCount < 1 {
		return 1
	}
	return l.MaxCount
}

// blockingLock returns the name of a lock that keeps builder b from
// starting on worker now, or "".
func (d *Dispatcher) blockingLock(b Builder, worker string) string {
	for _, a := range d.accesses(b, worker) {
		l, ok := d.locks[a.Lock]
		if !ok {
			continue // validated by config; a lock removed by reconfig no longer binds
		}
		st := d.held[lockKey(l, worker)]
		if st == nil {
			continue
		}
		if st.exclusive || (a.Exclusive && st.counting > 0) || (!a.Exclusive && st.counting >= l.max(worker)) {
			return a.Lock
		}
	}
	return ""
}

// accesses lists the locks a build of b on worker takes: the builder's,
// then the worker's.
func (d *Dispatcher) accesses(b Builder, worker string) []LockAccess {
	w := d.wlocks[worker]
	if len(w) == 0 {
		return b.Locks
	}
	return append(append([]LockAccess(nil), b.Locks...), w...)
}

func (d *Dispatcher) acquire(req int64, b Builder, worker string) {
	for _, a := range d.accesses(b, worker) {
		l, ok := d.locks[a.Lock]
		if !ok {
			continue
		}
		key := lockKey(l, worker)
		st := d.held[key]
		if st == nil {
			st = &lockState{}
			d.held[key] = st
		}
		if a.Exclusive {
			st.exclusive = true
		} else {
			st.counting++
		}
		d.holds[req] = append(d.holds[req], heldLock{key: key, exclusive: a.Exclusive})
	}
}

func (d *Dispatcher) release(req int64) {
	for _, h := range d.holds[req] {
		st := d.held[h.key]
		if st == nil {
			continue
		}
		if h.exclusive {
			st.exclusive = false
		} else {
			st.counting--
		}
		if !st.exclusive && st.counting <= 0 {
			delete(d.held, h.key)
		}
	}
	delete(d.holds, req)
}
