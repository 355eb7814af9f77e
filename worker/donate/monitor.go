package donate

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/starforge/starforge/internal/clock"
)

// Target is the worker as the Monitor drives it.
type Target interface {
	// Builds returns the running builds and the process groups of their
	// commands.
	Builds() (builds []Build, groups []int)
	// Apply carries out a decision made from o. It is called on the
	// Monitor's goroutine and must not block for long: the owner waits.
	Apply(d Decision, o Observation)
}

// Default polling intervals.
const (
	// DefaultFast is how often the owner's idle time is read while builds
	// run: it bounds how long the owner waits for the machine.
	DefaultFast = 250 * time.Millisecond
	// DefaultSlow is how often everything is read while no build runs.
	DefaultSlow = 5 * time.Second
	// DefaultSampleEvery is how often the processes, the power supply and
	// the disk are read while builds run.
	DefaultSampleEvery = 2 * time.Second
)

// Monitor samples the machine, asks the Policy and hands each Decision to
// the Target: every Fast interval while builds run, every Slow interval
// otherwise, and at once after Kick. Set the fields, then call Run.
type Monitor struct {
	Policy *Policy
	// Idle is the owner's idle time; nil when no source works, and the
	// policy then goes by the load alone.
	Idle IdleSource
	// System samples processes, power and disk; nil skips those checks.
	System System
	// DiskPath is the path whose disk must keep Settings.DiskFloor free.
	DiskPath string
	Target   Target
	Clock    clock.Clock // nil: clock.Real
	Logger   *slog.Logger

	Fast, Slow, SampleEvery time.Duration // zero: the defaults

	kickOnce   sync.Once
	kick       chan struct{}
	sampled    time.Time // when System was last read
	last       Observation
	loggedErrs map[string]bool
}

func (m *Monitor) init() {
	if m.Clock == nil {
		m.Clock = clock.Real
	}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	if m.Fast <= 0 {
		m.Fast = DefaultFast
	}
	if m.Slow <= 0 {
		m.Slow = DefaultSlow
	}
	if m.SampleEvery <= 0 {
		m.SampleEvery = DefaultSampleEvery
	}
	m.loggedErrs = map[string]bool{}
}

// Kick asks for a decision now, such as when a build starts. It never
// blocks and is safe to call from any goroutine, before or during Run.
func (m *Monitor) Kick() {
	select {
	case m.kickCh() <- struct{}{}:
	default:
	}
}

func (m *Monitor) kickCh() chan struct{} {
	m.kickOnce.Do(func() { m.kick = make(chan struct{}, 1) })
	return m.kick
}

// Run polls until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	m.init()
	for {
		busy := m.Step()
		interval := m.Slow
		if busy {
			interval = m.Fast
		}
		wake := make(chan struct{})
		t := m.Clock.AfterFunc(interval, func() { close(wake) })
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-m.kickCh():
			t.Stop()
		}
	}
}

// Step samples, decides and applies once, and reports whether a build is
// running (not frozen): only then must the owner's return be seen within
// Fast. Run calls it; tests may call it directly.
func (m *Monitor) Step() (busy bool) {
	if m.loggedErrs == nil {
		m.init()
	}
	builds, groups := m.Target.Builds()
	o := m.observe(len(builds) > 0, groups)
	d := m.Policy.Evaluate(o, builds)
	m.Target.Apply(d, o)
	for _, mode := range d.Modes {
		if mode == Running || mode == Throttled {
			return true
		}
	}
	return false
}

// observe reads the sources: the idle time every time, the rest every
// SampleEvery while builds run and every time while none runs.
func (m *Monitor) observe(busy bool, groups []int) Observation {
	now := m.Clock.Now()
	o := m.last
	o.Now = now
	if m.Idle != nil {
		d, err := m.Idle.Idle(now)
		if err != nil {
			// Better to wrongly think the owner is back than to build
			// on their time.
			m.logOnce("idle", "cannot read the owner's idle time; assuming the owner is active", err)
			d = 0
		}
		o.Idle, o.IdleKnown = d, true
	}
	if m.System == nil || (busy && now.Sub(m.sampled) < m.SampleEvery && !m.sampled.IsZero()) {
		m.last = o
		return o
	}
	m.sampled = now
	s := m.Policy.Settings()
	ps, err := m.System.Processes(groups, s.ExclusiveApps)
	if err != nil {
		m.logOnce("procs", "cannot scan processes; foreign load and exclusive apps are not checked", err)
	}
	o.ForeignLoad, o.LoadKnown, o.ExclusiveApp = ps.ForeignLoad, ps.LoadKnown, ps.Exclusive
	if p, err := m.System.Power(); err != nil {
		m.logOnce("power", "cannot read the power supply; battery is not checked", err)
		o.PowerKnown = false
	} else {
		o.OnBattery, o.Charge, o.PowerKnown = p.OnBattery, p.Charge, true
	}
	if m.DiskPath != "" {
		if free, err := m.System.FreeDisk(m.DiskPath); err != nil {
			m.logOnce("disk", "cannot read the free disk space", err)
			o.DiskKnown = false
		} else {
			o.FreeDisk, o.DiskKnown = free, true
		}
	}
	m.last = o
	return o
}

// logOnce logs a source's failure the first time it happens.
func (m *Monitor) logOnce(key, msg string, err error) {
	if m.loggedErrs[key] {
		return
	}
	m.loggedErrs[key] = true
	m.Logger.Warn(msg, "err", err)
}
