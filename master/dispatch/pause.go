package dispatch

import (
	"fmt"
	"strings"
)

type pauseEvent struct {
	worker string
	paused bool
	reason string
}

// Pause stops giving the named worker new builds; the builds it runs go
// on. reason is shown as the waiting reason of requests that only it
// could run. A pause lasts until Unpause, whether the worker stays
// attached or not; the dispatcher does not persist it (the master keeps
// it in the store and tells the dispatcher again at start).
func (d *Dispatcher) Pause(worker, reason string) {
	d.send(event{pause: &pauseEvent{worker: worker, paused: true, reason: reason}})
	if h := d.hooks.Paused; h != nil {
		h(worker, true, reason)
	}
}

// Unpause lets the named worker take new builds again.
func (d *Dispatcher) Unpause(worker string) {
	d.send(event{pause: &pauseEvent{worker: worker}})
	if h := d.hooks.Paused; h != nil {
		h(worker, false, "")
	}
}

// unpaused splits workers into those not paused and a description of
// the paused ones ("" if none), for waiting reasons.
func (d *Dispatcher) unpaused(workers []string) (kept []string, paused string) {
	var notes []string
	for _, name := range workers {
		w := d.workers[name]
		if w == nil || !w.paused {
			kept = append(kept, name)
			continue
		}
		if w.pauseReason == "" {
			notes = append(notes, fmt.Sprintf("worker %s paused", name))
		} else {
			notes = append(notes, fmt.Sprintf("worker %s paused: %s", name, w.pauseReason))
		}
	}
	return kept, strings.Join(notes, "; ")
}
