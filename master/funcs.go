package master

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/dispatch"
	"github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/store"
)

// stepLocker lets the build runner take step locks from the dispatcher.
type stepLocker struct{ d *dispatch.Dispatcher }

func (s stepLocker) AcquireStepLocks(ctx context.Context, requestID int64, worker string, locks []config.LockAccess, waiting func(string)) (func(), error) {
	return s.d.AcquireStepLocks(ctx, requestID, worker, lockAccesses(locks), waiting)
}

// buildsetProps reads the properties of buildsets for the builder
// functions. Buildset properties never change, so they are cached; the
// cache is dropped whole when it grows large.
type buildsetProps struct {
	st  *store.Store
	log *slog.Logger

	mu    sync.Mutex
	cache map[int64]buildsetInfo
}

type buildsetInfo struct {
	props   map[string]any
	sources []config.SourceStamp
}

const buildsetPropsCache = 4096

func (p *buildsetProps) get(id int64) buildsetInfo {
	if p == nil || p.st == nil {
		return buildsetInfo{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if bi, ok := p.cache[id]; ok {
		return bi
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bs, err := p.st.GetBuildset(ctx, id)
	if err != nil {
		p.log.Warn("read buildset properties for a builder function", "buildset", id, "err", err)
		return buildsetInfo{}
	}
	m := make(map[string]any, len(bs.Properties))
	for k, v := range bs.Properties {
		m[k] = v.Value
	}
	bi := buildsetInfo{props: m, sources: build.Sources(bs.SourceStamps)}
	if p.cache == nil || len(p.cache) >= buildsetPropsCache {
		p.cache = make(map[int64]buildsetInfo)
	}
	p.cache[id] = bi
	return bi
}

// builderFuncs sets db's CanStart, NextWorker and NextBuild from b's
// functions, calling them with what master.star's functions expect.
func builderFuncs(db *dispatch.Builder, cfg *config.Config, b *config.Builder, props *buildsetProps) {
	if b.CanStart == nil && b.NextWorker == nil && b.NextBuild == nil {
		return
	}
	info := config.BuilderInfo{Name: b.Name, Tags: b.Tags, Properties: b.Properties}
	worker := func(c dispatch.Candidate) config.WorkerInfo {
		wi := config.WorkerInfo{Name: c.Name, RunningBuilds: c.Running}
		if w := cfg.Worker(c.Name); w != nil {
			wi.Properties = w.Properties
		} else if lw := cfg.LatentWorker(latent.WorkerOf(c.Name)); lw != nil {
			wi.Properties = lw.Properties
		}
		return wi
	}
	request := func(r store.BuildRequest) config.RequestInfo {
		bi := props.get(r.BuildsetID)
		return config.RequestInfo{ID: r.ID, Priority: r.Priority, SubmittedAt: r.SubmittedAt, Properties: bi.props, Sources: bi.sources}
	}
	if f := b.CanStart; f != nil {
		db.CanStart = func(c dispatch.Candidate, r store.BuildRequest) (bool, error) {
			return f.CallCanStart(info, worker(c), request(r), 0)
		}
	}
	if f := b.NextWorker; f != nil {
		db.NextWorker = func(cs []dispatch.Candidate, r store.BuildRequest) (string, error) {
			ws := make([]config.WorkerInfo, len(cs))
			for i, c := range cs {
				ws[i] = worker(c)
			}
			return f.CallNextWorker(info, ws, request(r), 0)
		}
	}
	if f := b.NextBuild; f != nil {
		db.NextBuild = func(rs []store.BuildRequest) (int64, error) {
			ris := make([]config.RequestInfo, len(rs))
			for i, r := range rs {
				ris[i] = request(r)
			}
			return f.CallNextBuild(info, ris, 0)
		}
	}
}
