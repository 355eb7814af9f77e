package latent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// Failure counting, as a build farm needs it.
const (
	// MaxRequestStarts is how many failed starts of instances for one build
	// request move it to its builder's other workers (see dispatch).
	MaxRequestStarts = 3
	// MaxFailures is how many failures in a row disable a latent worker
	// until an admin enables it again.
	MaxFailures = 5
	// MinQuarantine is how long a latent worker starts no instance after a
	// failure; it doubles with each further failure in a row, up to
	// MaxQuarantine.
	MinQuarantine = 10 * time.Second
	MaxQuarantine = time.Hour
)

// Defaults of Options.
const (
	DefaultCheckInterval = 30 * time.Second
	DefaultStopTimeout   = 5 * time.Minute
	DefaultAttachGrace   = time.Minute
	DefaultDetachWait    = 10 * time.Second
	stopRetry            = time.Minute
)

// State is where a slot's instance is in its life.
type State string

// The states of a slot, in the order an instance goes through them.
const (
	Stopped  State = "stopped"  // no instance
	Starting State = "starting" // started, not connected yet
	Running  State = "running"  // connected
	Stopping State = "stopping" // being stopped and cleaned up
)

// Dispatcher is told when slots stop and when to look at the queue again.
// Its methods must not block for long (see dispatch.Dispatcher).
type Dispatcher interface {
	// LatentStopping: slot's instance is being stopped; give it no build.
	LatentStopping(slot string)
	// LatentStopped: slot has no instance any more. err says why its
	// instance failed before it connected (a failed start, counted against
	// the request it was started for); nil otherwise.
	LatentStopped(slot string, err error)
	// Kick: a latent worker may start instances again (its quarantine
	// ended, it was enabled).
	Kick()
}

// Session is an instance's connection to the master (a registry.Session).
type Session interface {
	Disconnect(reason error)
}

// StateStore keeps what must survive the master: the instances that may be
// running (so a restarted master stops them) and the disabled workers.
// *store.Store implements it.
type StateStore interface {
	SetState(ctx context.Context, vals ...store.StateValue) error
	ObjectState(ctx context.Context, object string) (map[string]json.RawMessage, error)
}

// Objects of the store's object state the Manager keeps.
const (
	instancesObject = "latent/instances" // name: instance name; value: instanceRecord
	disabledObject  = "latent/disabled"  // name: latent worker; value: its reason
)

type instanceRecord struct {
	Worker  string    `json:"worker"`
	Slot    string    `json:"slot"`
	Started time.Time `json:"started"`
}

// Options configure a Manager. Dispatcher, NewDriver and MasterAddr are
// required.
type Options struct {
	Dispatcher Dispatcher
	// NewDriver makes the driver of a latent worker, at each SetConfig.
	NewDriver func(w *config.LatentWorker) (Driver, error)
	// MasterAddr returns the master's worker port as host:port, for the
	// instances to dial.
	MasterAddr func() string
	// Store keeps instances and disabled workers across restarts; nil keeps
	// nothing.
	Store StateStore
	// GiveUp ends the hold the registry keeps on slot's session after its
	// connection was lost (registry.Registry.GiveUp), so that the builds of
	// an instance known to be gone end now. May be nil.
	GiveUp func(slot string, reason error)
	// Changed is called when a slot's state changed, with no lock held,
	// for live views. May be nil.
	Changed func(slot string)
	Clock   clock.Clock // nil: the real clock
	Logger  *slog.Logger

	// CheckInterval is how often drivers that implement Checker are asked
	// about each instance (default DefaultCheckInterval).
	CheckInterval time.Duration
	// StopTimeout bounds a driver's Stop (default DefaultStopTimeout).
	StopTimeout time.Duration
	// AttachGrace is how long an instance that connected waits for its
	// first build before it counts as idle (default DefaultAttachGrace;
	// at least build_wait_timeout).
	AttachGrace time.Duration
	// DetachWait bounds the wait for a stopping instance's connection to
	// close before its driver stops it (default DefaultDetachWait).
	DetachWait time.Duration
}

// Manager owns the instances of the latent workers: it starts them when
// the dispatcher asks, accepts their connections, stops them when idle,
// lost or late, counts failures and keeps failing workers in quarantine.
// Its methods are safe for concurrent use; those the dispatcher calls
// (Startable, Start) do not block.
type Manager struct {
	opts Options
	log  *slog.Logger
	clk  clock.Clock

	mu      sync.Mutex
	workers map[string]*worker // by latent worker name
	slots   map[string]*slot   // by slot name, retired ones included while they stop
	closed  bool
	changed chan struct{}             // closed and replaced at every change
	retries map[*instance]clock.Timer // stops to try again
	bg      sync.WaitGroup
}

