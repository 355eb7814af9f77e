// Package scheduler runs the schedulers of master.star: it turns changes,
// timers, trigger steps and finished buildsets into buildsets in the store,
// and hands their build requests to the dispatcher.
//
// Every scheduler's state lives in the store, so that a restarted master
// neither builds a change twice nor misses one, and re-arms the timers it
// had: the last change each change-driven scheduler looked at (its
// watermark) is recorded in the same transaction as its classification of
// the changes, a buildset consumes the changes it builds in the transaction
// that adds it, and tree-stable deadlines and the last periodic or nightly
// run are object state ("scheduler:<name>").
//
// One goroutine, Run's, does all of a Manager's scheduling work in the
// order events arrive, so schedulers need no locks of their own; the
// exported methods only queue events, except Trigger and WaitBuildset,
// which the build runner calls from its own goroutines.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// Queue takes the build requests of new buildsets: the dispatcher.
type Queue interface {
	Add(reqs ...store.BuildRequest)
}

// Options configure a Manager.
type Options struct {
	Store  *store.Store
	Queue  Queue
	Clock  clock.Clock  // nil: clock.Real
	Logger *slog.Logger // nil: slog.Default()
}

// retryDelay is how long a scheduler waits before trying again after the
// store refused something (a buildset, its state).
const retryDelay = 30 * time.Second

// changePage is how many changes are read from the store at a time.
const changePage = 1000

// Manager runs the configured schedulers. Its methods are safe for
// concurrent use.
type Manager struct {
	st  *store.Store
	q   Queue
	clk clock.Clock
	log *slog.Logger

	wake chan struct{} // one pending wake-up for Run

	mu         sync.Mutex
	events     []event
	queuedCfg  bool // a config event is in events
	queuedPoll bool // a changes event is in events
	running    bool
	cfg        *config.Config              // the last SetConfig
	byName     map[string]config.Scheduler // cfg's schedulers
	dependents map[string][]string         // upstream name -> dependent schedulers, from cfg
	waiters    map[int64][]chan result.Result
	builderIDs map[string]int64 // builders never lose their id, so this is never stale
	status     []Status
	// cfgMark is the last change stored when the oldest SetConfig not yet
	// applied was called, if cfgMarkOK.
	cfgMark   int64
	cfgMarkOK bool

	// timerDone, if set (by tests, before Run), is called after each
	// timer's event.
	timerDone func()

	dis disabledState // schedulers disabled through the API (enable.go)

	// Owned by Run's goroutine.
	scheds map[string]*entry
	order  []string // scheduler names, in declaration order
	retryT *timer
	swept  bool // the state of schedulers removed while the master was down is dropped
	// startMark is where a new change-driven scheduler starts: the last
	// change stored when the configuration that added it was set (if
	// startMarkOK).
	startMark   int64
	startMarkOK bool
}

// entry is one running scheduler.
type entry struct {
	s       sched
	started bool  // its state is loaded and its timers armed
	err     error // the last thing that went wrong, until something works
}

// sched is one scheduler's runtime, called only from Run's goroutine.
type sched interface {
	// start loads the scheduler's state (the values of its object) and
	// arms its timers.
	start(ctx context.Context, state map[string]json.RawMessage) error
	// update applies a new configuration of the same name and kind.
	update(ctx context.Context, sc config.Scheduler) error
	// retry does again what failed.
	retry(ctx context.Context) error
	// consumer returns the part that classifies changes, or nil.
	consumer() *changeSched
	kind() string // as kindOf
	stop()
	status(now time.Time) Status
}

// Status is what a scheduler is waiting for, for the web UI.
type Status struct {
	Name     string
	Kind     string // the builtin that declared it: "single_branch_scheduler", "nightly", …
	Builders []string
	// Waiting says, for people, what the scheduler waits for: "tree
	// stable until 12:03:05 (3 changes)", "next run 2026-11-23 03:00
	// Europe/Paris", "waiting for upstream build".
	Waiting string
	Next    time.Time // when it acts next by itself; zero if only an event will make it act
	Pending int       // changes it has kept and not built yet
	LastRun time.Time // periodic and nightly: when it last ran; zero if never
	Error   string    // what last went wrong, while it does; "" when all is well
	// Disabled is set while the scheduler is disabled (SetEnabled);
	// Waiting then says who disabled it and why.
	Disabled bool
}

