//go:build linux

package donate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"
)

// throttleNice is a throttled build's priority: the lowest.
const throttleNice = 19

// Limiter applies Limits to the worker and throttles builds. It is safe
// for concurrent use.
type Limiter struct {
	l         Limits
	buildMask cpuMask // the CPUs builds may use
	throttle  cpuMask // the CPUs a throttled build keeps
	hasMask   bool
	cgroup    *buildCgroup
}

// NewLimiter applies l to the worker process (its nice value, I/O class
// and CPUs are inherited by every command it starts) and prepares the
// memory cap. notes say what could not be done; the worker goes on
// without it.
func NewLimiter(l Limits) (*Limiter, []string) {
	lim := &Limiter{l: l}
	var notes []string
	if mask, err := getAffinity(0); err != nil {
		notes = append(notes, fmt.Sprintf("cannot read the CPUs the worker may use: %v", err))
	} else {
		allowed := mask.cpus()
		lim.buildMask = maskOf(pickCPUs(allowed, l.Cores))
		lim.throttle = maskOf(pickCPUs(lim.buildMask.cpus(), l.ThrottleCores))
		lim.hasMask = true
	}
	var errs []error
	for _, tid := range tasks("/proc/self/task") {
		errs = append(errs, lim.applyTask(tid, l.Nice, ioprio(l.IOClass), lim.buildMask, l.Cores > 0)...)
	}
	if err := errors.Join(errs...); err != nil {
		notes = append(notes, fmt.Sprintf("cannot apply all limits to the worker: %v", err))
	}
	if l.MemoryMax > 0 {
		cg, err := newBuildCgroup(l.MemoryMax)
		if err != nil {
			notes = append(notes, fmt.Sprintf("no memory cap: %v", err))
		} else {
			lim.cgroup = cg
		}
	}
	return lim, notes
}

// Summary says what the limits are, for the start-up message.
func (lim *Limiter) Summary() string {
	s := fmt.Sprintf("nice %d", lim.l.Nice)
	if lim.l.IOClass != "" {
		s += ", I/O " + lim.l.IOClass
	}
	if lim.hasMask {
		s += ", CPUs " + formatCPUs(lim.buildMask.cpus()) + " (throttled: " + formatCPUs(lim.throttle.cpus()) + ")"
	}
	if lim.cgroup != nil {
		s += ", memory " + FormatSize(lim.l.MemoryMax) + " (cgroup " + lim.cgroup.dir + ")"
	}
	return s
}

// ProcAttr returns what commands must set when they start their process
// (the memory cap's cgroup), or nil.
func (lim *Limiter) ProcAttr() func(*syscall.SysProcAttr) {
	if lim.cgroup == nil {
		return nil
	}
	return lim.cgroup.procAttr
}

// Throttle moves every process of group pgid to ThrottleCores CPUs at the
// lowest CPU and I/O priority.
func (lim *Limiter) Throttle(pgid int) error {
	return lim.eachTask(pgid, func(tid int) []error {
		return lim.applyTask(tid, throttleNice, ioprio("idle"), lim.throttle, true)
	})
}

// Unthrottle gives group pgid its CPUs back. The priority stays low: only
// a privileged worker could raise it again.
func (lim *Limiter) Unthrottle(pgid int) error {
	return lim.eachTask(pgid, func(tid int) []error {
		if !lim.hasMask {
			return nil
		}
		if err := setAffinity(tid, lim.buildMask); err != nil && !errors.Is(err, syscall.ESRCH) {
			return []error{err}
		}
		return nil
	})
}

// CanThrottle reports whether Throttle works here.
func (lim *Limiter) CanThrottle() bool { return true }

// Close releases the memory cap's cgroup handle.
func (lim *Limiter) Close() {
	if lim.cgroup != nil {
		lim.cgroup.close()
	}
}

// applyTask sets one thread's nice value, I/O priority and CPUs. A thread
// that exited meanwhile is not an error.
func (lim *Limiter) applyTask(tid, nice, prio int, mask cpuMask, setMask bool) []error {
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
		keep(fmt.Errorf("nice %d: %w", nice, err))
	}
	if prio >= 0 {
		if _, _, e := syscall.RawSyscall(syscall.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(prio)); e != 0 {
			keep(fmt.Errorf("ionice: %w", e))
		}
	}
	if setMask && lim.hasMask {
		if err := setAffinity(tid, mask); err != nil {
			keep(fmt.Errorf("CPUs: %w", err))
		}
	}
	return errs
}

// eachTask calls f for every thread of every process in group pgid.
func (lim *Limiter) eachTask(pgid int, f func(tid int) []error) error {
	dir, err := os.Open("/proc")
	if err != nil {
		return err
	}
	names, _ := dir.Readdirnames(-1)
	dir.Close()
	var errs []error
	buf := make([]byte, 0, 512)
	for _, n := range names {
		if _, err := strconv.Atoi(n); err != nil {
			continue
		}
		_, _, pgrp, _, err := readProcStat(filepath.Join("/proc", n, "stat"), &buf)
		if err != nil || pgrp != pgid {
			continue
		}
		for _, tid := range tasks(filepath.Join("/proc", n, "task")) {
			errs = append(errs, f(tid)...)
		}
	}
	return errors.Join(errs...)
}

// tasks lists the thread ids in a /proc/PID/task directory.
func tasks(dir string) []int {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var out []int
	for _, n := range names {
		if id, err := strconv.Atoi(n); err == nil {
			out = append(out, id)
		}
	}
	return out
}

const (
	ioprioWhoProcess = 1
	ioprioClassBE    = 2
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// ioprio returns the ioprio_set value for class, or -1 for "unchanged".
func ioprio(class string) int {
	switch class {
	case "idle":
		return ioprioClassIdle << ioprioClassShift
	case "best-effort":
		return ioprioClassBE<<ioprioClassShift | 7
	}
	return -1
}

// cpuMask is a sched_setaffinity CPU set (up to 1024 CPUs).
type cpuMask [16]uint64

func getAffinity(tid int) (cpuMask, error) {
	var m cpuMask
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m))); e != 0 {
		return m, e
	}
	return m, nil
}

func setAffinity(tid int, m cpuMask) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m))); e != 0 {
		return e
	}
	return nil
}

func (m cpuMask) cpus() []int {
	var out []int
	for i := range len(m) * 64 {
		if m[i/64]&(1<<(i%64)) != 0 {
			out = append(out, i)
		}
	}
	return out
}

func maskOf(cpus []int) cpuMask {
	var m cpuMask
	for _, c := range cpus {
		if c >= 0 && c < len(m)*64 {
			m[c/64] |= 1 << (c % 64)
		}
	}
	return m
}