type worker struct {
	cfg       *config.LatentWorker
	driver    Driver
	driverErr error
	slots     []*slot

	failures    int       // in a row
	lastErr     string    // the last failure
	quarantined time.Time // no start before; zero: none
	qtimer      clock.Timer
	disabled    string // why; "" when enabled
}

type slot struct {
	name    string
	w       *worker
	inst    *instance // nil: stopped
	retired bool      // no longer configured: it starts nothing
	// announcing: its instance is stopped, and the dispatcher is being
	// told; States still says stopping, so that whoever sees "stopped"
	// knows the dispatcher heard of it.
	announcing bool
}

type instance struct {
	Instance
	slot   *slot
	w      *worker
	driver Driver
	state  State
	req    int64 // the request it was started for

	sess     Session       // the connection while attached
	detached chan struct{} // closed when sess detached
	lost     bool          // detached while builds ran: back, or gone?
	busy     int           // builds running on it

	since       time.Time // when it entered state
	cancelStart context.CancelFunc
	missing     clock.Timer
	idle        clock.Timer
	check       clock.Timer
	startErr    error // why it failed before connecting
	why         string
}

// New returns a Manager with no latent workers; see SetConfig.
func New(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.AttachGrace <= 0 {
		opts.AttachGrace = DefaultAttachGrace
	}
	if opts.DetachWait <= 0 {
		opts.DetachWait = DefaultDetachWait
	}
	return &Manager{
		opts:    opts,
		log:     opts.Logger,
		clk:     opts.Clock,
		workers: map[string]*worker{},
		slots:   map[string]*slot{},
		changed: make(chan struct{}),
		retries: map[*instance]clock.Timer{},
	}
}

// SetConfig replaces the latent workers. A worker keeps its failure count,
// quarantine and disabled flag across reconfigs; its driver is made anew
// for new instances (running ones are stopped by the driver that started
// them). Slots that are no longer configured start nothing more: their
// instances are stopped once idle.
func (m *Manager) SetConfig(ws []*config.LatentWorker) {
	// Drivers may take a moment to make (a cloud client): not under mu.
	drivers := make([]Driver, len(ws))
	errs := make([]error, len(ws))
	for i, c := range ws {
		drivers[i], errs[i] = m.opts.NewDriver(c)
		if errs[i] != nil {
			m.log.Error("latent worker cannot start instances", "worker", c.Name, "err", errs[i])
		}
	}
	var stops []*instance
	var touched []string
	m.mu.Lock()
	old := m.workers
	m.workers = make(map[string]*worker, len(ws))
	keep := map[string]bool{}
	for i, c := range ws {
		w := old[c.Name]
		if w == nil {
			w = &worker{}
		}
		w.cfg = c
		w.driver, w.driverErr = drivers[i], errs[i]
		w.slots = w.slots[:0]
		for _, name := range Slots(c) {
			s := m.slots[name]
			if s == nil {
				s = &slot{name: name}
				m.slots[name] = s
			}
			s.w, s.retired = w, false
			w.slots = append(w.slots, s)
			keep[name] = true
		}
		m.workers[c.Name] = w
	}
	for name, s := range m.slots {
		if keep[name] {
			continue
		}
		s.retired = true
		touched = append(touched, name)
		switch {
		case s.inst == nil:
			delete(m.slots, name)
		case s.inst.state == Starting || (s.inst.state == Running && s.inst.busy == 0):
			stops = append(stops, s.inst)
		}
	}
	for _, inst := range stops {
		m.beginStopLocked(inst, "removed from the configuration")
	}
	m.changedLocked()
	m.mu.Unlock()
	m.notify(touched...)
}

// Login returns the slot of the instance of latent worker name whose
// one-time password is password, if one is starting or running: the
// registry's check of a connection's credentials.
func (m *Manager) Login(name, password string) (slot string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.workers[name]
	if w == nil {
		return "", false
	}
	// Every slot is compared, so the time taken does not say which matched.
	for _, s := range w.slots {
		inst := s.inst
		if inst == nil || (inst.state != Starting && inst.state != Running) {
			continue
		}
		if equalSecret(password, inst.Password) {
			slot, ok = s.name, true
		}
	}
	return slot, ok
}

