package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// A scheduler can be disabled (Buildbot's "enabled" flag, set through the
// web API): it then makes no buildsets. What it would have built is
// dropped, not held back, so that enabling it again does not start a
// flood of builds:
//
//   - changes that arrive are looked at and passed over (the watermark
//     moves on), and kept changes whose tree-stable timer ends are
//     dropped;
//   - a periodic or nightly run that comes due is skipped (recorded as its
//     last run, so the next one is armed as usual);
//   - a dependent scheduler ignores its upstream's buildsets;
//   - a trigger step that names a triggerable scheduler fails, and a force
//     or try scheduler refuses (the master asks Enabled).
//
// The flag is object state ("scheduler:<name>", "disabled": who and why),
// so it outlives restarts and reconfigs; removing the scheduler from the
// configuration forgets it.

// disabledState is the Manager's set of disabled schedulers.
type disabledState struct {
	mu  sync.Mutex        // held across the store write and the map update
	why map[string]string // name -> why it is disabled; absent: enabled
}

const disabledKey = "disabled"

// SetEnabled enables or disables scheduler name (see above). why says,
// for the status, who disabled it and why. The change is stored before
// SetEnabled returns; schedulers act on it from their next event. It
// fails if the last SetConfig has no scheduler called name.
func (m *Manager) SetEnabled(ctx context.Context, name string, enabled bool, why string) error {
	m.mu.Lock()
	_, ok := m.byName[name]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoScheduler, name)
	}
	d := &m.dis
	d.mu.Lock()
	defer d.mu.Unlock()
	sv := store.StateValue{Object: objName(name), Name: disabledKey}
	if !enabled {
		if why == "" {
			why = "disabled"
		}
		sv.Value = why
	}
	if err := m.st.SetState(ctx, sv); err != nil {
		return fmt.Errorf("scheduler %s: store enabled=%t: %w", name, enabled, err)
	}
	if d.why == nil {
		d.why = map[string]string{}
	}
	if enabled {
		delete(d.why, name)
	} else {
		d.why[name] = why
	}
	m.log.Info("scheduler enabled flag set", "scheduler", name, "enabled", enabled, "why", why)
	m.enqueue(event{poll: true}) // refreshes the status
	return nil
}

// ErrNoScheduler is returned by SetEnabled for an unknown scheduler.
var ErrNoScheduler = errors.New("no such scheduler")

// Enabled reports whether scheduler name is enabled; unknown names are.
func (m *Manager) Enabled(name string) bool {
	_, off := m.disabledWhy(name)
	return !off
}

func (m *Manager) disabledWhy(name string) (string, bool) {
	m.dis.mu.Lock()
	defer m.dis.mu.Unlock()
	why, off := m.dis.why[name]
	return why, off
}

func (m *Manager) disabled(name string) bool { return !m.Enabled(name) }

// loadDisabled reads which of cfg's schedulers the store says are
// disabled; SetConfig calls it.
func (m *Manager) loadDisabled(cfg *config.Config) {
	d := &m.dis
	d.mu.Lock()
	defer d.mu.Unlock()
	why := map[string]string{}
	for _, sc := range cfg.Schedulers {
		name := sc.SchedulerName()
		var w string
		off, err := m.st.GetState(context.Background(), objName(name), disabledKey, &w)
		if err != nil {
			m.log.Error("scheduler: read whether it is disabled; it keeps its last setting", "scheduler", name, "err", err)
			if old, was := d.why[name]; was {
				why[name] = old
			}
			continue
		}
		if off {
			why[name] = w
		}
	}
	d.why = why
}

// dropGroup consumes the first n changes kept by group g without a
// buildset, with state, because the scheduler is disabled.
func (s *changeSched) dropGroup(ctx context.Context, g string, n int, state []store.StateValue) error {
	ks := s.pending[g][:n]
	ids := make([]int64, len(ks))
	for i, k := range ks {
		ids[i] = k.c.ID
	}
	if err := s.m.st.ForgetSchedulerChanges(ctx, s.name, ids, state...); err != nil {
		return err
	}
	s.m.log.Info("scheduler disabled: changes dropped without a build", "scheduler", s.name, "changes", len(ids))
	if rest := s.pending[g][n:]; len(rest) > 0 {
		s.pending[g] = append([]kept(nil), rest...)
	} else {
		delete(s.pending, g)
	}
	return nil
}

// ignore drops, without a buildset, what a dependent scheduler would
// build for upstream buildset bs while it is disabled.
func (s *depSched) ignore(ctx context.Context, bs store.Buildset, sub store.StateValue, subscribed bool) error {
	s.m.log.Info("scheduler disabled: upstream buildset ignored", "scheduler", s.cfg.Name, "buildset", bs.ID)
	if subscribed {
		return s.m.st.SetState(ctx, sub)
	}
	return nil
}

// skip records a run that came due while the scheduler was disabled: no
// buildset, kept changes dropped, the next run armed.
func (s *timedSched) skip(ctx context.Context, now time.Time) error {
	ran := store.StateValue{Object: s.obj(), Name: "last_run", Value: now}
	var ids []int64
	if s.col != nil {
		for _, k := range s.col.all() {
			ids = append(ids, k.c.ID)
		}
	}
	var err error
	if len(ids) > 0 {
		err = s.m.st.ForgetSchedulerChanges(ctx, s.name, ids, ran)
	} else {
		err = s.m.st.SetState(ctx, ran)
	}
	if err != nil {
		return err
	}
	if s.col != nil {
		s.col.pending = map[string][]kept{}
	}
	s.m.log.Info("scheduler disabled: run skipped", "scheduler", s.name, "changes_dropped", len(ids))
	s.lastRun = now
	s.failed = false
	s.schedule()
	return nil
}
