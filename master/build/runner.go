// Package build runs builds: it claims a build request, records the build
// and its steps in the store, runs each step as remote commands on the
// chosen worker, stores their logs as they stream in, and combines the step
// results into the build's result as Buildbot does.
package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// Sessions finds the attached session of a worker.
type Sessions interface {
	Get(name string) *registry.Session
}

// Observer is told about build progress after the store has it. Methods
// are called from the build's goroutine and must not block for long.
type Observer interface {
	BuildStarted(b store.Build)
	StepChanged(buildID int64, s store.Step)
	// CommandStarted: the worker accepted a step's remote command.
	CommandStarted(buildID int64, s store.Step, command string)
	BuildFinished(b store.Build)
}

// Runner runs builds. It implements dispatch.Starter. Its methods are safe
// for concurrent use.
type Runner struct {
	Store    *store.Store
	Sessions Sessions
	// Config returns the configuration a new build starts with; a running
	// build keeps the one it started with.
	Config func() *config.Config
	// Basedir is the master's base directory: relative upload and download
	// paths on the master side are resolved against it.
	Basedir  string
	Logger   *slog.Logger
	Observer Observer         // may be nil
	Now      func() time.Time // the clock; nil means time.Now
	// Locks grants step locks; nil means steps' locks are not taken.
	Locks StepLocker
	// Queue is told of requests collapsed into a build; may be nil.
	Queue Queue
	// Triggerer runs trigger steps; nil makes them end EXCEPTION.
	Triggerer Triggerer

	mu       sync.Mutex
	running  map[int64]*run // by build id
	stopping string         // set by Shutdown: new builds are refused
	// stopReqs are stops asked for requests whose build is not running yet
	// (claimed, still being set up), by request id: the build is stopped
	// as soon as it is registered.
	stopReqs map[int64]string
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// storeRetryDelay is how long a build whose request could not be claimed
// waits before handing it back to the queue.
const storeRetryDelay = time.Second

// ErrNotRunning is returned by Stop for a build that is not running here.
var ErrNotRunning = errors.New("build is not running")

// Stop interrupts a running build: its current command is interrupted and
// the build ends CANCELLED. Only always_run steps still run.
func (r *Runner) Stop(buildID int64, reason string) error {
	r.mu.Lock()
	b := r.running[buildID]
	r.mu.Unlock()
	if b == nil {
		return fmt.Errorf("build %d: %w", buildID, ErrNotRunning)
	}
	b.stop(reason, result.Cancelled)
	return nil
}

// StopRequest stops the build of request reqID, as Stop does, with result
// CANCELLED. If that build is still being set up (the request is claimed
// but no build runs yet), it is stopped as soon as it starts. Call it only
// for a claimed request: a request that is never built keeps its entry.
func (r *Runner) StopRequest(reqID int64, reason string) {
	r.mu.Lock()
	var b *run
	for _, x := range r.running {
		if x.req.ID == reqID {
			b = x
			break
		}
	}
	if b == nil {
		if r.stopReqs == nil {
			r.stopReqs = map[int64]string{}
		}
		r.stopReqs[reqID] = reason
	}
	r.mu.Unlock()
	if b != nil {
		b.stop(reason, result.Cancelled)
	}
}

// Running returns the ids of the running builds.
func (r *Runner) Running() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int64, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Shutdown interrupts every running build so that it ends RETRY with its
// request back at the head of the queue, refuses new builds, and waits
// until the running ones have ended or ctx ends.
func (r *Runner) Shutdown(ctx context.Context, reason string) error {
	r.mu.Lock()
	r.stopping = reason
	runs := make([]*run, 0, len(r.running))
	for _, b := range r.running {
		runs = append(runs, b)
	}
	r.mu.Unlock()
	for _, b := range runs {
		b.stop(reason, result.Retry)
	}
	for _, b := range runs {
		select {
		case <-b.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d running builds: %w", len(runs), ctx.Err())
		}
	}
	return nil
}

// RunBuild runs req on the named worker; see dispatch.Starter.
func (r *Runner) RunBuild(req store.BuildRequest, worker string) (requeue bool) {
	ctx := context.Background()
	cfg := r.Config()
	bcfg := cfg.Builder(req.BuilderName)
	sess := r.Sessions.Get(worker)
	r.mu.Lock()
	stopping := r.stopping
	r.mu.Unlock()
	if bcfg == nil || sess == nil || stopping != "" {
		// Nothing was claimed or recorded; the request simply waits.
		return true
	}
	if err := r.Store.ClaimRequest(ctx, req.ID, r.now()); err != nil {
		if errors.Is(err, store.ErrAlreadyClaimed) {
			return false
		}
		r.log().Error("claim build request; retrying in a moment", "request", req.ID, "err", err)
		// The store failed (disk full, I/O error). Handing the request back
		// at once would have the dispatcher offer it again at once.
		t := time.NewTimer(storeRetryDelay)
		<-t.C
		return true
	}
	b := &run{
		runner: r,
		req:    req,
		cfg:    cfg,
		bcfg:   bcfg,
		sess:   sess,
		log:    r.log().With("builder", req.BuilderName, "request", req.ID, "worker", worker),
		done:   make(chan struct{}),
		redact: &redactor{},
	}
	defer close(b.done)
	res, err := b.setup(ctx)
	if err == nil {
		r.mu.Lock()
		r.running[b.build.ID] = b
		stopping := r.stopping
		cancelled, wasCancelled := r.stopReqs[req.ID]
		delete(r.stopReqs, req.ID)
		r.mu.Unlock()
		switch {
		case stopping != "":
			// Shutdown began after the check above and did not see this
			// build; it must not run to its end.
			b.stop(stopping, result.Retry)
		case wasCancelled:
			b.stop(cancelled, result.Cancelled)
		}
		b.collapse(ctx)
		res = b.execute(registry.WithBuild(ctx, b.build.ID)) // a donated worker tells its builds apart
		r.mu.Lock()
		delete(r.running, b.build.ID)
		r.mu.Unlock()
	} else {
		b.log.Error("build setup failed", "err", err)
	}
	return b.finish(ctx, res)
}

func (r *Runner) init() {
	r.mu.Lock()
	if r.running == nil {
		r.running = make(map[int64]*run)
	}
	r.mu.Unlock()
}

// New returns a Runner; see the fields for what they mean.
func New(st *store.Store, sessions Sessions, cfg func() *config.Config, basedir string, log *slog.Logger) *Runner {
	r := &Runner{Store: st, Sessions: sessions, Config: cfg, Basedir: basedir, Logger: log}
	r.init()
	return r
}
