package dispatch

import "github.com/starforge/starforge/master/store"

// Hooks tell the rest of the master what the dispatcher was asked to do,
// for live views. Each is called in the caller's goroutine once the
// dispatcher has the request (so a Snapshot taken after the hook returns
// accounts for it); it must not block or call the dispatcher. Any may be
// nil.
type Hooks struct {
	// Added: requests were queued (new ones, the pending ones found at
	// start-up, requests handed back).
	Added func(reqs []store.BuildRequest)
	// Removed: requests left the queue (cancelled or collapsed).
	Removed func(ids []int64)
	// Paused: a worker was paused (paused true, with the reason) or
	// unpaused.
	Paused func(worker string, paused bool, reason string)
}

// SetHooks sets the hooks. Call it before the dispatcher is used; it is
// not safe to call concurrently with its other methods.
func (d *Dispatcher) SetHooks(h Hooks) { d.hooks = h }
