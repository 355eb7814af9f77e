//go:build linux

package donate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// platformIdleSources lists the Linux idle sources, most precise first.
func platformIdleSources() []IdleSource {
	var out []IdleSource
	if os.Getenv("DISPLAY") != "" {
		if p, err := exec.LookPath("xprintidle"); err == nil {
			out = append(out, CommandIdle{Label: "X11 screensaver (xprintidle)", Argv: []string{p}})
		}
	}
	out = append(out,
		&logindIdle{dir: "/run/systemd/sessions"},
		atimeIdle{label: "terminal access times (/dev/pts, /dev/tty*)", globs: []string{"/dev/pts/[0-9]*", "/dev/tty[0-9]*"}},
		atimeIdle{label: "input device access times (/dev/input)", globs: []string{"/dev/input/event*", "/dev/input/mice"}},
	)
	return out
}

// logindIdle asks systemd-logind (through loginctl, so that the worker
// needs neither cgo nor a D-Bus library) about the local user sessions.
// A graphical session's IdleHint is set by the desktop after its own idle
// delay, so it says "away" later than the input itself stopped; a text
// session's idle time is its terminal's last input.
type logindIdle struct {
	dir      string // where logind lists its sessions
	loginctl string // resolved on first use
}

func (l *logindIdle) Name() string { return "logind" }

func (l *logindIdle) Idle(time.Time) (time.Duration, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return 0, fmt.Errorf("no logind sessions directory: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if !strings.Contains(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	if l.loginctl == "" {
		if l.loginctl, err = exec.LookPath("loginctl"); err != nil {
			return 0, err
		}
	}
	if len(ids) == 0 {
		return noIdle, nil // nobody is logged in
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	args := append([]string{"show-session", "-p", "Type", "-p", "Class", "-p", "Remote",
		"-p", "IdleHint", "-p", "IdleSinceHintMonotonic"}, ids...)
	out, err := exec.CommandContext(ctx, l.loginctl, args...).Output()
	if err != nil && len(out) == 0 {
		return 0, fmt.Errorf("loginctl: %w", err)
	}
	mono, err := monotonicNow()
	if err != nil {
		return 0, err
	}
	return parseLogind(out, mono)
}

// parseLogind reads loginctl show-session's blocks (one per session,
// separated by blank lines) and returns the shortest idle time of the
// local user sessions, or noIdle when there are none. mono is
// CLOCK_MONOTONIC now.
func parseLogind(out []byte, mono time.Duration) (time.Duration, error) {
	best := noIdle
	for _, block := range strings.Split(strings.TrimSpace(string(out)), "\n\n") {
		p := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				p[k] = v
			}
		}
		if p["Class"] != "user" || p["Remote"] == "yes" {
			continue
		}
		since, err := strconv.ParseInt(p["IdleSinceHintMonotonic"], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("loginctl: IdleSinceHintMonotonic %q: %v", p["IdleSinceHintMonotonic"], err)
		}
		idle := time.Duration(0)
		// A text session's hint time is its terminal's last input; a
		// graphical session's is when the desktop last changed the hint,
		// which says nothing about input while the hint is "no".
		if (p["IdleHint"] == "yes" || p["Type"] == "tty") && since > 0 {
			idle = max(mono-time.Duration(since)*time.Microsecond, 0)
		}
		best = min(best, idle)
	}
	return best, nil
}

// monotonicNow reads CLOCK_MONOTONIC, logind's clock for idle hints.
func monotonicNow() (time.Duration, error) {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, fmt.Errorf("clock_gettime: %w", e)
	}
	return time.Duration(ts.Nano()), nil
}

// atimeIdle reports the time since the newest access time of some device
// files. Terminals get one when someone types (the kernel updates it at
// most every 8 seconds); input devices only where the kernel updates it.
type atimeIdle struct {
	label string
	globs []string
}

func (a atimeIdle) Name() string { return a.label }

func (a atimeIdle) Idle(now time.Time) (time.Duration, error) {
	var newest time.Time
	found := false
	for _, g := range a.globs {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			var st syscall.Stat_t
			if syscall.Stat(p, &st) != nil {
				continue
			}
			found = true
			if t := time.Unix(st.Atim.Unix()); t.After(newest) {
				newest = t
			}
		}
	}
	if !found {
		return 0, errors.New("no such devices")
	}
	return max(now.Sub(newest), 0), nil
}

// NewSystem returns the System of this machine.
func NewSystem() System {
	return &linuxSystem{proc: "/proc", power: "/sys/class/power_supply", self: os.Getpid()}
}

type linuxSystem struct {
	proc, power string
	self        int

	prevTotal, prevIdle uint64
	prev                map[int]procTimes // the worker's processes at the last scan
	scanned             bool
}

// procTimes are one process's CPU times in clock ticks (fields 14-17 of
// /proc/PID/stat) and its parent.
type procTimes struct {
	ppid     int
	own, all uint64 // utime+stime; plus cutime+cstime
}

