package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// rules are what a change consumer keeps and how it builds, taken from
// its configuration.
type rules struct {
	kind          string
	builders      []string
	branch        string // only changes on this branch; "" any
	filter        *config.ChangeFilter
	codebases     []string // only changes of these codebases; empty: any
	important     *config.Func
	onlyImportant bool
	stable        time.Duration // tree-stable timer; 0: a buildset per important change
	perBranch     bool          // a timer and a buildset per branch (any_branch_scheduler)
	priority      int
	build         bool // false: only keep the changes, for a nightly scheduler's only_if_changed
}

func rulesOf(sc config.Scheduler) rules {
	switch s := sc.(type) {
	case *config.SingleBranchScheduler:
		r := rules{kind: kindOf(s), builders: s.Builders, filter: s.ChangeFilter, codebases: s.Codebases,
			important: s.FileIsImportant, onlyImportant: s.OnlyImportant, stable: s.TreeStableTimer,
			priority: s.Priority, build: true}
		if s.ChangeFilter == nil {
			r.branch = s.Branch
		}
		return r
	case *config.AnyBranchScheduler:
		return rules{kind: kindOf(s), builders: s.Builders, filter: s.ChangeFilter, codebases: s.Codebases,
			important: s.FileIsImportant, onlyImportant: s.OnlyImportant, stable: s.TreeStableTimer,
			perBranch: true, priority: s.Priority, build: true}
	case *config.Nightly:
		return rules{kind: kindOf(s), builders: s.Builders, branch: s.Branch, priority: s.Priority}
	}
	panic(fmt.Sprintf("scheduler: no change rules for %T", sc))
}

// changeSched is a change-driven scheduler (single_branch_scheduler,
// any_branch_scheduler), or the part of a nightly one that keeps the
// changes only_if_changed looks at.
//
// Each change after the watermark is matched and classified; the
// classification and the new watermark are stored in one transaction.
// Kept changes are grouped: one group for a single-branch scheduler, one
// per (codebase, project, repository, branch) for an any-branch one. A
// group's buildset consumes its changes in the transaction that adds it.
type changeSched struct {
	m    *Manager
	name string
	r    rules

	mark    int64             // the last change looked at
	pending map[string][]kept // by group, oldest first
	timers  map[string]*timer // tree-stable timers, by group
	failed  map[string]bool   // groups whose buildset could not be added
	labels  map[string]string // group -> what Status calls it
	reason  func() string     // the buildsets' reason
}

type kept struct {
	c         store.Change
	important bool
}

func newChangeSched(m *Manager, sc config.Scheduler) *changeSched {
	s := &changeSched{m: m, name: sc.SchedulerName(), pending: map[string][]kept{},
		timers: map[string]*timer{}, failed: map[string]bool{}, labels: map[string]string{}}
	s.setRules(rulesOf(sc))
	return s
}

func (s *changeSched) setRules(r rules) {
	s.r = r
	what := "SingleBranchScheduler"
	if r.perBranch {
		what = "AnyBranchScheduler"
	}
	s.reason = func() string { return fmt.Sprintf("The %s '%s' triggered this build", what, s.name) }
}

func (s *changeSched) kind() string           { return s.r.kind }
func (s *changeSched) consumer() *changeSched { return s }
func (s *changeSched) obj() string            { return objName(s.name) }
func timerName(group string) string           { return "timer:" + group }
func (s *changeSched) update(_ context.Context, sc config.Scheduler) error {
	// Timers that run keep their deadline: a new tree_stable_timer
	// applies from the next change.
	s.setRules(rulesOf(sc))
	return nil
}

// group returns the group of c and remembers its label.
func (s *changeSched) group(c store.Change) string {
	if !s.r.perBranch {
		return ""
	}
	b, _ := json.Marshal([]string{c.Codebase, c.Project, c.Repository, c.Branch})
	g := string(b)
	if _, ok := s.labels[g]; !ok {
		label := c.Branch
		if label == "" {
			label = "(no branch)"
		}
		if c.Codebase != "" {
			label = c.Codebase + ":" + label
		}
		s.labels[g] = label
	}
	return g
}