// IsSlot reports whether name is the slot of a latent worker.
func (m *Manager) IsSlot(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slots[name] != nil
}

// Startable reports whether an instance may start in slot now, and if
// not, why, in words for the queue page. The dispatcher calls it.
func (m *Manager) Startable(slot string) (ok bool, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[slot]
	switch {
	case s == nil || s.retired:
		return false, fmt.Sprintf("%s is not a configured latent worker", slot)
	case m.closed:
		return false, "the master is shutting down"
	case s.inst != nil:
		return false, fmt.Sprintf("worker %s: instance %s is %s", slot, s.inst.Name, s.inst.state)
	}
	w := s.w
	if w.driverErr != nil {
		return false, fmt.Sprintf("worker %s cannot start: %v", w.cfg.Name, w.driverErr)
	}
	if w.disabled != "" {
		return false, fmt.Sprintf("worker %s is disabled: %s; an admin can enable it again", w.cfg.Name, w.disabled)
	}
	if until := w.quarantined; !until.IsZero() && m.clk.Now().Before(until) {
		return false, fmt.Sprintf("worker %s is quarantined until %s after %s in a row (last: %s)",
			w.cfg.Name, until.Local().Format(time.TimeOnly), plural(w.failures, "failure"), w.lastErr)
	}
	return true, ""
}

// Start starts an instance in slot for request req and returns at once;
// the instance attaches under the slot's name, or the dispatcher hears
// LatentStopped for the slot. The dispatcher calls it after Startable.
func (m *Manager) Start(slot string, req store.BuildRequest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[slot]
	if s == nil || s.retired || s.inst != nil || m.closed || s.w.driverErr != nil {
		// Startable said yes a moment ago; the answer changed meanwhile.
		go m.opts.Dispatcher.LatentStopped(slot, nil)
		return
	}
	w := s.w
	inst := &instance{
		Instance: Instance{
			Name:       w.cfg.Name + "-" + randomHex(5),
			WorkerName: w.cfg.Name,
			Password:   randomHex(18),
			MasterAddr: m.opts.MasterAddr(),
			Properties: w.cfg.Properties,
		},
		slot:   s,
		w:      w,
		driver: w.driver,
		state:  Starting,
		req:    req.ID,
		since:  m.clk.Now(),
	}
	s.inst = inst
	ctx, cancel := context.WithCancel(context.Background())
	inst.cancelStart = cancel
	if d := w.cfg.MissingTimeout; d > 0 {
		inst.missing = m.clk.AfterFunc(d, func() { m.missed(inst, d) })
	}
	m.changedLocked()
	m.log.Info("starting latent instance", "worker", slot, "instance", inst.Name, "request", req.ID, "builder", req.BuilderName)
	rec := instanceRecord{Worker: w.cfg.Name, Slot: s.name, Started: inst.since.UTC()}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.launch(ctx, inst, rec)
	}()
	go m.notify(slot)
}

// launch records inst, so that a restarted master finds it, and starts it.
func (m *Manager) launch(ctx context.Context, inst *instance, rec instanceRecord) {
	m.saveState(store.StateValue{Object: instancesObject, Name: inst.Name, Value: rec})
	err := inst.driver.Start(ctx, inst.Instance)
	m.mu.Lock()
	defer m.mu.Unlock()
	if inst.state != Starting && inst.state != Running {
		return // stopped meanwhile (missing timeout, shutdown): its stop cleans up
	}
	if err != nil {
		inst.startErr = fmt.Errorf("start instance %s: %w", inst.Name, err)
		m.failLocked(inst.w, inst.startErr)
		m.beginStopLocked(inst, "it failed to start")
		return
	}
	if wd, ok := inst.driver.(Watcher); ok {
		if ch := wd.Exited(inst.Name); ch != nil {
			go func() {
				<-ch
				m.gone(inst, fmt.Errorf("instance %s exited: %w", inst.Name, ErrGone))
			}()
		}
	}
	m.armCheckLocked(inst)
}

// missed stops inst if it has not connected after its missing_timeout d.
func (m *Manager) missed(inst *instance, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if inst.state != Starting {
		return
	}
	inst.startErr = fmt.Errorf("instance %s did not connect within %s (missing_timeout)", inst.Name, d)
	m.failLocked(inst.w, inst.startErr)
	m.beginStopLocked(inst, "it did not connect in time")
}

