// Package dispatch matches pending build requests with idle workers. It is
// event-driven: it acts when a request is queued, a worker attaches or
// detaches, a build ends or the configuration changes, and never polls.
package dispatch

import (
	"context"
	"errors"
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

	// The builder's functions (can_start, next_worker, next_build), or
	// nil. They are called on the dispatcher's goroutine and must not
	// block for long. An error means the default behaviour (the worker is
	// eligible; the least busy worker; the oldest request) and is shown as
	// the request's waiting reason while it waits.
	CanStart func(w Candidate, req store.BuildRequest) (bool, error)
	// NextWorker returns one of ws, or "" for no worker now.
	NextWorker func(ws []Candidate, req store.BuildRequest) (string, error)
	// NextBuild returns the id of the request among reqs to start first,
	// or 0 for none now.
	NextBuild func(reqs []store.BuildRequest) (int64, error)
}

// Candidate is a worker offered to a builder's functions: attached, under
// its limits, with the builder's locks free there.
type Candidate struct {
	Name    string
	Running int // builds running on it now
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
	// Latent, for a slot of a latent worker, is that worker's name: the
	// dispatcher may start an instance in the slot (see latent.go).
	Latent string
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
	stepLock *stepLockReq // a new wait for step locks
	stepDone *stepLockReq // a release, or a withdrawn wait
	pause    *pauseEvent
	priority *priorityEvent // priority.go
	latent   *latentEvent   // latent.go
}

// stepLockReq is a step's wait for its locks.
type stepLockReq struct {
	req     int64
	worker  string
	locks   []LockAccess
	blocked chan string   // the lock it waits for, sent once (buffered)
	granted chan struct{} // closed when the locks are held

	// Owned by the Run goroutine.
	held      []heldLock
	isGranted bool
	told      bool
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
	// paused: the worker gets no new builds (see Pause); it survives
	// detaching and attaching again.
	paused      bool
	pauseReason string
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
	steps    []*stepLockReq    // step lock waits, oldest first
	funcErrs map[int64]string  // request id → why a builder function failed for it
	// stepWanted are the lock instances waiting steps wait for.
	stepWanted map[string]bool

	mu      sync.Mutex
	reasons map[int64]string

	hooks Hooks // see SetHooks

	lat latentState // latent.go; owned by the Run goroutine
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
		funcErrs: make(map[int64]string),
	}
}

// Add queues requests (new ones, or the pending ones found at start-up).
func (d *Dispatcher) Add(reqs ...store.BuildRequest) {
	if len(reqs) > 0 {
		d.send(event{add: reqs})
		if h := d.hooks.Added; h != nil {
			h(reqs)
		}
	}
}