// start loads the watermark, the kept changes and the deadlines of the
// tree-stable timers; a new scheduler starts at the last change stored
// when SetConfig added it, so that it does not build history. Groups left with an important change
// and no timer (a restart between the classification and the buildset,
// or a configuration that changed meanwhile) are built or timed now.
func (s *changeSched) start(ctx context.Context, state map[string]json.RawMessage) error {
	raw, ok := state["last_change"]
	if ok {
		if err := json.Unmarshal(raw, &s.mark); err != nil {
			return fmt.Errorf("state last_change: %w", err)
		}
	} else {
		last, err := s.m.startMark, error(nil)
		if !s.m.startMarkOK {
			last, err = s.m.st.LastChangeID(ctx)
		}
		if err != nil {
			return err
		}
		if err := s.m.st.SetState(ctx, store.StateValue{Object: s.obj(), Name: "last_change", Value: last}); err != nil {
			return err
		}
		s.mark = last
	}
	kcs, err := s.m.st.SchedulerChanges(ctx, s.name)
	if err != nil {
		return err
	}
	s.pending = map[string][]kept{}
	for _, kc := range kcs {
		c, err := s.m.st.GetChange(ctx, kc.ChangeID)
		if err != nil {
			return err
		}
		g := s.group(c)
		s.pending[g] = append(s.pending[g], kept{c, kc.Important})
	}
	var stale []store.StateValue
	for name, raw := range state {
		g, ok := strings.CutPrefix(name, "timer:")
		if !ok {
			continue
		}
		var at time.Time
		if err := json.Unmarshal(raw, &at); err != nil || len(s.pending[g]) == 0 || !s.r.build {
			stale = append(stale, store.StateValue{Object: s.obj(), Name: name})
			continue
		}
		s.armGroup(g, at)
	}
	if len(stale) > 0 {
		if err := s.m.st.SetState(ctx, stale...); err != nil {
			return err
		}
	}
	if !s.r.build {
		return nil
	}
	for _, g := range slices.Sorted(maps.Keys(s.pending)) {
		if s.timers[g] != nil || !anyImportant(s.pending[g]) {
			continue
		}
		if s.r.stable > 0 {
			at := s.m.clk.Now().Add(s.r.stable)
			if err := s.m.st.SetState(ctx, store.StateValue{Object: s.obj(), Name: timerName(g), Value: at}); err != nil {
				return err
			}
			s.armGroup(g, at)
		} else if err := s.drain(ctx, g); err != nil {
			s.m.fail(s.name, err)
		}
	}
	return nil
}

func (s *changeSched) armGroup(g string, at time.Time) {
	s.timers[g].stop()
	s.timers[g] = s.m.arm(at, func(ctx context.Context) {
		if err := s.fire(ctx, g); err != nil {
			s.m.fail(s.name, err)
		} else if len(s.failed) == 0 {
			// Not while another group waits for its retry: Manager.retry
			// retries only schedulers with an error.
			s.m.succeeded(s.name)
		}
	})
}

// match reports whether the scheduler keeps c, and whether c is important.
// A change_filter function that fails rejects the change; a
// file_is_important that fails makes it important: a build too many is
// better than a change never built.
func (s *changeSched) match(c store.Change) (keep, important bool) {
	if s.r.branch != "" && c.Branch != s.r.branch {
		return false, false
	}
	if len(s.r.codebases) > 0 && !slices.Contains(s.r.codebases, c.Codebase) {
		return false, false
	}
	var info config.ChangeInfo
	if s.r.filter != nil || s.r.important != nil {
		info = changeInfo(c)
	}
	if s.r.filter != nil {
		ok, err := s.r.filter.Match(info)
		if err != nil {
			s.logFuncErr("change_filter function failed: the change is ignored", c, err)
			return false, false
		}
		if !ok {
			return false, false
		}
	}
	important = true
	if s.r.important != nil {
		imp, err := s.r.important.CallFileIsImportant(info, 0)
		if err != nil {
			s.logFuncErr("file_is_important failed: the change counts as important", c, err)
		} else {
			important = imp
		}
	}
	if !important && s.r.onlyImportant {
		return false, false
	}
	return true, important
}

func (s *changeSched) logFuncErr(msg string, c store.Change, err error) {
	args := []any{"scheduler", s.name, "change", c.ID, "err", err}
	var fe *config.FuncError
	if errors.As(err, &fe) {
		if bt := fe.Backtrace(); bt != "" {
			args = append(args, "backtrace", bt)
		}
	}
	s.m.log.Warn(msg, args...)
}