// armCheckLocked schedules the next Check of inst, if its driver can.
func (m *Manager) armCheckLocked(inst *instance) {
	c, ok := inst.driver.(Checker)
	if !ok || (inst.state != Starting && inst.state != Running) {
		return
	}
	inst.check = m.clk.AfterFunc(m.opts.CheckInterval, func() {
		m.checkNow(c, inst)
		m.mu.Lock()
		m.armCheckLocked(inst)
		m.mu.Unlock()
	})
}

// checkNow asks the driver whether inst still runs.
func (m *Manager) checkNow(c Checker, inst *instance) {
	ctx, cancel := context.WithCancel(context.Background())
	t := m.clk.AfterFunc(m.opts.StopTimeout, cancel)
	err := c.Check(ctx, inst.Name)
	t.Stop()
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, ErrGone):
		m.gone(inst, err)
	default:
		m.log.Warn("cannot check latent instance", "worker", inst.slot.name, "instance", inst.Name, "err", err)
	}
}

// gone handles inst found gone by its driver.
func (m *Manager) gone(inst *instance, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch inst.state {
	case Starting:
		inst.startErr = fmt.Errorf("instance %s ended before it connected: %w", inst.Name, err)
		m.failLocked(inst.w, inst.startErr)
		m.beginStopLocked(inst, "it ended before it connected")
	case Running:
		m.failLocked(inst.w, err)
		m.beginStopLocked(inst, "it is gone")
	}
}

// Attached is told that slot's instance connected with session sess. It
// returns false if the connection must be refused: the slot's instance is
// being stopped (sess is then not the instance's).
func (m *Manager) Attached(slot string, sess Session) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[slot]
	if s == nil || s.inst == nil {
		return false
	}
	inst := s.inst
	switch inst.state {
	case Starting:
		now := m.clk.Now()
		m.log.Info("latent instance connected", "worker", slot, "instance", inst.Name, "after", now.Sub(inst.since).Round(time.Millisecond))
		inst.state, inst.since = Running, now
		stopTimer(&inst.missing)
	case Running:
		m.log.Info("latent instance reconnected", "worker", slot, "instance", inst.Name)
	default:
		return false
	}
	inst.sess, inst.detached, inst.lost = sess, make(chan struct{}), false
	if wait := inst.w.cfg.BuildWaitTimeout; inst.busy == 0 && wait >= 0 {
		// Its first build may not be its own: give the dispatcher time.
		m.armIdleLocked(inst, max(m.opts.AttachGrace, wait))
	}
	m.changedLocked()
	go m.notify(slot)
	return true
}

// Detached is told that slot's session sess ended (or is held for a
// reconnect by the registry).
func (m *Manager) Detached(slot string, sess Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[slot]
	if s == nil || s.inst == nil || s.inst.sess != sess {
		return // an older connection, or an instance already stopped
	}
	inst := s.inst
	close(inst.detached)
	inst.sess = nil
	if inst.state != Running {
		return // stopping: expected
	}
	stopTimer(&inst.idle)
	if inst.busy > 0 {
		// The registry may hold its builds for a reconnect: they end, or
		// go on, when it comes back. Ask the driver now rather than wait.
		inst.lost = true
		m.log.Warn("latent instance lost its connection during a build", "worker", slot, "instance", inst.Name)
		if c, ok := inst.driver.(Checker); ok {
			go m.checkNow(c, inst)
		}
		m.changedLocked()
		return
	}
	m.failLocked(inst.w, fmt.Errorf("instance %s lost its connection", inst.Name))
	m.beginStopLocked(inst, "it lost its connection")
}

// Acquire marks a build starting on slot's instance and returns the
// function to call when it has ended, with served true if the build ran
// to its end (its result is not RETRY): that resets the latent worker's
// failure count. ok is false when the slot has no running, connected
// instance: the build must not start (the request goes back to the queue).
func (m *Manager) Acquire(slot string) (release func(served bool), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[slot]
	if s == nil || s.inst == nil || s.inst.state != Running || s.inst.sess == nil {
		return nil, false
	}
	inst := s.inst
	inst.busy++
	stopTimer(&inst.idle)
	var once sync.Once
	return func(served bool) { once.Do(func() { m.release(inst, served) }) }, true
}