// Processes measures the foreign load as the machine's busy time minus the
// worker's processes' time since the previous scan. The worker's processes
// are its own, its descendants, and the members of ours (a command's
// process group keeps its members even when their parent exits). Their
// children's time counts once they are reaped, through cutime and cstime;
// what a reaped child had already been counted for is taken off again.
func (s *linuxSystem) Processes(ours []int, exclusive []string) (ProcStats, error) {
	total, idle, err := readCPUTotals(filepath.Join(s.proc, "stat"))
	if err != nil {
		return ProcStats{}, err
	}
	dir, err := os.Open(s.proc)
	if err != nil {
		return ProcStats{}, err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return ProcStats{}, err
	}
	groups := make(map[int]bool, len(ours))
	for _, g := range ours {
		groups[g] = true
	}
	type procInfo struct {
		ppid, pgrp int
		t          procTimes
	}
	all := make(map[int]procInfo, len(names))
	var stats ProcStats
	buf := make([]byte, 0, 512)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		comm, ppid, pgrp, t, err := readProcStat(filepath.Join(s.proc, n, "stat"), &buf)
		if err != nil {
			continue // it exited meanwhile
		}
		all[pid] = procInfo{ppid, pgrp, t}
		if stats.Exclusive == "" && len(exclusive) > 0 {
			if app := matchApp(comm, exclusive); app != "" {
				stats.Exclusive = app
			}
		}
	}
	// Ours: the worker, its descendants, and the commands' groups.
	mine := map[int]bool{s.self: true}
	var isMine func(pid, depth int) bool
	isMine = func(pid, depth int) bool {
		if v, ok := mine[pid]; ok {
			return v
		}
		p, ok := all[pid]
		v := ok && depth < 64 && (groups[p.pgrp] || (p.ppid > 0 && isMine(p.ppid, depth+1)))
		mine[pid] = v
		return v
	}
	cur := make(map[int]procTimes)
	for pid, p := range all {
		if isMine(pid, 0) {
			cur[pid] = procTimes{ppid: p.ppid, own: p.t.own, all: p.t.all}
		}
	}
	var oursDelta int64
	for pid, t := range cur {
		if p, ok := s.prev[pid]; ok {
			oursDelta += int64(t.all) - int64(p.all)
		} else if s.scanned {
			oursDelta += int64(t.all) // started since the last scan
		}
	}
	for pid, p := range s.prev {
		if _, alive := cur[pid]; !alive {
			if _, parentAlive := cur[p.ppid]; parentAlive {
				oursDelta -= int64(p.all) // now in its parent's cutime/cstime
			}
		}
	}
	if s.scanned && total > s.prevTotal {
		dt := float64(total - s.prevTotal)
		busy := float64((total - s.prevTotal) - min(idle-s.prevIdle, total-s.prevTotal))
		foreign := (busy - float64(max(oursDelta, 0))) / dt * 100
		stats.ForeignLoad = min(max(foreign, 0), 100)
		stats.LoadKnown = true
	}
	s.prevTotal, s.prevIdle, s.prev, s.scanned = total, idle, cur, true
	return stats, nil
}

// readCPUTotals returns all CPUs' total and idle (idle + iowait) ticks
// from /proc/stat's first line.
func readCPUTotals(path string) (total, idle uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("%s: unexpected first line %q", path, line)
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", path, err)
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return total, idle, nil
}

// readProcStat parses /proc/PID/stat: the command name, parent, process
// group and CPU times.
func readProcStat(path string, buf *[]byte) (comm string, ppid, pgrp int, t procTimes, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, 0, t, err
	}
	b := (*buf)[:cap(*buf)]
	n, err := f.Read(b)
	f.Close()
	if err != nil {
		return "", 0, 0, t, err
	}
	b = b[:n]
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return "", 0, 0, t, errors.New("malformed stat")
	}
	comm = string(b[open+1 : closing])
	f2 := strings.Fields(string(b[closing+1:]))
	// f2[0] is field 3 (state): ppid 4, pgrp 5, utime 14 ... cstime 17.
	if len(f2) < 15 {
		return "", 0, 0, t, errors.New("short stat")
	}
	ppid, _ = strconv.Atoi(f2[1])
	pgrp, _ = strconv.Atoi(f2[2])
	var v [4]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f2[11+i], 10, 64)
	}
	t = procTimes{ppid: ppid, own: v[0] + v[1], all: v[0] + v[1] + v[2] + v[3]}
	return comm, ppid, pgrp, t, nil
}

// Power reads /sys/class/power_supply: the machine is on battery when a
// system battery (not a mouse's) discharges.
func (s *linuxSystem) Power() (Power, error) {
	entries, err := os.ReadDir(s.power)
	if err != nil {
		return Power{}, err
	}
	p := Power{Charge: -1}
	for _, e := range entries {
		dir := filepath.Join(s.power, e.Name())
		if readTrim(filepath.Join(dir, "type")) != "Battery" || readTrim(filepath.Join(dir, "scope")) == "Device" {
			continue
		}
		if readTrim(filepath.Join(dir, "status")) == "Discharging" {
			p.OnBattery = true
		}
		if c, err := strconv.Atoi(readTrim(filepath.Join(dir, "capacity"))); err == nil && (p.Charge < 0 || c < p.Charge) {
			p.Charge = c
		}
	}
	return p, nil
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// FreeDisk implements System.
func (s *linuxSystem) FreeDisk(path string) (int64, error) { return statfsFree(path) }
