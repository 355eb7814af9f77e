package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// timedSched is a periodic or nightly scheduler.
//
// Its state is last_run, when it last ran (built, or skipped for want of
// a change), and since, when it was first started. A periodic scheduler
// runs at last_run + interval, at once if it never ran (as Buildbot's
// Periodic). A nightly one runs at the first match of its fields after
// last_run (or since). Either way, a time that passed while the master
// was down makes it run once, at start, however many runs were missed.
type timedSched struct {
	m    *Manager
	name string
	per  *config.Periodic // one of per and nt is set
	nt   *config.Nightly

	lastRun, since time.Time
	next           time.Time // zero: never (a nightly schedule that cannot match)
	t              *timer
	col            *changeSched // the changes only_if_changed looks at; nil without it
	failed         bool
}

func newTimedSched(m *Manager, sc config.Scheduler) *timedSched {
	s := &timedSched{m: m, name: sc.SchedulerName()}
	s.set(sc)
	return s
}

func (s *timedSched) set(sc config.Scheduler) {
	s.per, s.nt = nil, nil
	switch sc := sc.(type) {
	case *config.Periodic:
		s.per = sc
	case *config.Nightly:
		s.nt = sc
	}
}

func (s *timedSched) kind() string {
	if s.per != nil {
		return "periodic"
	}
	return "nightly"
}

func (s *timedSched) obj() string            { return objName(s.name) }
func (s *timedSched) consumer() *changeSched { return s.col }

func (s *timedSched) wantsChanges() bool { return s.nt != nil && s.nt.OnlyIfChanged }

func (s *timedSched) start(ctx context.Context, state map[string]json.RawMessage) error {
	for name, dst := range map[string]*time.Time{"last_run": &s.lastRun, "since": &s.since} {
		if raw, ok := state[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("state %s: %w", name, err)
			}
		}
	}
	if s.since.IsZero() {
		now := s.m.clk.Now()
		if err := s.m.st.SetState(ctx, store.StateValue{Object: s.obj(), Name: "since", Value: now}); err != nil {
			return err
		}
		s.since = now
	}
	if s.wantsChanges() {
		s.col = newChangeSched(s.m, s.nt)
		if err := s.col.start(ctx, state); err != nil {
			s.col = nil
			return err
		}
	}
	s.schedule()
	return nil
}

// update applies a new schedule at once, from the last run. Turning
// only_if_changed off drops the changes kept for it, and their watermark.
func (s *timedSched) update(ctx context.Context, sc config.Scheduler) error {
	s.set(sc)
	switch {
	case s.wantsChanges() && s.col == nil:
		col := newChangeSched(s.m, s.nt)
		state, err := s.m.st.ObjectState(ctx, s.obj())
		if err == nil {
			err = col.start(ctx, state)
		}
		if err != nil {
			return err
		}
		s.col = col
	case s.wantsChanges():
		s.col.setRules(rulesOf(s.nt))
	case s.col != nil:
		if err := s.m.st.ForgetSchedulerChanges(ctx, s.name, nil, store.StateValue{Object: s.obj(), Name: "last_change"}); err != nil {
			return err
		}
		s.col = nil
	}
	s.schedule()
	return nil
}

// nextRun returns when the scheduler runs next, from its last run.
func (s *timedSched) nextRun() time.Time {
	if s.per != nil {
		if s.lastRun.IsZero() {
			return s.m.clk.Now()
		}
		return s.lastRun.Add(s.per.Interval)
	}
	from := s.lastRun
	if from.IsZero() {
		from = s.since
	}
	return cronOf(s.nt).next(from)
}

func (s *timedSched) schedule() {
	s.t.stop()
	s.t = nil
	s.next = s.nextRun()
	if s.next.IsZero() {
		s.m.log.Warn("nightly scheduler: its fields match no date; it never runs", "scheduler", s.name)
		return
	}
	s.t = s.m.arm(s.next, func(ctx context.Context) {
		if err := s.fire(ctx); err != nil {
			s.failed = true
			s.m.fail(s.name, err)
		} else {
			s.m.succeeded(s.name)
		}
	})
}