// Remove drops pending requests (cancelled ones) from the queue; ids that
// are not pending are ignored.
func (d *Dispatcher) Remove(ids ...int64) {
	if len(ids) > 0 {
		d.send(event{remove: ids})
		if h := d.hooks.Removed; h != nil {
			h(ids)
		}
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

// ErrStopped is returned by AcquireStepLocks once the dispatcher has stopped.
var ErrStopped = errors.New("dispatcher stopped")

// AcquireStepLocks waits until the step locks are granted to a step of the
// build for request requestID running on worker, and returns the function
// that releases them (call it once). Waiting step locks are granted before
// new builds start, oldest wait first. waiting, if not nil, is called (on
// the caller's goroutine) with the name of a lock the step waits for, once,
// when the locks are not free at once. If ctx ends first the wait is
// withdrawn and ctx's error returned.
func (d *Dispatcher) AcquireStepLocks(ctx context.Context, requestID int64, worker string, locks []LockAccess, waiting func(lock string)) (release func(), err error) {
	if len(locks) == 0 {
		return func() {}, nil
	}
	sl := &stepLockReq{req: requestID, worker: worker, locks: locks, blocked: make(chan string, 1), granted: make(chan struct{})}
	select {
	case d.events <- event{stepLock: sl}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.quit:
		return nil, ErrStopped
	}
	var once sync.Once
	release = func() { once.Do(func() { d.send(event{stepDone: sl}) }) }
	for {
		select {
		case <-sl.granted:
			return release, nil
		case l := <-sl.blocked:
			if waiting != nil {
				waiting(l)
			}
		case <-ctx.Done():
			release() // withdraws the wait, or releases what was granted meanwhile
			return nil, ctx.Err()
		case <-d.quit:
			return nil, ErrStopped
		}
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

// Run processes events until ctx ends, then waits for the builds it started
// to return. While it waits it starts no build but still serves the step
// locks of the running ones.
func (d *Dispatcher) Run(ctx context.Context) {
	defer d.once.Do(func() { close(d.quit) })
	for {
		select {
		case <-ctx.Done():
			d.drain()
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

// drain serves events other than starting builds until every build
// started has returned.
func (d *Dispatcher) drain() {
	idle := make(chan struct{})
	go func() { d.inflight.Wait(); close(idle) }()
	for {
		select {
		case <-idle:
			return
		case ev := <-d.events:
			d.apply(ev)
			d.grantSteps()
			for _, ch := range d.waiting {
				ch <- Snapshot{Pending: append([]store.BuildRequest(nil), d.pending...), Reasons: d.Reasons()}
			}
			d.waiting = d.waiting[:0]
		}
	}
}

func (d *Dispatcher) apply(ev event) {
	switch {
	case ev.stepLock != nil:
		d.steps = append(d.steps, ev.stepLock)
	case ev.stepDone != nil:
		sl := ev.stepDone
		if sl.isGranted {
			d.releaseHeld(sl.held)
			sl.held = nil
			break
		}
		for i, w := range d.steps {
			if w == sl {
				d.steps = append(d.steps[:i], d.steps[i+1:]...)
				break
			}
		}
	case ev.add != nil:
		for _, r := range ev.add {
			d.insert(r)
		}
	case ev.remove != nil:
		drop := make(map[int64]bool, len(ev.remove))
		for _, id := range ev.remove {
			drop[id] = true
			delete(d.head, id)
			delete(d.funcErrs, id)
			d.forgetLatent(id)
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
		d.lat.unreserve(ev.attach) // whoever comes first takes it
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
		d.configLatent(ev.config)
		// Builder priorities may have changed the order.
		sort.SliceStable(d.pending, func(i, j int) bool { return d.before(d.pending[i], d.pending[j]) })
	case ev.pause != nil:
		w := d.worker(ev.pause.worker)
		w.paused, w.pauseReason = ev.pause.paused, ev.pause.reason
	case ev.priority != nil:
		d.reprioritize(ev.priority)
	case ev.latent != nil:
		d.applyLatent(ev.latent)
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

// assign grants the step locks that are free, then walks the queue in
// order and starts every request that has an eligible idle worker. A
// builder found without capacity is skipped for the rest of the pass, so a
// long queue for a busy builder costs little.
func (d *Dispatcher) assign(ctx context.Context) {
	d.grantSteps()
	full := make(map[string]bool)
	fullWhy := make(map[string]string) // a full builder's latent workers' reason
	taken := make(map[int64]bool)      // started in this pass
	reasons := make(map[int64]string)
	for i := 0; i < len(d.pending); i++ {
		r := d.pending[i]
		if taken[r.ID] {
			continue
		}
		if ctx.Err() != nil || full[r.BuilderName] {
			reasons[r.ID] = d.waitReason(r, fullWhy[r.BuilderName])
			continue
		}
		delete(d.funcErrs, r.ID)
		b := d.builders[r.BuilderName]
		if b.NextBuild != nil && d.pickAny(b) {
			chosen, ok := d.nextBuild(b, d.pending[i:], taken)
			if !ok {
				full[r.BuilderName] = true
				reasons[r.ID] = d.reason(r)
				continue
			}
			r = chosen
		}
		w := d.pick(r)
		if w == "" {
			why, waits := "", false
			if ctx.Err() == nil {
				why, waits = d.startLatent(r, b) // latent.go
			}
			if b.CanStart == nil && b.NextWorker == nil && !waits {
				full[r.BuilderName], fullWhy[r.BuilderName] = true, why
			}
			if r.ID != d.pending[i].ID {
				// next_build's choice cannot start: neither can the rest.
				full[r.BuilderName], fullWhy[r.BuilderName] = true, why
				reasons[r.ID] = d.waitReason(r, why)
				i-- // give pending[i] its reason too
				continue
			}
			reasons[r.ID] = d.waitReason(r, why)
			continue
		}
		delete(reasons, r.ID)
		delete(d.funcErrs, r.ID)
		taken[r.ID] = true
		d.start(r, w)
		if r.ID != d.pending[i].ID {
			i-- // pending[i] was passed over for r: look at it again
		}
	}
	kept := d.pending[:0]
	for _, r := range d.pending {
		if !taken[r.ID] {
			kept = append(kept, r)
		}
	}
	// Clear the tail so dropped entries do not pin memory.
	for i := len(kept); i < len(d.pending); i++ {
		d.pending[i] = store.BuildRequest{}
	}
	d.pending = kept
	for id := range d.funcErrs {
		if _, ok := reasons[id]; !ok {
			delete(d.funcErrs, id)
		}
	}
	d.mu.Lock()
	d.reasons = reasons
	d.mu.Unlock()
}

// nextBuild asks b's next_build which of its pending requests in rest (not
// yet taken) starts first. ok is false when it chose none.
func (d *Dispatcher) nextBuild(b Builder, rest []store.BuildRequest, taken map[int64]bool) (store.BuildRequest, bool) {
	var cands []store.BuildRequest
	for _, r := range rest {
		if r.BuilderName == b.Name && !taken[r.ID] {
			cands = append(cands, r)
		}
	}
	id, err := b.NextBuild(append([]store.BuildRequest(nil), cands...))
	if err != nil {
		d.funcFailed("next_build", b.Name, err, cands...)
		return cands[0], true
	}
	if id == 0 {
		for _, r := range cands {
			d.funcErrs[r.ID] = "next_build chose no request to start now"
		}
		return store.BuildRequest{}, false
	}
	for _, r := range cands {
		if r.ID == id {
			return r, true
		}
	}
	d.funcFailed("next_build", b.Name, fmt.Errorf("returned request %d, which is not pending", id), cands...)
	return cands[0], true
}

// funcFailed logs a builder function's failure, with its Starlark
// traceback if it has one, and records it as the requests' waiting reason.
func (d *Dispatcher) funcFailed(fn, builder string, err error, reqs ...store.BuildRequest) {
	attrs := []any{"builder", builder, "err", err}
	var bt interface{ Backtrace() string }
	if errors.As(err, &bt) {
		if s := bt.Backtrace(); s != "" {
			attrs = append(attrs, "traceback", s)
		}
	}
	d.log.Warn(fn+" failed; using the default", attrs...)
	for _, r := range reqs {
		d.funcErrs[r.ID] = fmt.Sprintf("%s failed: %v", fn, err)
	}
}

// candidates returns the workers that could run a build of b now, before
// its functions are asked: attached, under their limits, not running b,
// with b's locks free.
func (d *Dispatcher) candidates(b Builder) []Candidate {
	var out []Candidate
	for _, name := range b.Workers {
		w := d.workers[name]
		if w == nil || !w.attached || w.paused || w.builders[b.Name] > 0 {
			continue
		}
		if max := d.limits[name]; max > 0 && w.running >= max {
			continue
		}
		if d.blockingLock(b, name) != "" {
			continue
		}
		out = append(out, Candidate{Name: name, Running: w.running})
	}
	return out
}

// pickAny says whether some worker could run a build of b now.
func (d *Dispatcher) pickAny(b Builder) bool { return len(d.candidates(b)) > 0 }

// pick returns the worker to run r on, or "": the least busy eligible
// worker whose locks are free, unless the builder's can_start and
// next_worker decide otherwise.
func (d *Dispatcher) pick(r store.BuildRequest) string {
	b, ok := d.builders[r.BuilderName]
	if !ok {
		return ""
	}
	cands := d.candidates(b)
	if len(cands) == 0 {
		return ""
	}
	if b.CanStart != nil {
		kept := cands[:0]
		for _, c := range cands {
			ok, err := b.CanStart(c, r)
			if err != nil {
				d.funcFailed("can_start", b.Name, err, r)
				ok = true
			}
			if ok {
				kept = append(kept, c)
			}
		}
		cands = kept
		if len(cands) == 0 {
			if _, failed := d.funcErrs[r.ID]; !failed {
				d.funcErrs[r.ID] = "can_start refused every available worker"
			}
			return ""
		}
	}
	if b.NextWorker != nil {
		name, err := b.NextWorker(append([]Candidate(nil), cands...), r)
		if err == nil && name == "" {
			d.funcErrs[r.ID] = "next_worker chose no worker"
			return ""
		}
		if err == nil {
			for _, c := range cands {
				if c.Name == name {
					return name
				}
			}
			err = fmt.Errorf("returned %q, which is not one of the workers offered", name)
		}
		d.funcFailed("next_worker", b.Name, err, r)
	}
	best, bestLoad := "", 0
	for _, c := range cands {
		if best == "" || c.Running < bestLoad {
			best, bestLoad = c.Name, c.Running
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
	d.forgetLatent(r.ID)
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		requeue := d.starter.RunBuild(r, worker)
		d.send(event{done: &doneEvent{req: r, worker: worker, requeue: requeue}})
	}()
}

// reason says why request r cannot start now.
func (d *Dispatcher) reason(r store.BuildRequest) string {
	if why, ok := d.funcErrs[r.ID]; ok {
		return why
	}
	builder := r.BuilderName
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
	connected, paused := d.unpaused(connected)
	if len(connected) == 0 {
		return paused
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
	busy := fmt.Sprintf("all %d connected workers busy", len(connected))
	if len(connected) == 1 {
		busy = fmt.Sprintf("worker %s is busy", connected[0])
	}
	if paused != "" {
		busy += "; " + paused
	}
	return busy
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
// starting on worker now, or "". A lock a step waits for blocks new builds
// too: waiting steps go first.
func (d *Dispatcher) blockingLock(b Builder, worker string) string {
	acc := d.accesses(b, worker)
	for _, a := range acc {
		if l, ok := d.locks[a.Lock]; ok && d.stepWanted[lockKey(l, worker)] {
			return a.Lock
		}
	}
	return d.blockingAccess(acc, worker, nil)
}

// blockingAccess returns the name of a lock among acc that cannot be taken
// on worker now, or "". Lock instances in mine (held by the asker's own
// build) do not block.
func (d *Dispatcher) blockingAccess(acc []LockAccess, worker string, mine map[string]bool) string {
	for _, a := range acc {
		l, ok := d.locks[a.Lock]
		if !ok {
			continue // validated by config; a lock removed by reconfig no longer binds
		}
		key := lockKey(l, worker)
		if mine[key] {
			continue
		}
		st := d.held[key]
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
	d.holds[req] = append(d.holds[req], d.acquireAccess(d.accesses(b, worker), worker, nil)...)
}

// acquireAccess takes the locks in acc on worker, except the instances in
// mine, and returns what it took.
func (d *Dispatcher) acquireAccess(acc []LockAccess, worker string, mine map[string]bool) []heldLock {
	var out []heldLock
	for _, a := range acc {
		l, ok := d.locks[a.Lock]
		if !ok {
			continue
		}
		key := lockKey(l, worker)
		if mine[key] {
			continue
		}
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
		out = append(out, heldLock{key: key, exclusive: a.Exclusive})
	}
	return out
}

func (d *Dispatcher) release(req int64) {
	d.releaseHeld(d.holds[req])
	delete(d.holds, req)
}

func (d *Dispatcher) releaseHeld(hs []heldLock) {
	for _, h := range hs {
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
}

// grantSteps grants the waiting step locks that are free, oldest wait
// first. A wait that cannot be granted keeps later waits (and new builds)
// from taking the same lock instances, so an exclusive wait is not starved
// by a stream of counting ones.
func (d *Dispatcher) grantSteps() {
	wanted := make(map[string]bool)
	kept := d.steps[:0]
	for _, sl := range d.steps {
		mine := d.ownKeys(sl.req)
		blocked := d.blockingAccess(sl.locks, sl.worker, mine)
		if blocked == "" {
			for _, a := range sl.locks {
				if l, ok := d.locks[a.Lock]; ok && wanted[lockKey(l, sl.worker)] {
					blocked = a.Lock
					break
				}
			}
		}
		if blocked != "" {
			for _, a := range sl.locks {
				if l, ok := d.locks[a.Lock]; ok {
					wanted[lockKey(l, sl.worker)] = true
				}
			}
			if !sl.told {
				sl.told = true
				sl.blocked <- blocked // buffered; sent once
			}
			kept = append(kept, sl)
			continue
		}
		sl.held = d.acquireAccess(sl.locks, sl.worker, mine)
		sl.isGranted = true
		close(sl.granted)
	}
	for i := len(kept); i < len(d.steps); i++ {
		d.steps[i] = nil
	}
	d.steps = kept
	d.stepWanted = wanted
}

// ownKeys returns the lock instances the build of request req holds for
// the whole build: a step may use them again without waiting for itself.
func (d *Dispatcher) ownKeys(req int64) map[string]bool {
	hs := d.holds[req]
	if len(hs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(hs))
	for _, h := range hs {
		m[h.key] = true
	}
	return m
}
