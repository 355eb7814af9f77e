// Package donate decides when a donated desktop may build: it turns what
// the machine looks like now (how long its owner has been away, how busy
// the owner's own programs keep the CPU, the power supply, the time of
// day, the programs running, the free disk) into a state, accepting builds
// or paused with a reason, and into what running builds must do when the
// owner comes back: freeze, throttle or abandon.
//
// The policy itself (Policy) is pure: it sees the machine only through
// Observations and the time only through them, so it is tested with
// tables. The Monitor samples the real machine through small interfaces
// (IdleSource, System) and hands each Decision to the worker.
//
// The package must stay free of master-side dependencies: the worker is
// built with CGO_ENABLED=0 for Linux, macOS and Windows.
package donate

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Action is what a running build does when the owner comes back.
type Action int

// The actions. The zero Action means "the worker's default".
const (
	// Freeze stops the build's processes (SIGSTOP to its process group)
	// and resumes them once the owner is away again; a build frozen for
	// longer than Settings.MaxFreeze is abandoned.
	Freeze Action = iota + 1
	// Throttle keeps the build running on fewer cores at the lowest
	// priority.
	Throttle
	// Abandon kills the build and hands it back to the master, which runs
	// it again (RETRY), first in the queue.
	Abandon
)

var actionNames = map[Action]string{Freeze: "freeze", Throttle: "throttle", Abandon: "abandon"}

func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// ParseAction parses "freeze", "throttle" or "abandon".
func ParseAction(s string) (Action, error) {
	for a, n := range actionNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown action %q: want freeze, throttle or abandon", s)
}

// Mode is the state a running build should be in.
type Mode int

// The modes.
const (
	Running Mode = iota
	Frozen
	Throttled
	// Abandoned is final: the build is killed and handed back.
	Abandoned
)

var modeNames = [...]string{Running: "running", Frozen: "frozen", Throttled: "throttled", Abandoned: "abandoned"}

func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Cause is why the worker does not take builds.
type Cause int

// The causes, in the order they are checked: when several hold, the first
// is reported.
const (
	NoCause Cause = iota
	OwnerActive
	ExclusiveApp
	OnBattery
	OutsideWindow
	ForeignLoad
	LowDisk
)

var causeNames = [...]string{
	NoCause: "none", OwnerActive: "owner active", ExclusiveApp: "exclusive app running",
	OnBattery: "on battery", OutsideWindow: "outside window", ForeignLoad: "foreign load",
	LowDisk: "low disk",
}

func (c Cause) String() string {
	if c >= 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", int(c))
}

// Settings are a donor's policy. The zero value of each field turns its
// check off; Defaults returns the documented defaults.
type Settings struct {
	// IdleThreshold: the owner counts as away once no keyboard or mouse
	// input came for this long. 0: the owner's presence is ignored.
	IdleThreshold time.Duration
	// ForeignLoad is the share of the whole CPU, in percent, that
	// processes not started by the worker may use before the worker
	// pauses. 0: not checked.
	ForeignLoad float64
	// AllowBattery lets builds run while the machine runs on battery, as
	// long as the charge is at least MinCharge percent.
	AllowBattery bool
	MinCharge    int
	// Windows are the times builds may run, in Location (nil: the local
	// time zone). Empty: any time.
	Windows  Schedule
	Location *time.Location
	// FinishAfterWindow lets a build that is running when its window
	// closes run to its end; otherwise the close counts as the owner
	// coming back.
	FinishAfterWindow bool
	// ExclusiveApps are process names whose presence pauses work (games,
	// video calls). Matched case-insensitively, without ".exe".
	ExclusiveApps []string
	// DiskFloor: no new builds while the worker's disk has less free
	// space, in bytes. Running builds go on. 0: not checked.
	DiskFloor int64
	// OnOwner is what running builds do when the owner comes back
	// (default Freeze); BuilderActions overrides it per builder name.
	OnOwner        Action
	BuilderActions map[string]Action
	// MaxFreeze: a build frozen this long is abandoned. 0: never.
	MaxFreeze time.Duration
	// ResumeDelay is how long every check must pass again after a pause
	// before the worker takes builds or thaws frozen ones, so a moment's
	// quiet does not wake the builds. It does not apply at start.
	ResumeDelay time.Duration
}

