package build

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// TriggerRequest asks a triggerable scheduler for a buildset. Its fields
// match scheduler.TriggerRequest, so the master converts one to the other.
type TriggerRequest struct {
	Scheduler          string
	Reason             string
	Properties         map[string]store.Property
	SourceStamps       []store.SourceStamp
	ChangeIDs          []int64
	ParentBuildID      int64
	ParentRelationship string
}

// Triggerer starts the buildsets of trigger steps and follows them.
type Triggerer interface {
	// Trigger stores a buildset for r and queues its requests.
	Trigger(ctx context.Context, r TriggerRequest) (store.Buildset, []store.BuildRequest, error)
	// WaitBuildset returns the buildset's result once it is complete.
	WaitBuildset(ctx context.Context, id int64) (result.Result, error)
	// CancelBuildset cancels the buildset's pending requests and stops its
	// running builds, with reason.
	CancelBuildset(ctx context.Context, id int64, reason string) error
}

// trigger runs trigger(schedulers, ...): one buildset per scheduler, linked
// to this build; with wait_for_finish it waits for them all and takes the
// worst of their results. A stop while waiting cancels the triggered
// buildsets, as Buildbot's Trigger step does.
func (s *stepRun) trigger(ctx context.Context, stdio *logSink, a *config.TriggerAction) (result.Result, string) {
	b := s.b
	t := b.runner.Triggerer
	if t == nil {
		const msg = "this master cannot trigger builds (no triggerable schedulers are running)"
		stdio.header(ctx, msg)
		return result.Exception, msg
	}
	if reason, res := s.stopped(); reason != "" {
		return res, "not started: " + reason
	}
	props := make(map[string]store.Property, len(a.SetProperties))
	for k, v := range a.SetProperties {
		props[k] = store.Property{Value: v, Source: "Trigger"}
	}
	sources := s.triggerSources(a)
	var changeIDs []int64
	if cs, err := b.runner.Store.BuildsetChanges(ctx, b.req.BuildsetID); err == nil {
		for _, c := range cs {
			changeIDs = append(changeIDs, c.ID)
		}
	} else {
		b.log.Warn("trigger: read the build's changes", "err", err)
	}

	resumed := s.earlierChildren(ctx, props, sources)
	var sets []store.Buildset
	for _, name := range a.Schedulers {
		if bs, ok := resumed[name]; ok {
			sets = append(sets, bs)
			stdio.header(ctx, fmt.Sprintf("resumed %s: buildset %d, which an earlier attempt of this build triggered", name, bs.ID))
			continue
		}
		bs, reqs, err := t.Trigger(ctx, TriggerRequest{
			Scheduler:          name,
			Reason:             fmt.Sprintf("The Triggerable scheduler named '%s' was triggered by %s build #%d", name, b.req.BuilderName, b.build.Number),
			Properties:         props,
			SourceStamps:       sources,
			ChangeIDs:          changeIDs,
			ParentBuildID:      b.build.ID,
			ParentRelationship: s.step.Name,
		})
		if err != nil {
			stdio.header(ctx, fmt.Sprintf("trigger %s: %v", name, err))
			for _, done := range sets {
				_ = t.CancelBuildset(ctx, done.ID, "the trigger step that started it failed")
			}
			return result.Exception, "trigger " + name + " failed"
		}
		sets = append(sets, bs)
		builders := make([]string, len(reqs))
		for i, r := range reqs {
			builders[i] = r.BuilderName
		}
		stdio.header(ctx, fmt.Sprintf("triggered %s: buildset %d for %s", name, bs.ID, strings.Join(builders, ", ")))
	}
	if !a.WaitForFinish {
		return result.Success, fmt.Sprintf("triggered %s", strings.Join(a.Schedulers, ", "))
	}

	// Wait in a context that a stop of this build cancels.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stopSignal():
			cancel()
		case <-wctx.Done():
		}
	}()
	worst := result.Success
	for _, bs := range sets {
		res, err := t.WaitBuildset(wctx, bs.ID)
		if err != nil {
			reason, stopRes := s.stopped()
			if reason == "" {
				stdio.header(ctx, fmt.Sprintf("waiting for buildset %d: %v", bs.ID, err))
				return result.Exception, "lost track of the triggered builds"
			}
			for _, other := range sets {
				if err := t.CancelBuildset(ctx, other.ID, "the build that triggered it was stopped: "+reason); err != nil {
					b.log.Warn("trigger: cancel triggered buildset", "buildset", other.ID, "err", err)
				}
			}
			stdio.header(ctx, "stopped while waiting for the triggered builds; cancelled them")
			return stopRes, "interrupted: " + reason
		}
		stdio.header(ctx, fmt.Sprintf("buildset %d finished: %s", bs.ID, res))
		worst = result.Worst(worst, res)
	}
	return worst, fmt.Sprintf("triggered builds: %s", worst)
}