type event struct {
	config bool
	poll   bool
	timer  *timer
	done   *completion
	flush  chan struct{}
}

type completion struct {
	id  int64
	res result.Result
}

// New returns a Manager that does nothing until SetConfig and Run.
func New(o Options) *Manager {
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Manager{
		st: o.Store, q: o.Queue, clk: o.Clock, log: o.Logger,
		wake:       make(chan struct{}, 1),
		waiters:    map[int64][]chan result.Result{},
		builderIDs: map[string]int64{},
		scheds:     map[string]*entry{},
	}
}

// SetConfig makes cfg's schedulers the ones that run: schedulers that stay
// (same name and kind) keep their timers, pending changes and state, and
// take the new settings from their next change or run; removed ones stop,
// and their state and kept changes are dropped; new ones start from the
// changes stored after this call. The builders must be registered in the
// store (EnsureBuilder) before the schedulers build them. It reads the
// last change's id and returns; Run applies cfg.
func (m *Manager) SetConfig(cfg *config.Config) {
	if cfg == nil {
		return
	}
	byName := make(map[string]config.Scheduler, len(cfg.Schedulers))
	deps := map[string][]string{}
	for _, s := range cfg.Schedulers {
		byName[s.SchedulerName()] = s
		if d, ok := s.(*config.Dependent); ok {
			deps[d.Upstream] = append(deps[d.Upstream], d.Name)
		}
	}
	// New schedulers start after the changes stored now, not when Run
	// applies cfg: a change stored in between (a poller's at launch, a
	// webhook's) would be neither history nor seen.
	mark, err := m.st.LastChangeID(context.Background())
	if err != nil {
		m.log.Error("scheduler: read the last change; new schedulers will start from the last change when they start", "err", err)
	}
	m.mu.Lock()
	m.cfg, m.byName, m.dependents = cfg, byName, deps
	if !m.cfgMarkOK && err == nil { // else an earlier SetConfig's, not applied yet, is kept
		m.cfgMark, m.cfgMarkOK = mark, true
	}
	m.mu.Unlock()
	m.loadDisabled(cfg)
	m.enqueue(event{config: true})
}

// ChangesAdded tells the schedulers that changes were stored. It does not
// block. The schedulers read new changes from the store, after the last
// one each has looked at, so a change is neither missed nor seen twice
// whatever order the calls come in (or if one never comes: Run reads what
// was stored while the master was down).
func (m *Manager) ChangesAdded(cs []store.Change) {
	m.enqueue(event{poll: true})
}

// BuildsetComplete tells the schedulers that buildset id completed with
// res: WaitBuildset returns, and dependent schedulers act. It does not
// block: call it from store.OnBuildsetComplete.
func (m *Manager) BuildsetComplete(id int64, res result.Result) {
	m.mu.Lock()
	for _, ch := range m.waiters[id] {
		ch <- res // buffered, one send each
	}
	delete(m.waiters, id)
	m.mu.Unlock()
	m.enqueue(event{done: &completion{id, res}})
}

func (m *Manager) enqueue(ev event) {
	m.mu.Lock()
	switch {
	case ev.config && m.queuedCfg, ev.poll && m.queuedPoll:
		m.mu.Unlock()
		return
	case ev.config:
		m.queuedCfg = true
	case ev.poll:
		m.queuedPoll = true
	}
	m.events = append(m.events, ev)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run runs the schedulers until ctx ends; it then stops their timers and
// returns nil. Their state stays in the store for the next Run. A Manager
// runs once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	m.running = true
	m.mu.Unlock()
	// Changes stored while the master was down.
	m.enqueue(event{poll: true})
	defer func() {
		for _, e := range m.scheds {
			e.s.stop()
		}
		m.retryT.stop()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		}
		m.mu.Lock()
		evs := m.events
		m.events, m.queuedCfg, m.queuedPoll = nil, false, false
		m.mu.Unlock()
		for _, ev := range evs {
			if ctx.Err() != nil {
				return nil
			}
			m.handle(ctx, ev)
		}
		m.publishStatus()
		for _, ev := range evs {
			if ev.flush != nil {
				close(ev.flush)
			}
		}
	}
}