// Defaults for the policy.
const (
	DefaultIdleThreshold = 3 * time.Minute
	DefaultForeignLoad   = 25.0
	DefaultDiskFloor     = 5 << 30
	DefaultMaxFreeze     = 30 * time.Minute
	DefaultResumeDelay   = 30 * time.Second
)

// DefaultSettings returns the default policy: builds only while the owner
// has been away for 3 minutes, foreign load at most 25 %, never on
// battery, at any time of day, at least 5 GiB free, freeze when the owner
// comes back and abandon after 30 minutes frozen.
func DefaultSettings() Settings {
	return Settings{
		IdleThreshold:     DefaultIdleThreshold,
		ForeignLoad:       DefaultForeignLoad,
		FinishAfterWindow: true,
		DiskFloor:         DefaultDiskFloor,
		OnOwner:           Freeze,
		MaxFreeze:         DefaultMaxFreeze,
		ResumeDelay:       DefaultResumeDelay,
	}
}

// ActionFor returns the action for builds of builder.
func (s *Settings) ActionFor(builder string) Action {
	if a, ok := s.BuilderActions[builder]; ok && a != 0 {
		return a
	}
	if s.OnOwner == 0 {
		return Freeze
	}
	return s.OnOwner
}

// Observation is the machine at one moment. Each group of fields has a
// Known flag: a source that does not work on this machine leaves it false
// and its check is skipped.
type Observation struct {
	Now time.Time

	// Idle is the time since the owner's last input.
	Idle      time.Duration
	IdleKnown bool
	// ForeignLoad is the CPU share (percent of all cores) used by
	// processes that are not the worker's, since the previous sample.
	ForeignLoad float64
	LoadKnown   bool
	// OnBattery and Charge (percent, -1 unknown) describe the power supply.
	OnBattery  bool
	Charge     int
	PowerKnown bool
	// ExclusiveApp names a running exclusive app, or is "".
	ExclusiveApp string
	// FreeDisk is the free space of the worker's disk, in bytes.
	FreeDisk  int64
	DiskKnown bool
}

// Status is whether the worker takes builds, and if not, why.
type Status struct {
	Accepting bool
	Cause     Cause
	// Reason is the short text the master shows, such as "owner active"
	// or "foreign load 63 %". It names no program, so that the master's
	// pages do not tell what the owner is doing.
	Reason string
	// Detail is the longer text for the owner (starforge-worker status),
	// such as "exclusive app running: zoom".
	Detail string
	// Since is when the worker entered this state (accepting, or paused
	// for this cause).
	Since time.Time
	// Settling is set while every check passes again but ResumeDelay has
	// not passed yet: the worker is still paused for Cause.
	Settling bool
}

// Build is a running build as the policy sees it.
type Build struct {
	Key     string // identifies the build on this worker
	Builder string
}

// Decision is the policy's answer to one Observation.
type Decision struct {
	Status Status
	// Modes holds the mode each running build should be in, by Key.
	Modes map[string]Mode
}

// Policy applies Settings to a sequence of Observations. It remembers
// what it decided before (for hysteresis and the freeze time limit), so
// Observations must come in time order. It is not safe for concurrent use.
type Policy struct {
	s Settings

	started    bool
	status     Status
	clearSince time.Time // when every check began to pass again; zero while some fails
	frozenAt   map[string]time.Time
	abandoned  map[string]bool
}

// NewPolicy returns a policy with settings s.
func NewPolicy(s Settings) *Policy {
	return &Policy{s: s, frozenAt: map[string]time.Time{}, abandoned: map[string]bool{}}
}

// Settings returns the policy's settings.
func (p *Policy) Settings() Settings { return p.s }

// Status returns the last decision's status.
func (p *Policy) Status() Status { return p.status }

