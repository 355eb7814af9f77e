package donate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// IdleSource tells how long the owner has been away from the keyboard and
// mouse. Implementations are safe for use from one goroutine at a time.
type IdleSource interface {
	// Name says what the source reads, for the start-up message and
	// starforge-worker status ("logind", "X11 (xprintidle)", ...).
	Name() string
	// Idle returns the time since the last input the source can see.
	Idle(now time.Time) (time.Duration, error)
}

// ProcStats is one scan of the running processes.
type ProcStats struct {
	// ForeignLoad is the CPU share, in percent of all cores, that
	// processes outside the worker's own used since the previous scan.
	ForeignLoad float64
	// LoadKnown is false when the load could not be measured (the first
	// scan, or a platform that cannot tell the worker's processes apart
	// while builds run).
	LoadKnown bool
	// Exclusive is the name of a running exclusive app, or "".
	Exclusive string
}

// Power describes the power supply.
type Power struct {
	OnBattery bool
	Charge    int // percent; -1 when unknown
}

// System samples the machine (other than the owner's idle time). Methods
// return an error when the platform cannot tell; the policy then skips the
// check. Implementations are used from one goroutine at a time.
type System interface {
	// Processes scans the processes. ours lists the process groups of the
	// worker's running commands; the worker's own process and its
	// descendants are always ours. exclusive are the process names to look
	// for.
	Processes(ours []int, exclusive []string) (ProcStats, error)
	Power() (Power, error)
	// FreeDisk returns the bytes available to the worker on path's disk.
	FreeDisk(path string) (int64, error)
}

// ErrUnsupported is returned by sources that do not work on this platform.
var ErrUnsupported = errors.ErrUnsupported

// noIdle is the idle time reported when nobody is logged in locally: long
// enough to count as away for any threshold.
const noIdle = 365 * 24 * time.Hour

// multiIdle combines sources: the owner's idle time is the shortest any
// source saw, since each sees only some of the owner's input.
type multiIdle struct {
	srcs []IdleSource
}

// CombineIdle returns a source reporting the shortest idle time of srcs
// that work. It fails only when all of them fail. With one source it
// returns that source.
func CombineIdle(srcs ...IdleSource) IdleSource {
	if len(srcs) == 1 {
		return srcs[0]
	}
	return &multiIdle{srcs: srcs}
}

func (m *multiIdle) Name() string {
	names := make([]string, len(m.srcs))
	for i, s := range m.srcs {
		names[i] = s.Name()
	}
	return strings.Join(names, ", ")
}

func (m *multiIdle) Idle(now time.Time) (time.Duration, error) {
	best, ok := time.Duration(0), false
	var errs []error
	for _, s := range m.srcs {
		d, err := s.Idle(now)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
			continue
		}
		if !ok || d < best {
			best, ok = d, true
		}
	}
	if !ok {
		return 0, errors.Join(errs...)
	}
	return best, nil
}

// FileIdle reports the time since path was last modified: touching the
// file is owner input. Tests use it (STARFORGE_DONATE_IDLE_FILE); a
// missing file counts as an owner away for good.
type FileIdle struct{ Path string }

// Name implements IdleSource.
func (f FileIdle) Name() string { return "file " + f.Path }

// Idle implements IdleSource.
func (f FileIdle) Idle(now time.Time) (time.Duration, error) {
	fi, err := os.Stat(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return noIdle, nil
	}
	if err != nil {
		return 0, err
	}
	return max(now.Sub(fi.ModTime()), 0), nil
}

// CommandIdle runs a program that prints the idle time in milliseconds
// (as xprintidle does) and reads its first line.
type CommandIdle struct {
	Label string   // for Name; default the program
	Argv  []string // program and arguments
}

// Name implements IdleSource.
func (c CommandIdle) Name() string {
	if c.Label != "" {
		return c.Label
	}
	return "command " + strings.Join(c.Argv, " ")
}

// Idle implements IdleSource.
func (c CommandIdle) Idle(time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", c.Argv[0], err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	ms, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("%s printed %q, want milliseconds", c.Argv[0], line)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// DetectIdle returns the idle sources that work on this machine, having
// tried each once, and a note for each that does not (for the start-up
// message). command, if given, is an extra program printing the idle time
// in milliseconds.
func DetectIdle(now time.Time, command []string) (works []IdleSource, notes []string) {
	cands := platformIdleSources()
	if len(command) > 0 {
		cands = append([]IdleSource{CommandIdle{Argv: command}}, cands...)
	}
	for _, s := range cands {
		if _, err := s.Idle(now); err != nil {
			notes = append(notes, fmt.Sprintf("%s: %v", s.Name(), err))
			continue
		}
		works = append(works, s)
	}
	return works, notes
}
