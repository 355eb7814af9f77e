package scheduler

import (
	"context"
	"testing"
)

// A change stored after SetConfig and before Run applied it is built by a
// new scheduler: SetConfig's contract, and what a git poller that polls at
// launch (or a webhook at a reconfig) relies on, since Run applies the
// configuration concurrently with them.
func TestNewSchedulerSeesChangesStoredAfterSetConfig(t *testing.T) {
	e := newEnv(t, `triggerable("t", ["b"])`)
	e.stop()
	e.cfg = e.load(`single_branch_scheduler("main", ["b"], branch = "main")`)
	m := New(Options{Store: e.st, Queue: e.q, Clock: e.clk})
	m.SetConfig(e.cfg)
	c := e.store(onMain("r1")) // before Run applies the configuration
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e.mu.Lock()
	e.m, e.cancel, e.done = m, cancel, done
	e.mu.Unlock()
	wantChanges(t, e.next(), ids(c...))
	e.none()
}
