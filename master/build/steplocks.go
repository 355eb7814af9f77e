package build

import (
	"context"
	"errors"
	"fmt"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
)

// StepLocker grants the locks a step takes (step(locks=[...])) while it
// runs. The master implements it with the dispatcher, which owns every
// lock's state.
type StepLocker interface {
	// AcquireStepLocks waits until locks are granted to a step of the build
	// of request requestID on worker and returns the function that releases
	// them. waiting, if not nil, is called with the name of a lock the step
	// waits for when they are not free at once. If ctx ends first the wait
	// is withdrawn and ctx's error returned.
	AcquireStepLocks(ctx context.Context, requestID int64, worker string, locks []config.LockAccess, waiting func(lock string)) (release func(), err error)
}

// stepLocks takes step i's locks, showing what it waits for in the step's
// and the build's state. ok is false when the step must not run: the
// build was stopped while it waited (the step is then marked skipped), or
// the locks could not be taken (the step is marked EXCEPTION and res says
// so).
func (b *run) stepLocks(ctx context.Context, i int, sc *config.Step) (release func(), res result.Result, ok bool) {
	r := b.runner
	if len(sc.Locks) == 0 || r.Locks == nil {
		return func() {}, result.None, true
	}
	// An always_run step that starts after a stop waits for its locks as
	// usual; an ordinary step's wait ends with the stop.
	wctx := ctx
	if reason, _ := b.stopped(); reason == "" {
		var cancel context.CancelFunc
		wctx, cancel = b.stopContext(ctx)
		defer cancel()
	}
	st := &b.steps[i]
	waiting := func(lock string) {
		state := "waiting for lock " + lock
		if err := r.Store.SetStepState(ctx, st.ID, state); err != nil {
			b.log.Warn("record step state", "step", sc.Name, "err", err)
		}
		st.StateString = state
		if o := r.Observer; o != nil {
			o.StepChanged(b.build.ID, *st)
		}
		_ = b.setState(ctx, fmt.Sprintf("step %s %s", sc.Name, state))
	}
	release, err := r.Locks.AcquireStepLocks(wctx, b.req.ID, b.sess.Name, sc.Locks, waiting)
	if err == nil {
		return release, result.None, true
	}
	if reason, _ := b.stopped(); reason != "" && errors.Is(err, context.Canceled) {
		b.finishStep(ctx, i, result.Skipped, "skipped: "+reason)
		return nil, result.Skipped, false
	}
	b.log.Error("take step locks", "step", sc.Name, "err", err)
	b.finishStep(ctx, i, result.Exception, "could not take locks: "+err.Error())
	return nil, result.Exception, false
}

// stopContext returns a context that ends when ctx does or the build is
// stopped.
func (b *run) stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	b.mu.Lock()
	if b.stopCh == nil {
		b.stopCh = make(chan struct{})
		if b.stopReason != "" {
			close(b.stopCh)
		}
	}
	stopCh := b.stopCh
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
