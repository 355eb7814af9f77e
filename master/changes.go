package master

import (
	"context"
	"errors"
	"time"

	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/poller"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/scheduler"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// AddChanges stores changes, with the state of the change source that
// produced them in the same transaction, and hands them to the
// schedulers. It implements the poller's and the webhooks' sink and the
// web API's POST /api/v2/changes.
func (m *Master) AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error) {
	stored, err := m.store.AddChanges(ctx, cs, state...)
	if err != nil {
		return nil, err
	}
	for _, c := range stored {
		m.log.Info("change", "change", c.ID, "repository", c.Repository, "branch", c.Branch, "revision", c.Revision, "author", c.Author)
	}
	m.publishChanges(stored)
	if len(stored) > 0 {
		m.sched.ChangesAdded(stored)
	}
	return stored, nil
}

// triggerer runs trigger steps through the scheduler manager.
type triggerer struct{ m *Master }

func (t triggerer) Trigger(ctx context.Context, r build.TriggerRequest) (store.Buildset, []store.BuildRequest, error) {
	return t.m.sched.Trigger(ctx, scheduler.TriggerRequest(r))
}

func (t triggerer) WaitBuildset(ctx context.Context, id int64) (result.Result, error) {
	return t.m.sched.WaitBuildset(ctx, id)
}

// CancelBuildset cancels the buildset's pending requests and stops the
// builds running for the others.
func (t triggerer) CancelBuildset(ctx context.Context, id int64, reason string) error {
	m := t.m
	reqs, err := m.store.BuildsetRequests(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range reqs {
		if r.Complete {
			continue
		}
		if !r.Claimed {
			_, err := m.store.CancelRequest(ctx, r.ID, reason, time.Now())
			if err == nil {
				m.disp.Remove(r.ID)
				continue
			}
			if !errors.Is(err, store.ErrAlreadyClaimed) {
				errs = append(errs, err)
				continue
			}
		}
		// Claimed: its build runs, or is being set up and is stopped as
		// soon as it starts.
		m.run.StopRequest(r.ID, reason)
	}
	return errors.Join(errs...)
}

// pollers adapts the poller manager for the webhooks' /change_hook/poller.
type pollers struct{ m *poller.Manager }

// unknownPoller marks a PollNow error for a name no poller has, as the
// webhook package asks (it answers 404).
type unknownPoller struct{ error }

func (unknownPoller) UnknownPoller() bool { return true }
func (e unknownPoller) Unwrap() error     { return e.error }

func (p pollers) PollNow(ctx context.Context, name string) error {
	err := p.m.PollNow(ctx, name)
	if errors.Is(err, poller.ErrUnknownPoller) {
		return unknownPoller{err}
	}
	return err
}

// Pollers implements webui.Master.
func (m *Master) Pollers() []webui.PollerState {
	st := m.pollers.Status()
	out := make([]webui.PollerState, len(st))
	for i, s := range st {
		out[i] = webui.PollerState(s)
	}
	return out
}

// Schedulers implements webui.Master.
func (m *Master) Schedulers() []webui.SchedulerState {
	st := m.sched.Status()
	out := make([]webui.SchedulerState, len(st))
	for i, s := range st {
		out[i] = webui.SchedulerState(s)
	}
	return out
}