func (m *Manager) handle(ctx context.Context, ev event) {
	switch {
	case ev.config:
		m.apply(ctx)
		m.poll(ctx)
	case ev.poll:
		m.poll(ctx)
	case ev.timer != nil:
		if ev.timer.live {
			ev.timer.live = false
			ev.timer.fn(ctx)
		}
		if m.timerDone != nil {
			m.timerDone()
		}
	case ev.done != nil:
		m.completed(ctx, ev.done.id, ev.done.res)
	}
}

// apply makes the last SetConfig's schedulers the running ones.
func (m *Manager) apply(ctx context.Context) {
	m.mu.Lock()
	cfg := m.cfg
	m.startMark, m.startMarkOK = m.cfgMark, m.cfgMarkOK
	m.cfgMarkOK = false
	m.mu.Unlock()
	want := make(map[string]config.Scheduler, len(cfg.Schedulers))
	for _, sc := range cfg.Schedulers {
		want[sc.SchedulerName()] = sc
	}
	if !m.swept {
		m.sweep(ctx, want)
	}
	for _, name := range slices.Sorted(maps.Keys(m.scheds)) {
		e := m.scheds[name]
		sc, ok := want[name]
		if ok && kindOf(sc) == e.s.kind() {
			continue
		}
		e.s.stop()
		delete(m.scheds, name)
		if err := m.forget(ctx, name); err != nil {
			m.log.Error("scheduler removed: drop its state", "scheduler", name, "err", err)
		} else {
			m.log.Info("scheduler removed: its timers are cancelled and its kept changes dropped", "scheduler", name)
		}
	}
	m.order = m.order[:0]
	for _, sc := range cfg.Schedulers {
		name := sc.SchedulerName()
		m.order = append(m.order, name)
		if e, ok := m.scheds[name]; ok {
			if !e.started {
				// A failed start may have armed timers: they must not
				// build next to the new one's.
				e.s.stop()
				e.s = newSched(m, sc)
				m.start(ctx, name, e)
				continue
			}
			if err := e.s.update(ctx, sc); err != nil {
				e.err = err
				m.log.Error("scheduler reconfig", "scheduler", name, "err", err)
				m.scheduleRetry()
			}
			continue
		}
		e := &entry{s: newSched(m, sc)}
		m.scheds[name] = e
		m.start(ctx, name, e)
	}
}

// sweep drops, at the first configuration, what the store keeps of
// schedulers that are not in it: they were removed while the master was
// down, and one coming back later must start afresh, not build every
// change since.
func (m *Manager) sweep(ctx context.Context, want map[string]config.Scheduler) {
	names, err := m.st.StoredSchedulers(ctx)
	if err != nil {
		m.log.Error("scheduler: list the schedulers with stored state", "err", err)
		return
	}
	for _, name := range names {
		if _, ok := want[name]; ok {
			continue
		}
		if err := m.forget(ctx, name); err != nil {
			m.log.Error("scheduler removed while the master was down: drop its state", "scheduler", name, "err", err)
			return
		}
		m.log.Info("scheduler removed while the master was down: its kept changes and state are dropped", "scheduler", name)
	}
	m.swept = true
}

func newSched(m *Manager, sc config.Scheduler) sched {
	switch sc := sc.(type) {
	case *config.SingleBranchScheduler, *config.AnyBranchScheduler:
		return newChangeSched(m, sc)
	case *config.Periodic, *config.Nightly:
		return newTimedSched(m, sc)
	case *config.Dependent:
		return &depSched{m: m, cfg: sc}
	default:
		return &passiveSched{cfg: sc}
	}
}

// kindOf returns the builtin's name for sc.
func kindOf(sc config.Scheduler) string {
	switch sc.(type) {
	case *config.SingleBranchScheduler:
		return "single_branch_scheduler"
	case *config.AnyBranchScheduler:
		return "any_branch_scheduler"
	case *config.Periodic:
		return "periodic"
	case *config.Nightly:
		return "nightly"
	case *config.Triggerable:
		return "triggerable"
	case *config.Dependent:
		return "dependent"
	case *config.ForceScheduler:
		return "force_scheduler"
	case *config.TryScheduler:
		return "try_scheduler"
	}
	return fmt.Sprintf("%T", sc)
}

// stateful reports whether schedulers of kind keep state in the store.
func stateful(kind string) bool {
	return kind != "triggerable" && kind != "force_scheduler" && kind != "try_scheduler"
}