// Evaluate decides the state for o and the mode of each running build.
func (p *Policy) Evaluate(o Observation, builds []Build) Decision {
	cause, reason, detail := p.check(o)
	now := o.Now
	next := Status{Accepting: cause == NoCause, Cause: cause, Reason: reason, Detail: detail}
	switch {
	case cause != NoCause:
		p.clearSince = time.Time{}
	case !p.started || p.status.Accepting:
		// Accepting at start, or still accepting.
	default:
		if p.clearSince.IsZero() {
			p.clearSince = now
		}
		if left := p.s.ResumeDelay - now.Sub(p.clearSince); left > 0 {
			next = p.status
			next.Settling = true
			next.Detail = fmt.Sprintf("%s; resuming in %s if nothing changes", p.status.Reason, roundDuration(left))
		}
	}
	if !p.started || next.Accepting != p.status.Accepting || next.Cause != p.status.Cause {
		next.Since = now
	} else {
		next.Since = p.status.Since
	}
	p.started = true
	p.status = next

	modes := make(map[string]Mode, len(builds))
	live := make(map[string]bool, len(builds))
	interrupt := !next.Accepting && p.interrupts(next.Cause)
	for _, b := range builds {
		live[b.Key] = true
		modes[b.Key] = p.mode(b, interrupt, now)
	}
	for k := range p.frozenAt {
		if !live[k] {
			delete(p.frozenAt, k)
		}
	}
	for k := range p.abandoned {
		if !live[k] {
			delete(p.abandoned, k)
		}
	}
	return Decision{Status: next, Modes: modes}
}

// mode returns the mode of one running build.
func (p *Policy) mode(b Build, interrupt bool, now time.Time) Mode {
	if p.abandoned[b.Key] {
		return Abandoned
	}
	if !interrupt {
		delete(p.frozenAt, b.Key)
		return Running
	}
	switch p.s.ActionFor(b.Builder) {
	case Throttle:
		return Throttled
	case Abandon:
		p.abandoned[b.Key] = true
		return Abandoned
	}
	at, ok := p.frozenAt[b.Key]
	if !ok {
		p.frozenAt[b.Key] = now
		at = now
	}
	if p.s.MaxFreeze > 0 && now.Sub(at) >= p.s.MaxFreeze {
		delete(p.frozenAt, b.Key)
		p.abandoned[b.Key] = true
		return Abandoned
	}
	return Frozen
}

// interrupts reports whether a pause for c acts on running builds: a full
// disk only stops new builds, and a closed window lets running builds
// finish if FinishAfterWindow is set.
func (p *Policy) interrupts(c Cause) bool {
	switch c {
	case NoCause, LowDisk:
		return false
	case OutsideWindow:
		return !p.s.FinishAfterWindow
	}
	return true
}

// check returns the first check that fails, with its reason and detail.
func (p *Policy) check(o Observation) (Cause, string, string) {
	s := &p.s
	if o.IdleKnown && s.IdleThreshold > 0 && o.Idle < s.IdleThreshold {
		return OwnerActive, "owner active", fmt.Sprintf("owner active: last input %s ago, builds wait for %s without input",
			roundDuration(o.Idle), roundDuration(s.IdleThreshold))
	}
	if o.ExclusiveApp != "" {
		return ExclusiveApp, "exclusive app running", "exclusive app running: " + o.ExclusiveApp
	}
	if o.PowerKnown && o.OnBattery {
		if !s.AllowBattery {
			return OnBattery, "on battery", "on battery: builds wait for mains power"
		}
		if s.MinCharge > 0 && o.Charge >= 0 && o.Charge < s.MinCharge {
			r := fmt.Sprintf("battery below %d %%", s.MinCharge)
			return OnBattery, r, fmt.Sprintf("%s: charge %d %%", r, o.Charge)
		}
	}
	if len(s.Windows) > 0 && !s.Windows.Contains(o.Now, s.Location) {
		d := "outside window"
		if next, ok := s.Windows.Next(o.Now, s.Location); ok {
			d += ": next window opens " + next.Format("Mon 15:04")
		}
		return OutsideWindow, "outside window", d
	}
	if o.LoadKnown && s.ForeignLoad > 0 && o.ForeignLoad > s.ForeignLoad {
		r := fmt.Sprintf("foreign load %.0f %%", o.ForeignLoad)
		return ForeignLoad, r, fmt.Sprintf("%s: other programs use more than %.0f %% of the CPU", r, s.ForeignLoad)
	}
	if o.DiskKnown && s.DiskFloor > 0 && o.FreeDisk < s.DiskFloor {
		r := "disk below " + FormatSize(s.DiskFloor)
		return LowDisk, r, fmt.Sprintf("%s: %s free; running builds go on, new ones wait", r, FormatSize(o.FreeDisk))
	}
	return NoCause, "", "accepting builds"
}

// roundDuration rounds d for people: whole seconds, or tenths below 10 s.
func roundDuration(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