func changeInfo(c store.Change) config.ChangeInfo {
	props := make(map[string]any, len(c.Properties))
	for k, p := range c.Properties {
		props[k] = p.Value
	}
	return config.ChangeInfo{ID: c.ID, Author: c.Author, Committer: c.Committer, Comments: c.Comments,
		Branch: c.Branch, Revision: c.Revision, Revlink: c.Revlink, When: c.When, Category: c.Category,
		Repository: c.Repository, Codebase: c.Codebase, Project: c.Project, Files: c.Files, Properties: props}
}

// consume classifies the changes of cs after the watermark and stores the
// classification with the new watermark and the new timer deadlines, in
// one transaction; then it builds what is due. On error nothing moved.
//
// As in Buildbot, an important change starts (or restarts) its group's
// tree-stable timer, and an unimportant one restarts it only if it runs.
func (s *changeSched) consume(ctx context.Context, cs []store.Change) error {
	now := s.m.clk.Now()
	last := s.mark
	var add []store.SchedulerChange
	type keptIn struct {
		g string
		k kept
	}
	var keep []keptIn
	deadlines := map[string]time.Time{}
	var touched []string
	off := s.m.disabled(s.name) // enable.go: changes are passed over
	for _, c := range cs {
		if c.ID <= s.mark {
			continue
		}
		last = c.ID
		ok, imp := s.match(c)
		if !ok || off {
			continue
		}
		g := s.group(c)
		add = append(add, store.SchedulerChange{ChangeID: c.ID, Important: imp})
		keep = append(keep, keptIn{g, kept{c, imp}})
		if !slices.Contains(touched, g) {
			touched = append(touched, g)
		}
		if s.r.build && s.r.stable > 0 {
			_, running := deadlines[g]
			if imp || running || s.timers[g] != nil {
				deadlines[g] = now.Add(s.r.stable)
			}
		}
	}
	if last == s.mark {
		return nil
	}
	state := []store.StateValue{{Object: s.obj(), Name: "last_change", Value: last}}
	for _, g := range slices.Sorted(maps.Keys(deadlines)) {
		state = append(state, store.StateValue{Object: s.obj(), Name: timerName(g), Value: deadlines[g]})
	}
	if err := s.m.st.ClassifyChanges(ctx, s.name, add, state...); err != nil {
		return err
	}
	s.mark = last
	for _, k := range keep {
		s.pending[k.g] = append(s.pending[k.g], k.k)
	}
	for g, at := range deadlines {
		s.armGroup(g, at)
	}
	if s.r.build && s.r.stable == 0 {
		// Every group, even after one failed: drain marks the ones that
		// fail for the retry, and only those are retried.
		var first error
		for _, g := range touched {
			if err := s.drain(ctx, g); err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			s.m.fail(s.name, first)
		}
	}
	return nil
}

// drain adds, without a tree-stable timer, one buildset per important
// change of group g, each with the unimportant changes kept before it.
func (s *changeSched) drain(ctx context.Context, g string) error {
	for {
		p := s.pending[g]
		i := slices.IndexFunc(p, func(k kept) bool { return k.important })
		if i < 0 {
			return nil
		}
		var state []store.StateValue
		if s.timers[g] != nil {
			// A timer from before tree_stable_timer was removed: this
			// buildset takes its changes.
			state = append(state, store.StateValue{Object: s.obj(), Name: timerName(g)})
		}
		if err := s.buildGroup(ctx, g, i+1, state); err != nil {
			s.failed[g] = true
			return err
		}
		s.timers[g].stop()
		delete(s.timers, g)
	}
}

// fire adds the buildset of group g when its tree-stable timer ends: all
// the changes the group kept, important or not.
func (s *changeSched) fire(ctx context.Context, g string) error {
	delete(s.timers, g)
	done := store.StateValue{Object: s.obj(), Name: timerName(g)}
	if !anyImportant(s.pending[g]) {
		return s.m.st.SetState(ctx, done)
	}
	if err := s.buildGroup(ctx, g, len(s.pending[g]), []store.StateValue{done}); err != nil {
		s.failed[g] = true
		return err
	}
	return nil
}

