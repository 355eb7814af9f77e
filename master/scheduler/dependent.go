package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// depSched is a dependent scheduler.
//
// When its upstream scheduler adds a buildset, build records in the
// dependent's state, in the same transaction, that it waits for it
// ("upstream:<id>"). When that
// buildset completes with SUCCESS or WARNINGS (as Buildbot's Dependent),
// the dependent adds its own buildset, with the same source stamps,
// changes and properties (but its own "scheduler"), and drops the record
// in the same transaction; after another result it just drops it. At
// start it looks at the buildsets it waits for, so one that completed
// while the master was down is not missed, and none is built twice.
// Buildsets of a force scheduler are not recorded (the master adds them):
// a dependent of a force scheduler acts on their completion as it comes.
type depSched struct {
	m   *Manager
	cfg *config.Dependent
}

// subPrefix starts the names of a dependent's records of the upstream
// buildsets it waits for.
const subPrefix = "upstream:"

func subName(bsid int64) string { return subPrefix + strconv.FormatInt(bsid, 10) }

func (s *depSched) kind() string           { return "dependent" }
func (s *depSched) obj() string            { return objName(s.cfg.Name) }
func (s *depSched) consumer() *changeSched { return nil }
func (s *depSched) stop()                  {}

func (s *depSched) update(_ context.Context, sc config.Scheduler) error {
	s.cfg = sc.(*config.Dependent)
	return nil
}

func (s *depSched) start(ctx context.Context, state map[string]json.RawMessage) error {
	return s.scan(ctx, state)
}

func (s *depSched) retry(ctx context.Context) error {
	state, err := s.m.st.ObjectState(ctx, s.obj())
	if err != nil {
		return err
	}
	return s.scan(ctx, state)
}

// scan acts on the buildsets it waits for that have completed.
func (s *depSched) scan(ctx context.Context, state map[string]json.RawMessage) error {
	for _, name := range slices.Sorted(maps.Keys(state)) {
		idText, ok := strings.CutPrefix(name, subPrefix)
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			continue
		}
		bs, err := s.m.st.GetBuildset(ctx, id)
		if err != nil {
			return err
		}
		if bs.Complete {
			if err := s.upstreamDone(ctx, bs, bs.Results, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// upstreamDone adds the dependent buildset for bs if res allows.
// subscribed says whether s's state records that it waits for bs.
func (s *depSched) upstreamDone(ctx context.Context, bs store.Buildset, res result.Result, subscribed bool) error {
	sub := store.StateValue{Object: s.obj(), Name: subName(bs.ID)}
	if s.m.disabled(s.cfg.Name) {
		return s.ignore(ctx, bs, sub, subscribed) // enable.go
	}
	if res != result.Success && res != result.Warnings {
		s.m.log.Info("dependent scheduler: upstream buildset did not succeed, no build",
			"scheduler", s.cfg.Name, "upstream", s.cfg.Upstream, "buildset", bs.ID, "result", res)
		if subscribed {
			return s.m.st.SetState(ctx, sub)
		}
		return nil
	}
	changes, err := s.m.st.BuildsetChanges(ctx, bs.ID)
	if err != nil {
		return err
	}
	nb := store.NewBuildset{
		Reason: fmt.Sprintf("The Dependent scheduler '%s' triggered this build: buildset %d of '%s' ended with %s",
			s.cfg.Name, bs.ID, s.cfg.Upstream, res),
		Properties: make(map[string]store.Property, len(bs.Properties)),
	}
	for k, p := range bs.Properties {
		if k != "scheduler" {
			nb.Properties[k] = p
		}
	}
	for _, ss := range bs.SourceStamps {
		ss.ID = 0
		if ss.Patch != nil {
			p := *ss.Patch
			p.ID = 0
			ss.Patch = &p
		}
		nb.SourceStamps = append(nb.SourceStamps, ss)
	}
	for _, c := range changes {
		nb.ChangeIDs = append(nb.ChangeIDs, c.ID)
	}
	if subscribed {
		nb.State = []store.StateValue{sub}
	}
	if _, _, err := s.m.build(ctx, s.cfg.Name, s.cfg.Builders, nb); err != nil {
		if !subscribed {
			// Remember it, so that the retry builds it.
			sub.Value = true
			if serr := s.m.st.SetState(ctx, sub); serr != nil {
				s.m.log.Error("dependent scheduler: buildset lost", "scheduler", s.cfg.Name, "upstream_buildset", bs.ID, "err", serr)
			}
		}
		return err
	}
	return nil
}

func (s *depSched) status(time.Time) Status {
	return Status{Name: s.cfg.Name, Kind: "dependent", Builders: s.cfg.Builders,
		Waiting: fmt.Sprintf("waiting for a buildset of %s to succeed", s.cfg.Upstream)}
}

// completed lets the dependent schedulers act on buildset id, which
// completed with res.
func (m *Manager) completed(ctx context.Context, id int64, res result.Result) {
	var deps []*depSched
	for _, name := range m.order {
		if e := m.scheds[name]; e != nil && e.started {
			if d, ok := e.s.(*depSched); ok {
				deps = append(deps, d)
			}
		}
	}
	if len(deps) == 0 {
		return
	}
	bs, err := m.st.GetBuildset(ctx, id)
	if err != nil {
		m.log.Error("scheduler: read a completed buildset for dependent schedulers", "buildset", id, "err", err)
		return
	}
	up, _ := bs.Properties["scheduler"].Value.(string)
	for _, d := range deps {
		if d.cfg.Upstream != up {
			continue
		}
		var v bool
		subscribed, err := m.st.GetState(ctx, d.obj(), subName(id), &v)
		if err != nil {
			m.fail(d.cfg.Name, err)
			continue
		}
		if !subscribed {
			m.mu.Lock()
			_, forced := m.byName[up].(*config.ForceScheduler)
			m.mu.Unlock()
			if !forced {
				// Handled already, or added before the dependent existed.
				continue
			}
		}
		if err := d.upstreamDone(ctx, bs, res, subscribed); err != nil {
			m.fail(d.cfg.Name, err)
		}
	}
}
