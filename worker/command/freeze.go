package command

import (
	"errors"
	"sync"
	"time"
)

// Freezer is implemented by commands whose processes the worker can stop
// and resume, for a donated desktop whose owner came back: the shell
// command. Their timeouts do not count the time they spent frozen (the
// time without output starts again at the thaw). Both methods are safe to
// call concurrently with Run and with each other, before the process
// started (it then starts frozen) and after it ended (they do nothing).
type Freezer interface {
	// Freeze stops every process of the command. It returns
	// ErrUnsupported (errors.ErrUnsupported) where processes cannot be
	// stopped.
	Freeze() error
	// Thaw resumes the processes.
	Thaw() error
}

var errUnsupported = errors.ErrUnsupported

// freezer is a command's frozen state.
type freezer struct {
	mu     sync.Mutex
	g      *procGroup // the running group; nil before the start and after the end
	frozen bool
	dying  bool // the command is being killed: stay thawed
	since  time.Time
	total  time.Duration // frozen time before since
	onThaw func()        // called (with mu held) when the command thaws
	thawCh chan struct{} // closed at the thaw; made by wait
}

// Freeze implements Freezer.
func (f *freezer) Freeze() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen || f.dying {
		return nil
	}
	if f.g != nil {
		if err := f.g.stop(); err != nil {
			return err
		}
	} else if !canStop {
		return errUnsupported
	}
	f.frozen, f.since = true, time.Now()
	return nil
}

// Thaw implements Freezer.
func (f *freezer) Thaw() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.thawLocked()
}

func (f *freezer) thawLocked() error {
	if !f.frozen {
		return nil
	}
	f.frozen = false
	f.total += time.Since(f.since)
	if f.thawCh != nil {
		close(f.thawCh)
		f.thawCh = nil
	}
	if f.onThaw != nil {
		f.onThaw()
	}
	if f.g != nil {
		return f.g.cont()
	}
	return nil
}

// wait returns a channel closed once the command is not frozen: a command
// frozen before it started waits there, not running at all.
func (f *freezer) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen {
		return closedCh
	}
	if f.thawCh == nil {
		f.thawCh = make(chan struct{})
	}
	return f.thawCh
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// started records the running group, stopping it at once if the command
// was frozen between wait and its start.
func (f *freezer) started(g *procGroup, onThaw func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.g, f.onThaw = g, onThaw
	if f.frozen {
		_ = g.stop()
	}
}

// ended forgets the group.
func (f *freezer) ended() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.g = nil
}

// die thaws the command for good before it is signalled: a stopped
// process would not act on SIGTERM until continued.
func (f *freezer) die() {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.thawLocked()
	f.dying = true
}

// frozenTime reports whether the command is frozen now and for how long
// it has been frozen in all.
func (f *freezer) frozenTime() (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		return true, f.total + time.Since(f.since)
	}
	return false, f.total
}
