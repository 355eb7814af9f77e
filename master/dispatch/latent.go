package dispatch

import (
	"fmt"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// Latent workers: a Worker with Latent set is a slot of a latent worker,
// which runs one instance at a time (master/latent). A slot whose instance
// is attached is a worker like any other. A request that no attached
// worker can take starts an instance in a free slot of its builder (the
// request then waits, "preparing worker"), and runs when the instance
// attaches, or on whatever worker frees up first. The request is never
// claimed while it waits, so a failed start leaves it in the queue.

// Latent starts instances of latent workers for the dispatcher. Its
// methods are called on the dispatcher's goroutine: they must not block
// or call the dispatcher.
type Latent interface {
	// Startable reports whether an instance may start in slot now, and if
	// not, why (shown as a waiting reason).
	Startable(slot string) (ok bool, why string)
	// Start starts an instance in slot for req, in the background. The
	// slot is taken until LatentStopped is called for it; its instance
	// attaches under the slot's name (Attached).
	Start(slot string, req store.BuildRequest)
}

// MaxRequestStarts is how many failed instance starts for one request
// make it leave a latent worker to its builder's other workers.
const MaxRequestStarts = 3

// SetLatent sets what starts latent workers' instances. Call it before the
// dispatcher is used; without it latent slots only run what attaches.
func (d *Dispatcher) SetLatent(l Latent) { d.lat.starter = l }

// LatentStopping tells the dispatcher that slot's instance is being
// stopped: it gives the slot no build.
func (d *Dispatcher) LatentStopping(slot string) {
	d.send(event{latent: &latentEvent{slot: slot, stopping: true}})
}

// LatentStopped tells the dispatcher that slot has no instance any more,
// so that it may start another. err, if not nil, is why the instance
// failed before it attached: it counts against the request it was started
// for.
func (d *Dispatcher) LatentStopped(slot string, err error) {
	d.send(event{latent: &latentEvent{slot: slot, stopped: true, err: err}})
}

// Kick makes the dispatcher look at the queue again (a latent worker's
// quarantine ended, or it was enabled).
func (d *Dispatcher) Kick() { d.send(event{latent: &latentEvent{}}) }

type latentEvent struct {
	slot     string
	stopping bool
	stopped  bool
	err      error
}

// latentState is the dispatcher's view of latent slots; owned by the Run
// goroutine.
type latentState struct {
	starter  Latent
	group    map[string]string // slot → its latent worker
	up       map[string]bool   // slots with an instance, from Start to LatentStopped
	stopping map[string]bool   // slots whose instance is being stopped
	reserved map[string]int64  // starting slot → the request waiting for it
	resvOf   map[int64]string  // the reverse
	fails    map[int64]map[string]int
	lastErr  map[int64]string // request → its last failed start
}

func (d *Dispatcher) applyLatent(ev *latentEvent) {
	l := &d.lat
	l.init()
	switch {
	case ev.stopping:
		// A request waiting for the slot keeps waiting: if the instance
		// failed, LatentStopped counts it against the request.
		l.stopping[ev.slot], l.up[ev.slot] = true, true
		if w := d.workers[ev.slot]; w != nil {
			w.attached = false
		}
	case ev.stopped:
		if id, ok := l.reserved[ev.slot]; ok && ev.err != nil {
			g := l.group[ev.slot]
			if l.fails[id] == nil {
				l.fails[id] = map[string]int{}
			}
			l.fails[id][g]++
			l.lastErr[id] = ev.err.Error()
		}
		l.unreserve(ev.slot)
		delete(l.up, ev.slot)
		delete(l.stopping, ev.slot)
	}
}

func (l *latentState) init() {
	if l.up == nil {
		l.group = map[string]string{}
		l.up = map[string]bool{}
		l.stopping = map[string]bool{}
		l.reserved = map[string]int64{}
		l.resvOf = map[int64]string{}
		l.fails = map[int64]map[string]int{}
		l.lastErr = map[int64]string{}
	}
}

func (l *latentState) unreserve(slot string) {
	if id, ok := l.reserved[slot]; ok {
		delete(l.reserved, slot)
		delete(l.resvOf, id)
	}
}

// configLatent records which workers are latent slots.
func (d *Dispatcher) configLatent(c *Config) {
	l := &d.lat
	l.init()
	l.group = map[string]string{}
	for _, w := range c.Workers {
		if w.Latent != "" {
			l.group[w.Name] = w.Latent
		}
	}
}

// forgetLatent drops what the dispatcher knows of request id: it started,
// or left the queue. The slot it waited for stays up for any request.
func (d *Dispatcher) forgetLatent(id int64) {
	l := &d.lat
	if slot, ok := l.resvOf[id]; ok {
		delete(l.reserved, slot)
		delete(l.resvOf, id)
	}
	delete(l.fails, id)
	delete(l.lastErr, id)
}

// startLatent finds r, which no attached worker can take now, an instance
// of a latent worker of b: one already starting for it, a starting one no
// request waits for any more, or a new one. It returns the request's
// waiting reason and whether r now waits for an instance; reason is empty
// if there is nothing to say beyond d.reason.
func (d *Dispatcher) startLatent(r store.BuildRequest, b Builder) (reason string, waits bool) {
	l := &d.lat
	if l.starter == nil || len(l.group) == 0 {
		return "", false
	}
	if slot, ok := l.resvOf[r.ID]; ok {
		return d.preparing(r, slot), true
	}
	var notes []string
	note := func(s string) {
		for _, n := range notes {
			if n == s {
				return
			}
		}
		notes = append(notes, s)
	}
	for _, slot := range b.Workers {
		g := l.group[slot]
		if g == "" {
			continue
		}
		if n := l.fails[r.ID][g]; n >= MaxRequestStarts && d.hasOthers(b, g) {
			note(fmt.Sprintf("instances of %s failed to start %d times for this request (last: %s); waiting for another worker", g, n, l.lastErr[r.ID]))
			continue
		}
		w := d.workers[slot]
		if w != nil && (w.attached || w.paused) {
			continue
		}
		if l.up[slot] {
			if _, taken := l.reserved[slot]; !taken && !l.stopping[slot] {
				// Started for a request that went elsewhere: this one takes it.
				l.reserved[slot], l.resvOf[r.ID] = r.ID, slot
				return d.preparing(r, slot), true
			}
			continue
		}
		if lk := d.blockingLock(b, slot); lk != "" {
			note(fmt.Sprintf("waiting for lock %s", lk))
			continue
		}
		if b.CanStart != nil {
			ok, err := b.CanStart(Candidate{Name: slot}, r)
			if err != nil {
				d.funcFailed("can_start", b.Name, err, r)
			} else if !ok {
				continue
			}
		}
		if ok, why := l.starter.Startable(slot); !ok {
			note(why)
			continue
		}
		l.up[slot] = true
		l.reserved[slot], l.resvOf[r.ID] = r.ID, slot
		l.starter.Start(slot, r)
		return d.preparing(r, slot), true
	}
	if len(notes) == 0 {
		for _, slot := range b.Workers {
			if g := l.group[slot]; g != "" && l.up[slot] && !d.attached(slot) {
				note(fmt.Sprintf("worker %s: every instance that may run is starting, stopping or busy", g))
				break
			}
		}
	}
	return strings.Join(notes, "; "), false
}

func (d *Dispatcher) attached(name string) bool {
	w := d.workers[name]
	return w != nil && w.attached
}

// preparing is the waiting reason of r while slot's instance starts for it.
func (d *Dispatcher) preparing(r store.BuildRequest, slot string) string {
	why := "preparing worker " + slot
	if n := d.lat.fails[r.ID][d.lat.group[slot]]; n > 0 {
		why += fmt.Sprintf(" (%d failed starts before; last: %s)", n, d.lat.lastErr[r.ID])
	}
	return why
}

// hasOthers reports whether b may run on a worker outside latent worker g.
func (d *Dispatcher) hasOthers(b Builder, g string) bool {
	for _, w := range b.Workers {
		if d.lat.group[w] != g {
			return true
		}
	}
	return false
}

// latentOnly reports whether every worker of b is a latent slot.
func (d *Dispatcher) latentOnly(b Builder) bool {
	for _, w := range b.Workers {
		if d.lat.group[w] == "" {
			return false
		}
	}
	return true
}

// waitReason says why r waits: for an instance starting for it, or as
// reason says, with what latentWhy adds about the builder's latent workers.
func (d *Dispatcher) waitReason(r store.BuildRequest, latentWhy string) string {
	if slot, ok := d.lat.resvOf[r.ID]; ok {
		return d.preparing(r, slot)
	}
	if _, failed := d.funcErrs[r.ID]; failed || latentWhy == "" {
		return d.reason(r)
	}
	if b, ok := d.builders[r.BuilderName]; ok && d.latentOnly(b) {
		return latentWhy
	}
	return d.reason(r) + "; " + latentWhy
}
