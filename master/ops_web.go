package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/scheduler"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// This file holds the control operations the web UI's JSON-RPC actions
// add to those of ops.go: a request's priority, a worker's graceful stop
// and kill, and a scheduler's enabled flag. Errors carry an HTTP status
// as in ops.go.

// shutdownWait bounds how long a worker may take to answer shutdown and
// close its connection before the master closes it.
const shutdownWait = 10 * time.Second

// webOps is the state of the operations of this file.
type webOps struct {
	mu       sync.Mutex
	stopping map[string]*stopping // workers that stop when idle
	// held are the workers stopped or killed: the dispatcher keeps them
	// paused until they attach again, so that the builds their loss
	// requeues do not go back to them meanwhile.
	held map[string]bool
}

// stopping is a worker's graceful stop under way.
type stopping struct {
	why      string
	canceled chan struct{} // closed by cancelStop
}

// SetRequestPriority sets the priority of pending build request id and
// moves it to its new place in the queue (higher goes first). A request
// a build has claimed, or one that is complete, is refused (409).
func (m *Master) SetRequestPriority(ctx context.Context, id int64, priority int) error {
	err := m.store.SetRequestPriority(ctx, id, priority)
	switch {
	case err == nil:
		m.disp.SetPriority(id, priority)
		m.log.Info("build request priority set", "request", id, "priority", priority)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return notFoundf("build request %d not found", id)
	case errors.Is(err, store.ErrAlreadyClaimed):
		return conflictf("build request %d has started; its priority no longer matters", id)
	case errors.Is(err, store.ErrAlreadyFinished):
		return conflictf("build request %d is already complete", id)
	}
	return fmt.Errorf("set priority of build request %d: %w", id, err)
}

// StopWorker stops worker name gracefully (Buildbot's "stop" of a
// worker): it gets no new builds, and once the builds it runs have ended
// the master asks it to shut down, which ends the worker process (a
// service manager may start it again: it then takes builds as before).
// reason is shown as its pause reason meanwhile. A worker that is not
// connected is refused (409); asking again while it drains changes
// nothing. Unpausing the worker cancels the stop.
func (m *Master) StopWorker(ctx context.Context, name, reason string) error {
	s, err := m.connectedWorker(name)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "stop requested"
	}
	m.webOps.mu.Lock()
	if _, draining := m.webOps.stopping[name]; draining {
		m.webOps.mu.Unlock()
		return nil
	}
	if m.webOps.stopping == nil {
		m.webOps.stopping = map[string]*stopping{}
	}
	st := &stopping{why: reason, canceled: make(chan struct{})}
	m.webOps.stopping[name] = st
	m.hold(name)
	m.webOps.mu.Unlock()
	m.disp.Pause(name, "stopping when idle: "+reason)
	m.log.Info("worker stopping when idle", "worker", name, "reason", reason)
	go m.drainWorker(s, st)
	return nil
}

// cancelStop ends worker name's graceful stop, if one is under way,
// before the worker is shut down; UnpauseWorker calls it.
func (m *Master) cancelStop(name string) {
	m.webOps.mu.Lock()
	defer m.webOps.mu.Unlock()
	if st := m.webOps.stopping[name]; st != nil {
		close(st.canceled)
		delete(m.webOps.stopping, name)
		delete(m.webOps.held, name)
		m.log.Info("worker stop cancelled", "worker", name)
	}
}

// drainWorker waits until worker s runs no build, then shuts it down,
// unless st is cancelled first.
func (m *Master) drainWorker(s *registry.Session, st *stopping) {
	events, unsubscribe := m.hub.Subscribe()
	defer unsubscribe()
	defer m.stopped(s.Name, st)
	// The pause is in force once the dispatcher answers: no build starts
	// after this.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	_, _ = m.disp.Snapshot(ctx)
	cancel()
	for len(m.runningBuilds()[s.Name]) > 0 {
		select {
		case <-events:
		case <-s.Done():
			m.log.Info("worker left while stopping", "worker", s.Name)
			return
		case <-st.canceled:
			return
		}
	}
	select {
	case <-st.canceled:
		return
	default:
	}
	m.shutdownWorker(s, "stopped when idle: "+st.why)
}

