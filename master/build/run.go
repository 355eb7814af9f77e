package build

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// run is one build in progress.
type run struct {
	runner *Runner
	req    store.BuildRequest
	cfg    *config.Config
	bcfg   *config.Builder
	sess   *registry.Session
	log    *slog.Logger
	done   chan struct{}

	build    store.Build
	steps    []store.Step
	props    map[string]store.Property
	sources  []store.SourceStamp
	builddir string // on the worker

	// planned are the steps this build runs: the builder's, or those its
	// steps function chose. env is what build-time functions see; redact
	// hides the secrets they rendered.
	planned []*config.Step
	env     *config.BuildEnv
	redact  *redactor

	mu         sync.Mutex
	stopReason string        // set once by stop
	stopResult result.Result // CANCELLED for a user stop, RETRY for a shutdown
	current    *registry.RemoteCommand
	stopCh     chan struct{} // closed by stop; created lazily by stopSignal
}

// setup records the build and its planned steps.
func (b *run) setup(ctx context.Context) (result.Result, error) {
	r := b.runner
	b.builddir = b.sess.Join(b.sess.Basedir(), b.bcfg.WorkerBuildDir)
	props, err := b.properties(ctx)
	if err != nil {
		return result.Exception, err
	}
	build, err := r.Store.AddBuild(ctx, store.NewBuild{
		BuilderID:  b.req.BuilderID,
		RequestID:  b.req.ID,
		WorkerID:   b.workerID(ctx),
		StartedAt:  r.now(),
		Properties: props,
	})
	if err != nil {
		return result.Exception, fmt.Errorf("record build: %w", err)
	}
	b.build = build
	b.props = props
	num := store.Property{Value: build.Number, Source: "Build"}
	if err := r.Store.SetBuildProperty(ctx, build.ID, "buildnumber", num); err != nil {
		return result.Exception, fmt.Errorf("record buildnumber: %w", err)
	}
	b.props["buildnumber"] = num
	b.env = b.newEnv()
	if err := b.plan(ctx); err != nil {
		if o := r.Observer; o != nil {
			o.BuildStarted(build)
		}
		return result.Exception, err
	}
	for i, sc := range b.planned {
		st, err := r.Store.AddStep(ctx, build.ID, i, sc.Name)
		if err != nil {
			return result.Exception, fmt.Errorf("record step %q: %w", sc.Name, err)
		}
		b.steps = append(b.steps, st)
	}
	if o := r.Observer; o != nil {
		o.BuildStarted(build)
	}
	return result.None, nil
}

func (b *run) workerID(ctx context.Context) int64 {
	w, err := b.runner.Store.GetWorkerByName(ctx, b.sess.Name)
	if err != nil {
		return 0
	}
	return w.ID
}

// properties gathers the build's properties; later sources override
// earlier ones, with Buildbot's precedence: the builder's
// default_properties, the worker's properties, the builder's properties,
// the buildset's (force form, scheduler), then the build's own.
func (b *run) properties(ctx context.Context) (map[string]store.Property, error) {
	props := make(map[string]store.Property)
	for k, v := range b.bcfg.DefaultProperties {
		props[k] = store.Property{Value: v, Source: "Builder"}
	}
	if w := b.cfg.Worker(b.sess.Name); w != nil {
		for k, v := range w.Properties {
			props[k] = store.Property{Value: v, Source: "Worker"}
		}
	} else if lw := b.cfg.LatentWorker(latent.WorkerOf(b.sess.Name)); lw != nil {
		for k, v := range lw.Properties {
			props[k] = store.Property{Value: v, Source: "Worker"}
		}
	}
	for k, v := range b.bcfg.Properties {
		props[k] = store.Property{Value: v, Source: "Builder"}
	}
	bs, err := b.runner.Store.GetBuildset(ctx, b.req.BuildsetID)
	if err != nil {
		return nil, fmt.Errorf("read buildset %d: %w", b.req.BuildsetID, err)
	}
	for k, v := range bs.Properties {
		props[k] = v
	}
	b.sources = bs.SourceStamps
	var ss store.SourceStamp
	if len(bs.SourceStamps) > 0 {
		ss = bs.SourceStamps[0]
	}
	own := map[string]any{
		"buildername": b.bcfg.Name,
		"workername":  b.sess.Name,
		"builddir":    b.builddir,
	}
	for k, v := range own {
		props[k] = store.Property{Value: v, Source: "Build"}
	}
	// The source stamp's fields, where it has them. An empty field does not
	// override a value given another way (a forced build's --prop
	// revision=SHA: its source stamp is empty).
	fromSource := map[string]string{
		"branch": ss.Branch, "revision": ss.Revision, "repository": ss.Repository,
		"project": ss.Project, "codebase": ss.Codebase,
	}
	for k, v := range fromSource {
		if _, given := props[k]; v != "" || !given {
			props[k] = store.Property{Value: v, Source: "Build"}
		}
	}
	return props, nil
}

