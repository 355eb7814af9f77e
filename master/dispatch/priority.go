package dispatch

type priorityEvent struct {
	id       int64
	priority int
}

// SetPriority moves pending request id to its place for a new priority
// (the store already holds it); a request that is not pending (started,
// cancelled, unknown) is left alone.
func (d *Dispatcher) SetPriority(id int64, priority int) {
	d.send(event{priority: &priorityEvent{id: id, priority: priority}})
}

// reprioritize applies a SetPriority on the Run goroutine.
func (d *Dispatcher) reprioritize(ev *priorityEvent) {
	for i, r := range d.pending {
		if r.ID != ev.id {
			continue
		}
		d.pending = append(d.pending[:i], d.pending[i+1:]...)
		r.Priority = ev.priority
		d.insert(r)
		return
	}
}