// release ends a build on inst.
func (m *Manager) release(inst *instance, served bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inst.busy--
	if inst.state != Running {
		return
	}
	if inst.sess == nil {
		// Lost during the build and not back by its end: the registry gave
		// up waiting, so the instance is gone.
		m.failLocked(inst.w, fmt.Errorf("instance %s lost its connection during a build and did not come back", inst.Name))
		m.beginStopLocked(inst, "it lost its connection")
		return
	}
	if w := inst.w; served {
		if w.failures > 0 {
			m.log.Info("latent worker works again", "worker", w.cfg.Name, "after_failures", w.failures)
		}
		w.failures, w.lastErr, w.quarantined = 0, "", time.Time{}
	}
	if inst.busy > 0 {
		return
	}
	if inst.slot.retired {
		m.beginStopLocked(inst, "removed from the configuration")
		return
	}
	m.armIdleLocked(inst, inst.w.cfg.BuildWaitTimeout)
	m.changedLocked()
}

// armIdleLocked stops inst once it has been idle for d: at once for 0,
// never for a negative d.
func (m *Manager) armIdleLocked(inst *instance, d time.Duration) {
	stopTimer(&inst.idle)
	switch {
	case d < 0:
	case d == 0:
		m.beginStopLocked(inst, "its build ended (build_wait_timeout = 0)")
	default:
		inst.idle = m.clk.AfterFunc(d, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if inst.state == Running && inst.busy == 0 && inst.sess != nil {
				m.beginStopLocked(inst, fmt.Sprintf("idle for %s", d))
			}
		})
	}
}

// failLocked counts a failure of w: quarantine, and after MaxFailures in a
// row, disabled.
func (m *Manager) failLocked(w *worker, err error) {
	w.failures++
	w.lastErr = err.Error()
	d := MinQuarantine << min(w.failures-1, 20)
	if d > MaxQuarantine || d <= 0 {
		d = MaxQuarantine
	}
	w.quarantined = m.clk.Now().Add(d)
	stopTimer(&w.qtimer)
	w.qtimer = m.clk.AfterFunc(d, func() {
		m.mu.Lock()
		m.changedLocked()
		slots := slotNames(w)
		m.mu.Unlock()
		m.opts.Dispatcher.Kick()
		m.notify(slots...)
	})
	m.log.Warn("latent worker failed", "worker", w.cfg.Name, "failures_in_a_row", w.failures, "quarantine", d, "err", err)
	if w.failures >= MaxFailures && w.disabled == "" {
		w.disabled = fmt.Sprintf("%d failures in a row, the last: %s", w.failures, w.lastErr)
		m.log.Error("latent worker disabled", "worker", w.cfg.Name, "reason", w.disabled)
		name, why := w.cfg.Name, w.disabled
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			m.saveState(store.StateValue{Object: disabledObject, Name: name, Value: why})
		}()
	}
}

// beginStopLocked starts stopping inst for why; the rest happens on a
// goroutine of its own.
func (m *Manager) beginStopLocked(inst *instance, why string) {
	if inst.state == Stopping {
		return
	}
	inst.state, inst.since, inst.why = Stopping, m.clk.Now(), why
	stopTimer(&inst.missing)
	stopTimer(&inst.idle)
	stopTimer(&inst.check)
	if inst.cancelStart != nil {
		inst.cancelStart()
	}
	sess, detached := inst.sess, inst.detached
	m.log.Info("stopping latent instance", "worker", inst.slot.name, "instance", inst.Name, "why", why)
	m.changedLocked()
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.stop(inst, sess, detached, why)
	}()
}

// stop disconnects inst, has its driver stop it, and frees its slot.
func (m *Manager) stop(inst *instance, sess Session, detached chan struct{}, why string) {
	slot := inst.slot.name
	m.opts.Dispatcher.LatentStopping(slot)
	m.notify(slot)
	reason := fmt.Errorf("latent instance %s stopping: %s", inst.Name, why)
	if sess != nil {
		sess.Disconnect(reason)
		waitOrTimeout(m.clk, detached, m.opts.DetachWait)
	}
	if m.opts.GiveUp != nil {
		// Its connection may be held for a reconnect: its builds end now.
		m.opts.GiveUp(slot, reason)
	}
	if err := m.stopDriver(inst); err != nil {
		m.log.Error("cannot stop latent instance; will try again", "worker", slot, "instance", inst.Name, "err", err)
		m.retryStop(inst)
	}
	m.mu.Lock()
	s := inst.slot
	if s.inst == inst {
		s.inst = nil
		s.announcing = true
		if s.retired && m.slots[s.name] == s {
			delete(m.slots, s.name)
		}
	}
	inst.state = Stopped
	m.mu.Unlock()
	m.log.Info("latent instance stopped", "worker", slot, "instance", inst.Name)
	m.opts.Dispatcher.LatentStopped(slot, inst.startErr)
	m.mu.Lock()
	s.announcing = false
	m.changedLocked()
	m.mu.Unlock()
	m.notify(slot)
}