// fire runs the scheduler: a buildset, with the changes kept if any, and
// the new last_run in the same transaction; or, with only_if_changed and
// no change, just the new last_run.
func (s *timedSched) fire(ctx context.Context) error {
	now := s.m.clk.Now()
	if now.Before(s.next) {
		// The system clock went back since the timer was armed.
		s.schedule()
		return nil
	}
	if s.m.disabled(s.name) {
		return s.skip(ctx, now) // enable.go
	}
	ran := store.StateValue{Object: s.obj(), Name: "last_run", Value: now}
	var ks []kept
	if s.col != nil {
		ks = s.col.all()
	}
	branch, prio, builders := "", 0, []string(nil)
	if s.per != nil {
		branch, prio, builders = s.per.Branch, s.per.Priority, s.per.Builders
	} else {
		branch, prio, builders = s.nt.Branch, s.nt.Priority, s.nt.Builders
	}
	if s.wantsChanges() && !anyImportant(ks) {
		if err := s.m.st.SetState(ctx, ran); err != nil {
			return err
		}
		s.m.log.Info("nightly scheduler: no change since its last run, no build", "scheduler", s.name, "branch", branch)
	} else {
		var nb store.NewBuildset
		if len(ks) > 0 {
			nb = changesBuildset(ks)
			nb.Scheduler = s.name
		} else {
			nb.SourceStamps = []store.SourceStamp{{Branch: branch}}
		}
		what := "Periodic"
		if s.nt != nil {
			what = "Nightly"
		}
		nb.Reason = fmt.Sprintf("The %s scheduler '%s' triggered this build", what, s.name)
		nb.Priority = prio
		nb.State = []store.StateValue{ran}
		if _, _, err := s.m.build(ctx, s.name, builders, nb); err != nil {
			return err
		}
		if s.col != nil {
			s.col.pending = map[string][]kept{}
		}
	}
	s.lastRun = now
	s.failed = false
	s.schedule()
	return nil
}

func (s *timedSched) retry(ctx context.Context) error {
	if s.wantsChanges() != (s.col != nil) {
		// update failed to start or drop the change collector of
		// only_if_changed: without it, the scheduler would never build.
		var sc config.Scheduler = s.nt
		if s.per != nil {
			sc = s.per
		}
		if err := s.update(ctx, sc); err != nil {
			return err
		}
	}
	if !s.failed {
		return nil
	}
	return s.fire(ctx)
}

func (s *timedSched) stop() {
	s.t.stop()
	if s.col != nil {
		s.col.stop()
	}
}

func (s *timedSched) status(now time.Time) Status {
	st := Status{Name: s.name, Kind: s.kind(), LastRun: s.lastRun}
	switch {
	case s.per != nil:
		st.Builders = s.per.Builders
	default:
		st.Builders = s.nt.Builders
	}
	if s.col != nil {
		st.Pending = s.col.count()
	}
	switch {
	case s.failed:
		st.Waiting = "retrying its last run"
	case s.next.IsZero():
		st.Waiting = "never runs: its fields match no date"
	case s.per != nil:
		st.Next = s.next
		st.Waiting = fmt.Sprintf("next run %s (every %s)", clockTime(s.next, now), s.per.Interval)
	default:
		st.Next = s.next
		tz := s.nt.TimeZone
		if tz == "" {
			tz = "local time"
		}
		loc := s.nt.Location
		if loc == nil {
			loc = time.Local
		}
		st.Waiting = fmt.Sprintf("next run %s %s", s.next.In(loc).Format("2006-01-02 15:04"), tz)
		if s.nt.OnlyIfChanged {
			on := ""
			if s.nt.Branch != "" {
				on = " on " + s.nt.Branch
			}
			if st.Pending == 0 {
				st.Waiting += ", if there is a change" + on + " by then"
			} else {
				st.Waiting += fmt.Sprintf(" (%s%s so far)", plural(st.Pending, "change"), on)
			}
		}
	}
	return st
}
