package master

import (
	"context"

	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/dispatch"
	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// This file publishes what happens in the master on its event bus (see
// package event), after the store has it: builds, steps and logs from the
// build runner, the queue from the dispatcher, workers as they come and
// go, and changes. The web UI's websocket and metrics consume it.

// Events returns the bus on which the master publishes what happens. The
// web UI finds it through this method.
func (m *Master) Events() *event.Bus { return m.bus }

// publishEvents makes the bus and puts the publisher in front of
// Options.Observer. Call it before watchBuilds, so the follower hub tells
// the publisher too.
func (m *Master) publishEvents() {
	m.bus = event.New()
	m.opts.Observer = eventObserver{bus: m.bus, next: m.opts.Observer}
}

// queueHooks are the dispatcher hooks that publish the queue's changes.
func (m *Master) queueHooks() dispatch.Hooks {
	return dispatch.Hooks{
		Added: func(reqs []store.BuildRequest) {
			for _, r := range reqs {
				m.bus.Publish(r, event.RequestKeys(r, "new")...)
			}
		},
		Removed: func(ids []int64) {
			for _, id := range ids {
				r, err := m.store.GetRequest(context.Background(), id)
				if err != nil {
					m.log.Warn("events: read a request that left the queue", "request", id, "err", err)
					continue
				}
				ev := "complete" // collapsed into another build
				if r.Results == result.Cancelled {
					ev = "canceled"
				}
				m.bus.Publish(r, event.RequestKeys(r, ev)...)
			}
		},
		Paused: func(name string, _ bool, _ string) { m.publishWorker(name, "state_updated") },
	}
}

// publishWorker publishes worker name as the store has it.
func (m *Master) publishWorker(name, ev string) {
	w, err := m.store.GetWorkerByName(context.Background(), name)
	if err != nil {
		m.log.Warn("events: read worker", "worker", name, "err", err)
		return
	}
	m.bus.Publish(w, event.WorkerKeys(w, ev)...)
}

// publishChanges publishes changes just stored.
func (m *Master) publishChanges(cs []store.Change) {
	for _, c := range cs {
		m.bus.Publish(c, event.ChangeKeys(c, "new")...)
	}
}

// eventObserver publishes build progress, then tells next.
type eventObserver struct {
	bus  *event.Bus
	next build.Observer // may be nil
}

// requestOf is the request of build b, as far as b knows it.
func requestOf(b store.Build) store.BuildRequest {
	return store.BuildRequest{ID: b.RequestID, BuildsetID: b.BuildsetID, BuilderID: b.BuilderID, BuilderName: b.BuilderName}
}

func (o eventObserver) BuildStarted(b store.Build) {
	if b.RequestID != 0 {
		r := requestOf(b)
		r.Claimed, r.ClaimedAt = true, b.StartedAt
		o.bus.Publish(r, event.RequestKeys(r, "claimed")...)
	}
	o.bus.Publish(b, event.BuildKeys(b, "new")...)
	if o.next != nil {
		o.next.BuildStarted(b)
	}
}

func (o eventObserver) StepChanged(id int64, s store.Step) {
	ev := "update" // waiting for a lock, before it starts
	switch {
	case !s.CompleteAt.IsZero():
		ev = "finished"
	case !s.StartedAt.IsZero():
		ev = "started"
	}
	o.bus.Publish(s, event.StepKeys(s, ev)...)
	if o.next != nil {
		o.next.StepChanged(id, s)
	}
}

func (o eventObserver) CommandStarted(id int64, s store.Step, cmd string) {
	if o.next != nil {
		o.next.CommandStarted(id, s, cmd)
	}
}

func (o eventObserver) BuildFinished(b store.Build) {
	o.bus.Publish(b, event.BuildKeys(b, "finished")...)
	if b.RequestID != 0 {
		r := requestOf(b)
		ev := "complete"
		if b.Results == result.Retry {
			ev = "unclaimed" // back in the queue
		} else {
			r.Complete, r.CompleteAt, r.Results = true, b.CompleteAt, b.Results
		}
		o.bus.Publish(r, event.RequestKeys(r, ev)...)
	}
	if o.next != nil {
		o.next.BuildFinished(b)
	}
}

// The runner's observer (control.go) is also its build.LogObserver: log
// events go to the bus only.

func (o observer) LogAdded(buildID int64, l store.Log) {
	o.m.bus.Publish(l, event.LogKeys(l, "new")...)
}

func (o observer) LogAppended(buildID int64, l store.Log, first, last int, lines []byte) {
	ll := event.NewLogLines(l, first, last, lines)
	o.m.bus.Publish(ll, event.LogKeys(ll.Log, "append")...)
}

func (o observer) LogFinished(buildID int64, l store.Log) {
	o.m.bus.Publish(l, event.LogKeys(l, "finished")...)
}