// earlierChildren returns, by scheduler, the buildsets that this step (by
// name) of an earlier build of the same request triggered with the same
// properties and source stamps, unless they ended RETRY or CANCELLED. A
// build retried after the master stopped or died resumes them instead of
// triggering them twice: their builds have run, or are queued still.
func (s *stepRun) earlierChildren(ctx context.Context, props map[string]store.Property, sources []store.SourceStamp) map[string]store.Buildset {
	b := s.b
	st := b.runner.Store
	builds, err := st.ListBuilds(ctx, store.BuildFilter{RequestID: b.req.ID})
	if err != nil {
		b.log.Warn("trigger: read the earlier builds of this request", "err", err)
		return nil
	}
	out := map[string]store.Buildset{}
	for _, eb := range builds { // newest first: the latest attempt's win
		if eb.ID == b.build.ID {
			continue
		}
		sets, err := st.ChildBuildsets(ctx, eb.ID)
		if err != nil {
			b.log.Warn("trigger: read the buildsets an earlier build triggered", "build", eb.ID, "err", err)
			continue
		}
		for _, bs := range sets {
			name, _ := bs.Properties["scheduler"].Value.(string)
			if _, ok := out[name]; ok || bs.ParentRelationship != s.step.Name {
				continue
			}
			if bs.Complete && (bs.Results == result.Retry || bs.Results == result.Cancelled) {
				continue
			}
			if sameTrigger(bs, props, sources) {
				out[name] = bs
			}
		}
	}
	return out
}

// sameTrigger reports whether buildset bs was triggered with props and
// sources.
func sameTrigger(bs store.Buildset, props map[string]store.Property, sources []store.SourceStamp) bool {
	n := 0
	for k, p := range bs.Properties {
		if p.Source != "Trigger" {
			continue
		}
		n++
		want, ok := props[k]
		if !ok || !sameJSON(p.Value, want.Value) {
			return false
		}
	}
	if n != len(props) {
		return false
	}
	key := func(sss []store.SourceStamp) []string {
		out := make([]string, len(sss))
		for i, ss := range sss {
			var patch any
			if p := ss.Patch; p != nil {
				patch = []any{p.Level, p.Body, p.Subdir}
			}
			b, _ := json.Marshal([]any{ss.Codebase, ss.Repository, ss.Branch, ss.Revision, ss.Project, patch})
			out[i] = string(b)
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	return slices.Equal(key(bs.SourceStamps), key(sources))
}

func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// triggerSources returns the source stamps the triggered builds get: this
// build's, with each revision replaced by what the build checked out
// (got_revision) when update_sourcestamp is set, or with no revision (the
// latest) when always_use_latest is.
func (s *stepRun) triggerSources(a *config.TriggerAction) []store.SourceStamp {
	b := s.b
	out := make([]store.SourceStamp, len(b.sources))
	copy(out, b.sources)
	if len(out) == 0 {
		out = []store.SourceStamp{{}}
	}
	for i := range out {
		switch {
		case a.AlwaysUseLatest:
			out[i].Revision = ""
		case a.UpdateSourcestamp:
			if rev := s.gotRevision(out[i].Codebase, len(out)); rev != "" {
				out[i].Revision = rev
			}
		}
		out[i].ID = 0
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Codebase < out[j].Codebase })
	return out
}

// gotRevision reads got_revision for codebase: a string when the build has
// one codebase, else a dict keyed by codebase (Buildbot's convention).
func (s *stepRun) gotRevision(codebase string, stamps int) string {
	p, ok := s.b.props["got_revision"]
	if !ok {
		return ""
	}
	switch v := p.Value.(type) {
	case string:
		if stamps == 1 {
			return v
		}
	case map[string]any:
		rev, _ := v[codebase].(string)
		return rev
	}
	return ""
}
