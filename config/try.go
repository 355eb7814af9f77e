package config

import "go.starlark.net/starlark"

// TryScheduler accepts try jobs: builds of a base revision with a user's
// patch applied after checkout, sent with the SSH interface's try
// command (Buildbot's Try_Userpass and Try_Jobdir). Only the builders of
// a try scheduler accept try jobs.
type TryScheduler struct {
	Name     string
	Builders []string // non-empty; each names a declared builder
	Pos      Pos      // position of the try_scheduler(...) call
}

// SchedulerName implements Scheduler.
func (s *TryScheduler) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *TryScheduler) BuilderNames() []string { return s.Builders }

func (s *TryScheduler) kind() string { return "try_scheduler" }
func (s *TryScheduler) pos() Pos     { return s.Pos }

// builtinTryScheduler implements try_scheduler(name, builders).
func builtinTryScheduler(c *call) (starlark.Value, error) {
	s := &TryScheduler{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	return scheduler(c, s, "try_scheduler"), nil
}

// TrySchedulerFor returns the first try scheduler, in declaration order,
// that lists every one of builders, or nil if none does (or builders is
// empty).
func (c *Config) TrySchedulerFor(builders ...string) *TryScheduler {
	if len(builders) == 0 {
		return nil
	}
	for _, s := range c.Schedulers {
		ts, ok := s.(*TryScheduler)
		if !ok {
			continue
		}
		all := true
		for _, b := range builders {
			if !contains(ts.Builders, b) {
				all = false
				break
			}
		}
		if all {
			return ts
		}
	}
	return nil
}