// objName is the store object holding scheduler name's state.
func objName(name string) string { return store.SchedulerStatePrefix + name }

// start loads e's state and starts it. The state of a scheduler that had
// another kind under the same name is dropped first.
func (m *Manager) start(ctx context.Context, name string, e *entry) {
	kind := e.s.kind()
	var state map[string]json.RawMessage
	err := func() error {
		if !stateful(kind) {
			return nil
		}
		var err error
		state, err = m.st.ObjectState(ctx, objName(name))
		if err != nil {
			return err
		}
		var had string
		if raw, ok := state["kind"]; ok {
			_ = json.Unmarshal(raw, &had)
		}
		switch {
		case had == kind:
		case had == "":
			// New. What state it has, build recorded since SetConfig: a
			// dependent's subscriptions to its upstream's buildsets.
			if err := m.st.SetState(ctx, store.StateValue{Object: objName(name), Name: "kind", Value: kind}); err != nil {
				return err
			}
		default:
			m.log.Info("scheduler changed kind: starting afresh", "scheduler", name, "was", had, "now", kind)
			if err := m.forget(ctx, name, store.StateValue{Object: objName(name), Name: "kind", Value: kind}); err != nil {
				return err
			}
			state = map[string]json.RawMessage{}
		}
		return nil
	}()
	if err == nil {
		e.err = nil // start may record a later failure (a buildset) for retry
		err = e.s.start(ctx, state)
	}
	if err != nil {
		e.err = fmt.Errorf("start: %w", err)
		m.log.Error("scheduler start", "scheduler", name, "err", err)
		m.scheduleRetry()
		return
	}
	e.started = true
}

// forget drops scheduler name's kept changes and state, and stores set
// instead, in one transaction.
func (m *Manager) forget(ctx context.Context, name string, set ...store.StateValue) error {
	state, err := m.st.ObjectState(ctx, objName(name))
	if err != nil {
		return err
	}
	var vals []store.StateValue
	for k := range state {
		vals = append(vals, store.StateValue{Object: objName(name), Name: k})
	}
	return m.st.ForgetSchedulerChanges(ctx, name, nil, append(vals, set...)...)
}

// poll hands the changes stored after each consumer's watermark to it.
func (m *Manager) poll(ctx context.Context) {
	var cons []*changeSched
	var low int64
	for _, name := range m.order {
		e := m.scheds[name]
		if e == nil || !e.started {
			continue
		}
		if c := e.s.consumer(); c != nil {
			if len(cons) == 0 || c.mark < low {
				low = c.mark
			}
			cons = append(cons, c)
		}
	}
	for len(cons) > 0 {
		cs, err := m.st.ChangesAfter(ctx, low, changePage)
		if err != nil {
			m.log.Error("scheduler: read new changes", "err", err)
			m.scheduleRetry()
			return
		}
		if len(cs) == 0 {
			return
		}
		ok := cons[:0]
		for _, c := range cons {
			if err := c.consume(ctx, cs); err != nil {
				// Its watermark did not move: it must not see the next page
				// before this one.
				m.fail(c.name, fmt.Errorf("classify changes: %w", err))
				continue
			}
			ok = append(ok, c)
		}
		cons = ok
		low = cs[len(cs)-1].ID
		if len(cs) < changePage {
			return
		}
	}
}

// fail records err for scheduler name and schedules a retry.
func (m *Manager) fail(name string, err error) {
	m.log.Error("scheduler", "scheduler", name, "err", err)
	if e := m.scheds[name]; e != nil {
		e.err = err
	}
	m.scheduleRetry()
}

// succeeded clears the error of scheduler name.
func (m *Manager) succeeded(name string) {
	if e := m.scheds[name]; e != nil {
		e.err = nil
	}
}

func (m *Manager) scheduleRetry() {
	if m.retryT != nil && m.retryT.live {
		return
	}
	m.retryT = m.arm(m.clk.Now().Add(retryDelay), m.retry)
}

func (m *Manager) retry(ctx context.Context) {
	for _, name := range m.order {
		e := m.scheds[name]
		switch {
		case e == nil:
		case !e.started:
			m.start(ctx, name, e)
		case e.err != nil:
			if err := e.s.retry(ctx); err != nil {
				m.fail(name, err)
			} else {
				e.err = nil
			}
		}
	}
	m.poll(ctx)
}

