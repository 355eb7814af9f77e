package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
)

// ErrUnknownPoller is returned (wrapped) by PollNow for a name no poller
// has.
var ErrUnknownPoller = errors.New("no such poller")

// errStopped is what a PollNow waiting on a poller gets when the poller is
// removed or restarted by a reconfig, or the manager stops.
var errStopped = errors.New("poller stopped")

// Defaults of Options.
const (
	DefaultConcurrency = 8
	DefaultTimeout     = 10 * time.Minute
	DefaultListTimeout = time.Minute
)

// Options configure a Manager (and a Poller).
type Options struct {
	// Dir holds the cache repositories, one per repository URL (see
	// CacheDir). The master uses BASEDIR/gitpoller.
	Dir   string
	Sink  Sink
	State State
	// Secret returns the secret called name; the master passes its current
	// configuration's Config.Secret. It is called at every poll that needs
	// a secret, never before.
	Secret func(name string) (string, error)

	Clock  clock.Clock  // drives the intervals; default clock.Real
	Logger *slog.Logger // default slog.Default()
	// Concurrency is how many polls run at once (default
	// DefaultConcurrency). Other polls wait for a slot.
	Concurrency int
	// Timeout bounds one poll, fetch included (default DefaultTimeout);
	// ListTimeout bounds listing the remote's refs (default
	// DefaultListTimeout), so an unresponsive remote gives up its slot
	// soon. Both are real time whatever Clock is.
	Timeout     time.Duration
	ListTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ListTimeout <= 0 {
		o.ListTimeout = DefaultListTimeout
	}
}

// Status is what a poller is doing, for the web UI.
type Status struct {
	Name, Repo string
	Interval   time.Duration // 0: polls only at launch and when asked
	Polling    bool          // a poll is running or waiting for a slot
	// LastPoll is when the last finished poll started; zero if none has.
	LastPoll time.Time
	// LastError is why the last poll failed; "" if it succeeded.
	LastError string
	// NextPoll is when the next poll is due; zero if none is scheduled.
	NextPoll time.Time
	// Refs are the refs watched and their revisions, as of the last
	// successful poll; nil before one.
	Refs map[string]string
}

// Manager runs the pollers of a configuration: each polls on its interval,
// at most Options.Concurrency at once, and never two polls of one poller
// at once. Its methods are safe for concurrent use.
type Manager struct {
	o   Options
	sem chan struct{} // one token per running poll

	mu      sync.Mutex
	order   []string          // poller names in configuration order
	entries map[string]*entry // by name
	ctx     context.Context   // Run's context; nil before Run
	wg      sync.WaitGroup    // entry goroutines
}

// entry is one poller and the goroutine that runs it.
type entry struct {
	cfg    *config.GitPoller
	poller *Poller
	kick   chan struct{} // buffered: a poll is wanted
	cancel context.CancelFunc
	done   chan struct{}   // closed when the goroutine has returned
	after  <-chan struct{} // the goroutine of the entry this one replaced

	mu      sync.Mutex
	waiters []chan error // PollNow calls waiting for the next poll
	stopped bool         // removed, replaced or shut down: no more polls
	timer   clock.Timer
	status  Status
}

// NewManager returns a manager with no pollers; call SetConfig and Run.
func NewManager(o Options) *Manager {
	o.defaults()
	return &Manager{o: o, sem: make(chan struct{}, o.Concurrency), entries: map[string]*entry{}}
}

// SetConfig makes ps the pollers: it starts the new ones, stops the
// removed ones and restarts those whose declaration changed. Unchanged
// pollers go on undisturbed. State is in the store, so a restarted poller
// carries on from the revisions it had seen. A restarted poller's first
// poll waits for its predecessor's to end.
func (m *Manager) SetConfig(ps []*config.GitPoller) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.entries
	m.entries = make(map[string]*entry, len(ps))
	m.order = m.order[:0]
	for _, p := range ps {
		m.order = append(m.order, p.Name)
		if e := old[p.Name]; e != nil && e.cfg.Equal(p) {
			m.entries[p.Name] = e
			delete(old, p.Name)
			continue
		}
		e := &entry{
			cfg:    p,
			poller: NewPoller(p, m.o),
			kick:   make(chan struct{}, 1),
			done:   make(chan struct{}),
			status: Status{Name: p.Name, Repo: p.Repo, Interval: p.Interval},
		}
		if prev := old[p.Name]; prev != nil {
			e.after = prev.done
			m.o.Logger.Info("git poller: restarting with its new declaration", "poller", p.Name)
		}
		m.entries[p.Name] = e
		if m.ctx != nil {
			m.start(e)
		}
	}
	for _, e := range old {
		if e.cancel != nil {
			e.cancel()
		}
		e.fail(errStopped)
	}
}

