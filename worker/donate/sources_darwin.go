//go:build darwin

package donate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// platformIdleSources: macOS keeps the time since the last input as
// IOHIDSystem's HIDIdleTime, which ioreg prints.
func platformIdleSources() []IdleSource { return []IdleSource{hidIdle{}} }

type hidIdle struct{}

func (hidIdle) Name() string { return "HIDIdleTime (ioreg)" }

var hidIdleRE = regexp.MustCompile(`"HIDIdleTime"\s*=\s*(\d+)`)

func (hidIdle) Idle(time.Time) (time.Duration, error) {
	out, err := runQuiet("ioreg", "-c", "IOHIDSystem", "-d", "4", "-r", "-k", "HIDIdleTime")
	if err != nil {
		return 0, err
	}
	m := hidIdleRE.FindSubmatch(out)
	if m == nil {
		return 0, errors.New("ioreg printed no HIDIdleTime")
	}
	ns, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("HIDIdleTime %q: %w", m[1], err)
	}
	return time.Duration(ns), nil
}

func runQuiet(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// NewSystem returns the System of this machine.
func NewSystem() System { return &darwinSystem{self: os.Getpid()} }

type darwinSystem struct{ self int }

// Processes reads ps. Its %cpu is a decaying average over the last
// minute, so the foreign load reacts more slowly than on Linux.
func (s *darwinSystem) Processes(ours []int, exclusive []string) (ProcStats, error) {
	out, err := runQuiet("ps", "-A", "-o", "pid=,ppid=,pgid=,%cpu=,comm=")
	if err != nil {
		return ProcStats{}, err
	}
	type proc struct {
		ppid, pgid int
		cpu        float64
	}
	all := map[int]proc{}
	var stats ProcStats
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		cpu, _ := strconv.ParseFloat(strings.Replace(f[3], ",", ".", 1), 64)
		all[pid] = proc{ppid, pgid, cpu}
		if stats.Exclusive == "" && len(exclusive) > 0 {
			comm := filepath.Base(strings.Join(f[4:], " "))
			stats.Exclusive = matchApp(comm, exclusive)
		}
	}
	groups := map[int]bool{}
	for _, g := range ours {
		groups[g] = true
	}
	mine := map[int]bool{s.self: true}
	var isMine func(pid, depth int) bool
	isMine = func(pid, depth int) bool {
		if v, ok := mine[pid]; ok {
			return v
		}
		p, ok := all[pid]
		v := ok && depth < 64 && (groups[p.pgid] || (p.ppid > 0 && isMine(p.ppid, depth+1)))
		mine[pid] = v
		return v
	}
	var foreign float64
	for pid, p := range all {
		if !isMine(pid, 0) {
			foreign += p.cpu
		}
	}
	stats.ForeignLoad = min(foreign/float64(runtime.NumCPU()), 100)
	stats.LoadKnown = true
	return stats, nil
}

var pmsetPercentRE = regexp.MustCompile(`(\d+)%`)

// Power reads pmset -g batt.
func (s *darwinSystem) Power() (Power, error) {
	out, err := runQuiet("pmset", "-g", "batt")
	if err != nil {
		return Power{}, err
	}
	p := Power{Charge: -1, OnBattery: strings.Contains(string(out), "'Battery Power'")}
	if m := pmsetPercentRE.FindSubmatch(out); m != nil {
		p.Charge, _ = strconv.Atoi(string(m[1]))
	}
	return p, nil
}

// FreeDisk implements System.
func (s *darwinSystem) FreeDisk(path string) (int64, error) { return statfsFree(path) }