// timer is an armed clock timer whose function runs on Run's goroutine.
// live is false once it fired, was stopped or was replaced.
type timer struct {
	at   time.Time
	live bool
	ct   clock.Timer // nil if it was due when armed
	fn   func(ctx context.Context)
}

// arm runs fn on Run's goroutine at at, or as soon as possible if at has
// passed.
func (m *Manager) arm(at time.Time, fn func(ctx context.Context)) *timer {
	t := &timer{at: at, live: true, fn: fn}
	d := at.Sub(m.clk.Now())
	if d <= 0 {
		m.enqueue(event{timer: t})
		return t
	}
	t.ct = m.clk.AfterFunc(d, func() { m.enqueue(event{timer: t}) })
	return t
}

func (t *timer) stop() {
	if t == nil {
		return
	}
	t.live = false
	if t.ct != nil {
		t.ct.Stop()
	}
}

// build adds a buildset of scheduler name for builders, with the
// subscriptions of name's dependent schedulers to it in the same
// transaction, and queues its requests.
func (m *Manager) build(ctx context.Context, name string, builders []string, nb store.NewBuildset) (store.Buildset, []store.BuildRequest, error) {
	ids, err := m.builderIDsFor(ctx, builders)
	if err != nil {
		return store.Buildset{}, nil, err
	}
	nb.BuilderIDs = ids
	props := make(map[string]store.Property, len(nb.Properties)+1)
	maps.Copy(props, nb.Properties)
	props["scheduler"] = store.Property{Value: name, Source: "Scheduler"}
	nb.Properties = props
	if nb.SubmittedAt.IsZero() {
		nb.SubmittedAt = m.clk.Now()
	}
	m.mu.Lock()
	deps := m.dependents[name]
	m.mu.Unlock()
	// The dependents' records that they wait for it go with the buildset:
	// one without them would never be followed by theirs.
	nb.State = slices.Clone(nb.State)
	for _, d := range deps {
		nb.State = append(nb.State, store.StateValue{Object: objName(d), Name: subPrefix + store.NewBuildsetID, Value: true})
	}
	bs, reqs, err := m.st.AddBuildset(ctx, nb)
	if err != nil {
		return store.Buildset{}, nil, err
	}
	m.q.Add(reqs...)
	m.log.Info("scheduler added a buildset", "scheduler", name, "buildset", bs.ID,
		"builders", builders, "changes", len(nb.ChangeIDs), "reason", nb.Reason)
	return bs, reqs, nil
}