// stopDriver has inst's driver stop it and forgets its record.
func (m *Manager) stopDriver(inst *instance) error {
	ctx, cancel := context.WithCancel(context.Background())
	t := m.clk.AfterFunc(m.opts.StopTimeout, cancel)
	err := inst.driver.Stop(ctx, inst.Name)
	t.Stop()
	cancel()
	if err != nil {
		return err
	}
	m.saveState(store.StateValue{Object: instancesObject, Name: inst.Name})
	return nil
}

// retryStop tries to stop inst again later, until it works or the master
// stops; its record stays meanwhile, so a restart tries too.
func (m *Manager) retryStop(inst *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.bg.Add(1)
	m.retries[inst] = m.clk.AfterFunc(stopRetry, func() {
		defer m.bg.Done()
		m.mu.Lock()
		delete(m.retries, inst)
		m.mu.Unlock()
		if err := m.stopDriver(inst); err != nil {
			m.log.Error("cannot stop latent instance; will try again", "worker", inst.slot.name, "instance", inst.Name, "err", err)
			m.retryStop(inst)
		}
	})
}

// Enable enables latent worker name again after failures disabled it,
// and ends its quarantine. ErrNoWorker if there is no such worker.
func (m *Manager) Enable(ctx context.Context, name string) error {
	m.mu.Lock()
	w := m.workers[name]
	if w == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNoWorker, name)
	}
	was := w.disabled
	w.disabled, w.failures, w.lastErr, w.quarantined = "", 0, "", time.Time{}
	stopTimer(&w.qtimer)
	m.changedLocked()
	slots := slotNames(w)
	m.mu.Unlock()
	if was != "" {
		m.log.Info("latent worker enabled", "worker", name, "was_disabled_for", was)
	}
	m.saveState(store.StateValue{Object: disabledObject, Name: name})
	m.opts.Dispatcher.Kick()
	m.notify(slots...)
	return nil
}

// ErrNoWorker is returned for names that are not latent workers.
var ErrNoWorker = errors.New("no latent worker")

// Close stops every instance and waits, until ctx ends, for their
// drivers to have stopped them. No instance starts after it.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	for _, s := range m.slots {
		if s.inst != nil {
			m.beginStopLocked(s.inst, "the master is shutting down")
		}
	}
	for _, w := range m.workers {
		stopTimer(&w.qtimer)
	}
	for inst, t := range m.retries {
		if t.Stop() {
			m.bg.Done() // its record stays: the next start stops it
		}
		delete(m.retries, inst)
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("latent instances still stopping: %w", ctx.Err())
	}
}

func (m *Manager) saveState(v store.StateValue) {
	if m.opts.Store == nil {
		return
	}
	if err := m.opts.Store.SetState(context.Background(), v); err != nil {
		m.log.Error("cannot record latent worker state", "object", v.Object, "name", v.Name, "err", err)
	}
}

// changedLocked wakes those waiting in Changes.
func (m *Manager) changedLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Changes returns a channel closed at the next change of any slot's state,
// for tests and live views that wait for one.
func (m *Manager) Changes() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

func (m *Manager) notify(slots ...string) {
	if f := m.opts.Changed; f != nil {
		for _, s := range slots {
			f(s)
		}
	}
}

func slotNames(w *worker) []string {
	out := make([]string, len(w.slots))
	for i, s := range w.slots {
		out[i] = s.name
	}
	return out
}

func stopTimer(t *clock.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

// waitOrTimeout waits until ch is closed or d has passed on clk.
func waitOrTimeout(clk clock.Clock, ch <-chan struct{}, d time.Duration) {
	timeout := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(timeout) })
	defer t.Stop()
	select {
	case <-ch:
	case <-timeout:
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("latent: no randomness: %v", err)) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}

// equalSecret compares in constant time; hashing first hides the length.
func equalSecret(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