// Run runs the pollers until ctx is done, then stops them and waits for
// their polls to end. It must be called once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.ctx != nil {
		m.mu.Unlock()
		return errors.New("poller: Manager.Run called twice")
	}
	m.ctx = ctx
	for _, name := range m.order {
		m.start(m.entries[name])
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
	return nil
}

// start starts e's goroutine. m.mu is held.
func (m *Manager) start(e *entry) {
	ctx, cancel := context.WithCancel(m.ctx)
	e.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(e.done)
		m.loop(ctx, e)
	}()
}

// PollNow polls the named poller as soon as a slot is free and returns
// the poll's error. A poll already running does not count: it may have
// listed the remote's refs before what the caller knows of happened. The
// error wraps ErrUnknownPoller if there is no such poller.
func (m *Manager) PollNow(ctx context.Context, name string) error {
	m.mu.Lock()
	e := m.entries[name]
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("poller %q: %w", name, ErrUnknownPoller)
	}
	done := make(chan error, 1)
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return fmt.Errorf("poller %q: %w", name, errStopped)
	}
	e.waiters = append(e.waiters, done)
	e.mu.Unlock()
	e.poke()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns the state of every poller, in configuration order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.order))
	for _, name := range m.order {
		e := m.entries[name]
		e.mu.Lock()
		s := e.status
		e.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// loop runs e's polls until ctx is done.
func (m *Manager) loop(ctx context.Context, e *entry) {
	defer e.fail(errStopped)
	defer e.stopTimer()
	log := m.o.Logger.With("poller", e.cfg.Name)
	if e.after != nil {
		select {
		case <-e.after:
		case <-ctx.Done():
			return
		}
	}
	if e.cfg.PollAtLaunch {
		e.poke()
	} else {
		m.schedule(e)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		}
		e.mu.Lock()
		waiters := e.waiters
		e.waiters = nil
		// A PollNow made from here on needs a poll that starts later, and
		// pokes again; earlier pokes are served by this poll.
		select {
		case <-e.kick:
		default:
		}
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		e.status.NextPoll = time.Time{}
		e.status.Polling = true
		e.mu.Unlock()

		err := m.poll(ctx, e, log)
		for _, w := range waiters {
			w <- err
		}
		if ctx.Err() != nil {
			return
		}
		m.schedule(e)
	}
}

// poll runs one poll of e in a slot and records its outcome.
func (m *Manager) poll(ctx context.Context, e *entry, log *slog.Logger) error {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return errStopped
	}
	start := m.o.Clock.Now()
	pctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	res, err := e.poller.Poll(pctx)
	if err != nil && pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("%w (the poll took longer than %v)", err, m.o.Timeout)
	}
	cancel()
	<-m.sem

	e.mu.Lock()
	defer e.mu.Unlock()
	wasFailing := e.status.LastError != ""
	e.status.Polling = false
	e.status.LastPoll = start
	if err != nil {
		if ctx.Err() != nil {
			return errStopped // stopped, not failed: nothing to report
		}
		e.status.LastError = err.Error()
		log.Warn("git poller: poll failed", "err", err)
		return err
	}
	e.status.LastError = ""
	e.status.Refs = maps.Clone(res.Refs)
	if wasFailing {
		log.Info("git poller: polling again", "refs", len(res.Refs))
	}
	return nil
}

// schedule arms e's interval timer.
func (m *Manager) schedule(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cfg.Interval <= 0 {
		return
	}
	e.status.NextPoll = m.o.Clock.Now().Add(e.cfg.Interval)
	e.timer = m.o.Clock.AfterFunc(e.cfg.Interval, e.poke)
}

// poke asks e's goroutine for a poll.
func (e *entry) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *entry) stopTimer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.status.NextPoll = time.Time{}
}

// fail answers the waiting PollNow calls with err, and any later ones:
// e polls no more.
func (e *entry) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	for _, w := range e.waiters {
		w <- err
	}
	e.waiters = nil
}
