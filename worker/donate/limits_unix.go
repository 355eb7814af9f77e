//go:build unix && !linux

package donate

import (
	"fmt"
	"syscall"
)

// throttleNice is a throttled build's priority: the lowest.
const throttleNice = 19

// Limiter applies Limits to the worker and throttles builds. Here only the
// nice value works: this platform has no per-process CPU sets, I/O classes
// or cgroups the worker could use.
type Limiter struct{ l Limits }

// NewLimiter applies l's nice value to the worker, which its commands
// inherit; notes say which limits this platform cannot apply.
func NewLimiter(l Limits) (*Limiter, []string) {
	var notes []string
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, l.Nice); err != nil {
		notes = append(notes, fmt.Sprintf("cannot set nice %d: %v", l.Nice, err))
	}
	if l.Cores > 0 {
		notes = append(notes, "cores: not supported on this platform; builds may use every CPU")
	}
	if l.IOClass != "" && l.IOClass != DefaultIOClass {
		notes = append(notes, "ionice: not supported on this platform")
	}
	if l.MemoryMax > 0 {
		notes = append(notes, "memory cap: needs Linux cgroup v2; not applied")
	}
	return &Limiter{l: l}, notes
}

// Summary says what the limits are, for the start-up message.
func (lim *Limiter) Summary() string { return fmt.Sprintf("nice %d", lim.l.Nice) }

// ProcAttr returns nil: nothing to set when commands start.
func (lim *Limiter) ProcAttr() func(*syscall.SysProcAttr) { return nil }

// Throttle gives group pgid the lowest priority.
func (lim *Limiter) Throttle(pgid int) error {
	return syscall.Setpriority(syscall.PRIO_PGRP, pgid, throttleNice)
}

// Unthrottle does nothing: only a privileged worker could raise the
// priority again.
func (lim *Limiter) Unthrottle(int) error { return nil }

// CanThrottle reports whether Throttle works here.
func (lim *Limiter) CanThrottle() bool { return true }

// Close does nothing.
func (lim *Limiter) Close() {}