func (m *Manager) builderIDsFor(ctx context.Context, names []string) ([]int64, error) {
	ids := make([]int64, 0, len(names))
	for _, n := range names {
		m.mu.Lock()
		id, ok := m.builderIDs[n]
		m.mu.Unlock()
		if !ok {
			b, err := m.st.GetBuilderByName(ctx, n)
			if err != nil {
				return nil, fmt.Errorf("builder %q: %w", n, err)
			}
			id = b.ID
			m.mu.Lock()
			m.builderIDs[n] = id
			m.mu.Unlock()
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// TriggerRequest asks a triggerable scheduler for a buildset: what a
// trigger step sends.
type TriggerRequest struct {
	Scheduler          string // a triggerable scheduler's name
	Reason             string // "": "The Triggerable scheduler 'x' triggered this build"
	Properties         map[string]store.Property
	SourceStamps       []store.SourceStamp
	ChangeIDs          []int64
	ParentBuildID      int64
	ParentRelationship string
}

// Trigger adds a buildset for the builders of the triggerable scheduler
// r.Scheduler and queues its requests. Its properties are r.Properties
// and "scheduler". It works as soon as SetConfig was called, whether or
// not Run is running.
func (m *Manager) Trigger(ctx context.Context, r TriggerRequest) (store.Buildset, []store.BuildRequest, error) {
	m.mu.Lock()
	sc := m.byName[r.Scheduler]
	var names []string
	for _, s := range m.byName {
		if _, ok := s.(*config.Triggerable); ok {
			names = append(names, s.SchedulerName())
		}
	}
	m.mu.Unlock()
	slices.Sort(names)
	known := "there is no triggerable scheduler"
	if len(names) > 0 {
		known = "triggerable schedulers: " + strings.Join(names, ", ")
	}
	if sc == nil {
		return store.Buildset{}, nil, fmt.Errorf("trigger: no scheduler named %q (%s)", r.Scheduler, known)
	}
	t, ok := sc.(*config.Triggerable)
	if !ok {
		return store.Buildset{}, nil, fmt.Errorf("trigger: scheduler %q is a %s, not a triggerable (%s)", r.Scheduler, kindOf(sc), known)
	}
	if why, off := m.disabledWhy(t.Name); off {
		return store.Buildset{}, nil, fmt.Errorf("trigger: scheduler %q is disabled (%s)", t.Name, why)
	}
	reason := r.Reason
	if reason == "" {
		reason = fmt.Sprintf("The Triggerable scheduler '%s' triggered this build", t.Name)
	}
	bs, reqs, err := m.build(ctx, t.Name, t.Builders, store.NewBuildset{
		Reason:             reason,
		Properties:         r.Properties,
		SourceStamps:       r.SourceStamps,
		ChangeIDs:          r.ChangeIDs,
		ParentBuildID:      r.ParentBuildID,
		ParentRelationship: r.ParentRelationship,
	})
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("trigger %s: %w", t.Name, err)
	}
	return bs, reqs, nil
}

// WaitBuildset returns the result of buildset id once it is complete (at
// once if it already is), or ctx's error if ctx ends first. It relies on
// BuildsetComplete being called for every completion.
func (m *Manager) WaitBuildset(ctx context.Context, id int64) (result.Result, error) {
	ch := make(chan result.Result, 1)
	m.mu.Lock()
	m.waiters[id] = append(m.waiters[id], ch)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		ws := slices.DeleteFunc(m.waiters[id], func(c chan result.Result) bool { return c == ch })
		if len(ws) == 0 {
			delete(m.waiters, id)
		} else {
			m.waiters[id] = ws
		}
		m.mu.Unlock()
	}()
	// Registered first, read second: a completion in between is not lost.
	bs, err := m.st.GetBuildset(ctx, id)
	if err != nil {
		return result.None, fmt.Errorf("wait for buildset %d: %w", id, err)
	}
	if bs.Complete {
		return bs.Results, nil
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return result.None, fmt.Errorf("wait for buildset %d: %w", id, ctx.Err())
	}
}

// Status returns every configured scheduler's status, in declaration
// order, as of the last event Run handled.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.status)
}

func (m *Manager) publishStatus() {
	now := m.clk.Now()
	out := make([]Status, 0, len(m.order))
	for _, name := range m.order {
		e := m.scheds[name]
		if e == nil {
			continue
		}
		st := e.s.status(now)
		if !e.started && st.Waiting == "" {
			st.Waiting = "not started"
		}
		if e.err != nil {
			st.Error = e.err.Error()
		}
		if why, off := m.disabledWhy(name); off {
			st.Disabled, st.Waiting = true, "disabled: "+why
		}
		out = append(out, st)
	}
	m.mu.Lock()
	m.status = out
	m.mu.Unlock()
}

// flush returns once Run has handled every event queued before the call:
// tests use it to know the schedulers are idle.
func (m *Manager) flush(ctx context.Context) error {
	ch := make(chan struct{})
	m.enqueue(event{flush: ch})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// passiveSched is a scheduler that acts only when asked: triggerable (see
// Trigger) and force_scheduler (the web UI's form).
type passiveSched struct{ cfg config.Scheduler }

func (s *passiveSched) start(context.Context, map[string]json.RawMessage) error { return nil }
func (s *passiveSched) update(_ context.Context, sc config.Scheduler) error {
	s.cfg = sc
	return nil
}
func (s *passiveSched) retry(context.Context) error { return nil }
func (s *passiveSched) consumer() *changeSched      { return nil }
func (s *passiveSched) kind() string                { return kindOf(s.cfg) }
func (s *passiveSched) stop()                       {}
func (s *passiveSched) status(time.Time) Status {
	st := Status{Name: s.cfg.SchedulerName(), Kind: kindOf(s.cfg), Builders: s.cfg.BuilderNames()}
	switch st.Kind {
	case "triggerable":
		st.Waiting = "waiting for a trigger step"
	case "force_scheduler":
		st.Waiting = "waiting for someone to force a build"
	case "try_scheduler":
		st.Waiting = "waiting for a try job (ssh HOST try)"
	}
	return st
}