// stopped ends worker name's graceful stop st; its pause lasts until it
// attaches again (see webOps.held).
func (m *Master) stopped(name string, st *stopping) {
	m.webOps.mu.Lock()
	if m.webOps.stopping[name] == st {
		delete(m.webOps.stopping, name)
	}
	m.webOps.mu.Unlock()
	m.log.Info("worker stop ended", "worker", name)
}

// hold records that worker name is paused in the dispatcher until it
// attaches again. m.webOps.mu must be held.
func (m *Master) hold(name string) {
	if m.webOps.held == nil {
		m.webOps.held = map[string]bool{}
	}
	m.webOps.held[name] = true
}

// releaseHold is called when worker name attaches: a pause left by a
// stop or kill gives way to the stored one, if any.
func (m *Master) releaseHold(name string) {
	m.webOps.mu.Lock()
	held := m.webOps.held[name]
	delete(m.webOps.held, name)
	delete(m.webOps.stopping, name)
	m.webOps.mu.Unlock()
	if !held {
		return
	}
	if w, err := m.store.GetWorkerByName(context.Background(), name); err == nil && w.Paused {
		m.disp.Pause(name, w.PauseReason)
	} else {
		m.disp.Unpause(name)
	}
}

// KillWorker disconnects worker name now (Buildbot's "kill"): it is asked
// to shut down, so that it does not reconnect, and its connection is
// closed at once, so that its builds end RETRY and run again elsewhere.
func (m *Master) KillWorker(ctx context.Context, name, reason string) error {
	s, err := m.connectedWorker(name)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "killed"
	}
	m.log.Info("worker killed", "worker", name, "reason", reason, "builds_interrupted", len(m.runningBuilds()[name]))
	m.webOps.mu.Lock()
	m.hold(name)
	m.webOps.mu.Unlock()
	m.disp.Pause(name, "killed: "+reason)
	s.Kill(errors.New("killed: " + reason))
	return nil
}

// shutdownWorker asks s to shut down and waits for its connection to
// close, closing it after shutdownWait.
func (m *Master) shutdownWorker(s *registry.Session, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		m.log.Warn("worker did not answer shutdown; disconnecting it", "worker", s.Name, "err", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
	}
	s.Disconnect(errors.New(why))
	m.log.Info("worker shut down", "worker", s.Name, "why", why)
}

// connectedWorker returns the session of configured worker name, or a
// 404 or 409 error.
func (m *Master) connectedWorker(name string) (*registry.Session, error) {
	if m.Config().Worker(name) == nil {
		return nil, notFoundf("no worker named %q in the configuration", name)
	}
	s := m.reg.Get(name)
	if s == nil {
		return nil, conflictf("worker %s is not connected", name)
	}
	return s, nil
}

// EnableScheduler enables or disables scheduler name (see
// scheduler.Manager.SetEnabled); why says who disabled it and why.
// Unknown schedulers are 404.
func (m *Master) EnableScheduler(ctx context.Context, name string, enabled bool, why string) error {
	err := m.sched.SetEnabled(ctx, name, enabled, why)
	if errors.Is(err, scheduler.ErrNoScheduler) {
		return notFoundf("no scheduler named %q in the configuration", name)
	}
	return err
}

// schedulerDisabled is a 409 error if scheduler name is disabled.
func (m *Master) schedulerDisabled(kind, name string) error {
	if m.sched.Enabled(name) {
		return nil
	}
	return conflictf("%s %q is disabled", kind, name)
}

// addStopping shows the workers that stop when idle as paused, with why.
func (m *Master) addStopping(states map[string]webui.WorkerState) {
	m.webOps.mu.Lock()
	defer m.webOps.mu.Unlock()
	for name, stop := range m.webOps.stopping {
		st := states[name]
		st.Paused, st.PauseReason = true, "stopping when idle: "+stop.why
		states[name] = st
	}
}
