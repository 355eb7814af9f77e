//go:build windows

package donate

import (
	"fmt"
	"syscall"
)

var (
	procSetPriorityClass       = kernel32.NewProc("SetPriorityClass")
	procSetProcessAffinityMask = kernel32.NewProc("SetProcessAffinityMask")
	procGetProcessAffinityMask = kernel32.NewProc("GetProcessAffinityMask")
)

const (
	belowNormalPriorityClass = 0x4000
	idlePriorityClass        = 0x40
)

// Limiter applies Limits to the worker. Windows children inherit a below
// normal or idle priority class and the process's CPUs, so setting them
// on the worker limits every command. Throttling a single build is not
// supported: its job object's processes are not the worker's to reach.
type Limiter struct {
	l     Limits
	class string
	cpus  []int
}

// NewLimiter applies l to the worker process; notes say what could not be
// applied.
func NewLimiter(l Limits) (*Limiter, []string) {
	lim := &Limiter{l: l}
	var notes []string
	h, _ := syscall.GetCurrentProcess()
	class := uintptr(0)
	switch {
	case l.Nice >= 15:
		class, lim.class = idlePriorityClass, "idle"
	case l.Nice > 0:
		class, lim.class = belowNormalPriorityClass, "below normal"
	}
	if class != 0 {
		if r, _, err := procSetPriorityClass.Call(uintptr(h), class); r == 0 {
			notes = append(notes, fmt.Sprintf("cannot lower the priority class: %v", err))
		}
	}
	if l.Cores > 0 {
		var proc, sys uintptr
		if r, _, err := procGetProcessAffinityMask.Call(uintptr(h), uintptrPtr(&proc), uintptrPtr(&sys)); r == 0 {
			notes = append(notes, fmt.Sprintf("cannot read the worker's CPUs: %v", err))
		} else {
			var allowed []int
			for i := range 64 {
				if proc&(1<<i) != 0 {
					allowed = append(allowed, i)
				}
			}
			lim.cpus = pickCPUs(allowed, l.Cores)
			var mask uintptr
			for _, c := range lim.cpus {
				mask |= 1 << c
			}
			if r, _, err := procSetProcessAffinityMask.Call(uintptr(h), mask); r == 0 {
				notes = append(notes, fmt.Sprintf("cannot limit the worker's CPUs: %v", err))
				lim.cpus = nil
			}
		}
	}
	if l.IOClass != "" && l.IOClass != DefaultIOClass {
		notes = append(notes, "ionice: not supported on Windows")
	}
	if l.MemoryMax > 0 {
		notes = append(notes, "memory cap: needs Linux cgroup v2; not applied")
	}
	return lim, notes
}

// Summary says what the limits are, for the start-up message.
func (lim *Limiter) Summary() string {
	s := "priority class " + lim.class
	if lim.class == "" {
		s = "normal priority"
	}
	if lim.cpus != nil {
		s += ", CPUs " + formatCPUs(lim.cpus)
	}
	return s
}

// ProcAttr returns nil: nothing to set when commands start.
func (lim *Limiter) ProcAttr() func(*syscall.SysProcAttr) { return nil }

// Throttle is not supported on Windows.
func (lim *Limiter) Throttle(int) error { return ErrUnsupported }

// Unthrottle is not supported on Windows.
func (lim *Limiter) Unthrottle(int) error { return ErrUnsupported }

// CanThrottle reports whether Throttle works here: not on Windows.
func (lim *Limiter) CanThrottle() bool { return false }

// Close does nothing.
func (lim *Limiter) Close() {}