// execute runs the steps in order and returns the build's result.
func (b *run) execute(ctx context.Context) result.Result {
	r := b.runner
	if err := b.ping(ctx); err != nil {
		b.log.Warn("worker did not answer before the build", "err", err)
		b.skipFrom(ctx, 0, "not run: worker lost")
		return result.Retry
	}
	overall := result.Success
	halted := false
	for i, sc := range b.planned {
		stopReason, stopResult := b.stopped()
		if (halted || stopReason != "") && !sc.AlwaysRun {
			why := "skipped: an earlier step halted the build"
			if stopReason != "" {
				why = "skipped: " + stopReason
			}
			b.finishStep(ctx, i, result.Skipped, why)
			continue
		}
		if stopResult == result.Retry {
			b.finishStep(ctx, i, result.Skipped, "skipped: "+stopReason)
			continue
		}
		release, res, ok := b.stepLocks(ctx, i, sc)
		if ok {
			res = b.runStep(ctx, i, sc)
			release()
		} else if res == result.Skipped {
			continue // stopped while waiting for its locks
		}
		var terminate bool
		overall, terminate = combine(overall, res, sc)
		if terminate {
			halted = true
		}
		if res == result.Retry {
			// The worker is gone: nothing else can run there.
			b.skipFrom(ctx, i+1, "not run: worker lost")
			return result.Retry
		}
	}
	if reason, res := b.stopped(); reason != "" {
		return result.Worst(overall, res)
	}
	_ = r
	return overall
}

// combine folds a step's result into the build's, with Buildbot's rules,
// and reports whether the build must not run further ordinary steps.
func combine(overall, step result.Result, sc *config.Step) (result.Result, bool) {
	switch step {
	case result.Failure:
		possible := result.Success
		if sc.WarnOnFailure {
			possible = result.Warnings
		}
		if sc.FlunkOnFailure {
			possible = result.Failure
		}
		return result.Worst(overall, possible), sc.HaltOnFailure
	case result.Warnings:
		possible := result.Success
		if sc.WarnOnWarnings {
			possible = result.Warnings
		}
		if sc.FlunkOnWarnings {
			possible = result.Failure
		}
		return result.Worst(overall, possible), false
	case result.Exception, result.Retry, result.Cancelled:
		return result.Worst(overall, step), true
	}
	return overall, false
}

func (b *run) ping(ctx context.Context) error {
	if err := b.setState(ctx, "pinging worker"); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return b.sess.Ping(pctx)
}

func (b *run) setState(ctx context.Context, state string) error {
	return b.runner.Store.SetBuildState(ctx, b.build.ID, state)
}

// skipFrom marks steps from index i on as not run.
func (b *run) skipFrom(ctx context.Context, i int, why string) {
	for ; i < len(b.steps); i++ {
		b.finishStep(ctx, i, result.Skipped, why)
	}
}

func (b *run) finishStep(ctx context.Context, i int, res result.Result, state string) {
	st := &b.steps[i]
	now := b.runner.now()
	state = b.redact.str(state)
	if err := b.runner.Store.FinishStep(ctx, st.ID, res, state, now); err != nil {
		b.log.Error("record step end", "step", st.Name, "err", err)
		return
	}
	st.Results, st.StateString, st.CompleteAt = res, state, now
	if o := b.runner.Observer; o != nil {
		o.StepChanged(b.build.ID, *st)
	}
}

// stop interrupts the build; the first stop wins.
func (b *run) stop(reason string, res result.Result) {
	b.mu.Lock()
	if b.stopReason != "" {
		b.mu.Unlock()
		return
	}
	b.stopReason, b.stopResult = reason, res
	if b.stopCh != nil {
		close(b.stopCh)
	}
	cmd := b.current
	b.mu.Unlock()
	if cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cmd.Interrupt(ctx, reason); err != nil {
			b.log.Warn("interrupt command", "err", err)
		}
	}
}

func (b *run) stopped() (string, result.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopReason, b.stopResult
}

func (b *run) setCurrent(c *registry.RemoteCommand) (stopReason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current = c
	return b.stopReason
}

// finish records the build's end and settles its request. It returns
// whether the request went back to the queue.
func (b *run) finish(ctx context.Context, res result.Result) (requeue bool) {
	r := b.runner
	now := r.now()
	if res == result.None {
		res = result.Exception
	}
	state := res.String()
	if reason, _ := b.stopped(); reason != "" {
		state = fmt.Sprintf("%s (%s)", res, reason)
	}
	if b.build.ID != 0 {
		if err := r.Store.FinishBuild(ctx, b.build.ID, res, state, now); err != nil {
			b.log.Error("record build end", "err", err)
		}
		b.build.Results, b.build.StateString, b.build.CompleteAt = res, state, now
	}
	if res == result.Retry {
		if err := r.Store.UnclaimRequest(ctx, b.req.ID, true, now); err != nil {
			b.log.Error("requeue build request", "err", err)
		}
		requeue = true
	} else if _, err := r.Store.CompleteRequest(ctx, b.req.ID, res, now); err != nil {
		b.log.Error("complete build request", "err", err)
	}
	b.log.Info("build finished", "build", b.build.ID, "number", b.build.Number, "result", res.String())
	if o := r.Observer; o != nil && b.build.ID != 0 {
		o.BuildFinished(b.build)
	}
	return requeue
}
