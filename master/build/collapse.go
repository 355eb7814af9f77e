package build

import (
	"context"
	"fmt"
	"slices"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// Queue is the dispatcher's queue: requests collapsed into a build leave it.
type Queue interface {
	Remove(ids ...int64)
}

// collapseScan bounds how many pending requests of the builder one build
// start looks at.
const collapseScan = 1000

// collapse completes as SKIPPED the builder's other pending requests that
// the build just started covers (collapse_requests): by default those
// with the same source stamps, or those the builder's collapse function
// accepts. The master's default is not to collapse.
func (b *run) collapse(ctx context.Context) {
	r := b.runner
	fn := b.bcfg.CollapseRequestsFn
	if fn == nil && (b.bcfg.CollapseRequests == nil || !*b.bcfg.CollapseRequests) {
		return
	}
	if reason, _ := b.stopped(); reason != "" {
		return // it will not run: it covers nothing
	}
	pending, err := r.Store.ListRequests(ctx, store.RequestFilter{BuilderID: b.req.BuilderID, PendingOnly: true, Limit: collapseScan})
	if err != nil {
		b.log.Warn("collapse requests: read the queue", "err", err)
		return
	}
	var info config.BuilderInfo
	var mine config.RequestInfo
	if fn != nil {
		info = config.BuilderInfo{Name: b.bcfg.Name, Tags: b.bcfg.Tags, Properties: b.bcfg.Properties}
		bs, err := r.Store.GetBuildset(ctx, b.req.BuildsetID)
		if err != nil {
			b.log.Warn("collapse requests: read the buildset", "err", err)
			return
		}
		mine = requestInfo(b.req, bs)
	}
	reason := fmt.Sprintf("collapsed into build %d", b.build.Number)
	var collapsed []int64
	for _, p := range pending {
		if p.ID == b.req.ID {
			continue
		}
		bs, err := r.Store.GetBuildset(ctx, p.BuildsetID)
		if err != nil {
			b.log.Warn("collapse requests: read a buildset", "request", p.ID, "err", err)
			continue
		}
		var ok bool
		if fn != nil {
			ok, err = fn.CallCollapse(info, mine, requestInfo(p, bs), 0)
			if err != nil {
				b.log.Warn("collapse_requests failed; not collapsing", "request", p.ID, "err", err, "traceback", config.Backtrace(err))
				continue
			}
		} else {
			ok = sameSources(b.sources, bs.SourceStamps)
		}
		if !ok {
			continue
		}
		if _, err := r.Store.CollapseRequest(ctx, p.ID, reason, r.now()); err != nil {
			// Claimed or cancelled meanwhile: it is not ours to collapse.
			b.log.Debug("collapse request", "request", p.ID, "err", err)
			continue
		}
		collapsed = append(collapsed, p.ID)
	}
	if len(collapsed) > 0 {
		if r.Queue != nil {
			r.Queue.Remove(collapsed...)
		}
		b.log.Info("collapsed requests into the build", "build", b.build.ID, "number", b.build.Number, "requests", collapsed)
	}
}

func requestInfo(req store.BuildRequest, bs store.Buildset) config.RequestInfo {
	props := make(map[string]any, len(bs.Properties))
	for k, v := range bs.Properties {
		props[k] = v.Value
	}
	return config.RequestInfo{ID: req.ID, Priority: req.Priority, SubmittedAt: req.SubmittedAt, Properties: props, Sources: Sources(bs.SourceStamps)}
}

// Sources converts a buildset's source stamps for builder functions.
func Sources(ss []store.SourceStamp) []config.SourceStamp {
	out := make([]config.SourceStamp, len(ss))
	for i, s := range ss {
		out[i] = config.SourceStamp{Codebase: s.Codebase, Branch: s.Branch, Revision: s.Revision, Repository: s.Repository, Project: s.Project}
	}
	return out
}

// sameSources says whether two buildsets build the same source stamps
// (codebase, repository, branch, revision and project alike).
func sameSources(a, b []store.SourceStamp) bool {
	key := func(ss []store.SourceStamp) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = fmt.Sprintf("%q %q %q %q %q", s.Codebase, s.Repository, s.Branch, s.Revision, s.Project)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}