// retry adds the buildsets that failed.
func (s *changeSched) retry(ctx context.Context) error {
	for _, g := range slices.Sorted(maps.Keys(s.failed)) {
		delete(s.failed, g)
		var err error
		if s.r.stable > 0 && s.timers[g] == nil {
			err = s.fire(ctx, g)
		} else if s.r.stable == 0 {
			err = s.drain(ctx, g)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// buildGroup adds a buildset with the first n changes kept by group g,
// consuming them, with state in the same transaction.
func (s *changeSched) buildGroup(ctx context.Context, g string, n int, state []store.StateValue) error {
	if s.m.disabled(s.name) {
		return s.dropGroup(ctx, g, n, state) // enable.go
	}
	ks := s.pending[g][:n]
	nb := changesBuildset(ks)
	nb.Reason, nb.Priority, nb.Scheduler, nb.State = s.reason(), s.r.priority, s.name, state
	if _, _, err := s.m.build(ctx, s.name, s.r.builders, nb); err != nil {
		return err
	}
	rest := slices.Clone(s.pending[g][n:])
	if len(rest) == 0 {
		delete(s.pending, g)
	} else {
		s.pending[g] = rest
	}
	return nil
}

// changesBuildset returns a buildset for the changes ks: one source stamp
// per codebase, from its latest change, and the changes' properties (a
// later change's value wins).
func changesBuildset(ks []kept) store.NewBuildset {
	var nb store.NewBuildset
	latest := map[string]store.Change{}
	props := map[string]store.Property{}
	for _, k := range ks {
		nb.ChangeIDs = append(nb.ChangeIDs, k.c.ID)
		if l, ok := latest[k.c.Codebase]; !ok || k.c.ID > l.ID {
			latest[k.c.Codebase] = k.c
		}
		maps.Copy(props, k.c.Properties)
	}
	for _, cb := range slices.Sorted(maps.Keys(latest)) {
		c := latest[cb]
		nb.SourceStamps = append(nb.SourceStamps, store.SourceStamp{Codebase: c.Codebase,
			Repository: c.Repository, Branch: c.Branch, Revision: c.Revision, Project: c.Project})
	}
	if len(props) > 0 {
		nb.Properties = props
	}
	return nb
}

func anyImportant(ks []kept) bool {
	return slices.ContainsFunc(ks, func(k kept) bool { return k.important })
}

// all returns every kept change, oldest first, and forgets them: a
// nightly build took them.
func (s *changeSched) all() []kept {
	var out []kept
	for _, ks := range s.pending {
		out = append(out, ks...)
	}
	slices.SortFunc(out, func(a, b kept) int { return cmp.Compare(a.c.ID, b.c.ID) })
	return out
}

func (s *changeSched) count() int {
	n := 0
	for _, ks := range s.pending {
		n += len(ks)
	}
	return n
}

func (s *changeSched) stop() {
	for _, t := range s.timers {
		t.stop()
	}
}

func (s *changeSched) status(now time.Time) Status {
	st := Status{Name: s.name, Kind: s.r.kind, Builders: s.r.builders, Pending: s.count()}
	type tm struct {
		g  string
		at time.Time
	}
	var ts []tm
	for g, t := range s.timers {
		ts = append(ts, tm{g, t.at})
	}
	slices.SortFunc(ts, func(a, b tm) int { return cmp.Or(a.at.Compare(b.at), strings.Compare(a.g, b.g)) })
	var parts []string
	for _, t := range ts {
		p := fmt.Sprintf("tree stable until %s (%s)", clockTime(t.at, now), plural(len(s.pending[t.g]), "change"))
		if s.r.perBranch {
			p = s.labels[t.g] + ": " + p
		}
		parts = append(parts, p)
		if st.Next.IsZero() {
			st.Next = t.at
		}
	}
	switch {
	case len(parts) > 0:
		st.Waiting = strings.Join(parts, "; ")
	case st.Pending > 0:
		st.Waiting = fmt.Sprintf("waiting for an important change (%s kept)", plural(st.Pending, "unimportant change"))
	case s.r.branch != "":
		st.Waiting = "waiting for changes on " + s.r.branch
	default:
		st.Waiting = "waiting for changes"
	}
	return st
}

// clockTime formats t for a status line: the time of day if it is today,
// else the date too.
func clockTime(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
