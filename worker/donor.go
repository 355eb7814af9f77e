package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/donate"
	"github.com/starforge/starforge/worker/proto"
)

// Donation makes the worker a donated desktop: it builds only while the
// policy allows (package donate), tells a master that knows the pause
// extension when it pauses, and freezes, throttles or hands back running
// builds when the owner comes back.
type Donation struct {
	Policy donate.Settings
	Limits donate.Limits
	// Idle is the owner's idle time; nil when no source works (the policy
	// then goes by the load alone).
	Idle donate.IdleSource
	// System samples processes, power and disk; nil: donate.NewSystem().
	System donate.System
	Clock  clock.Clock // nil: the real clock
	// Fast and Slow override the polling intervals (donate.DefaultFast,
	// donate.DefaultSlow); tests shorten them.
	Fast, Slow time.Duration
	// StatusFile is where the worker writes what it does, for
	// `starforge-worker status`; default BASEDIR/donate.status.
	StatusFile string
	// Notes are start-up remarks (idle sources that do not work, limits
	// that cannot apply), kept in the status file.
	Notes []string
}

// buildGrace is how long a build without a build id from the master (a
// Buildbot master) counts as still running after its last command ended,
// so that its next step is let in while the worker is paused. With a
// build id there is no guessing.
const buildGrace = time.Minute

// keptBuilds bounds the finished builds remembered by id.
const keptBuilds = 64

// donor applies a Donation to the agent's commands. It outlives
// connections: a frozen build stays frozen across a reconnect.
type donor struct {
	a     *Agent
	cfg   *Donation
	log   *slog.Logger
	clk   clock.Clock
	lim   *donate.Limiter
	mon   *donate.Monitor
	state string // status file path

	mu      sync.Mutex
	status  donate.Status
	decided bool // status is a real decision
	obs     donate.Observation
	builds  map[string]*dbuild
	sess    *session // the connected session, or nil
	changed chan struct{}
	// Figures for starforge-worker status.
	donated   time.Duration // time with a build running (not frozen)
	lastTick  time.Time
	buildsRun int
	lastWrite time.Time
}

// dbuild is a build on this worker.
type dbuild struct {
	key, builder, id string
	mode             donate.Mode
	modeSince        time.Time
	// held: a build that arrived while the worker was paused and the
	// master cannot be told (no pause extension); it waits, not started,
	// until the worker accepts builds again.
	held bool
	// pending: a command came while the worker was paused; it waits for
	// the policy's next decision about this build.
	pending bool
	gate    chan struct{} // closed while commands may run; open (blocking) while frozen, held or pending
	reason  string        // why it was abandoned
	cmds    map[*dcmd]bool
	lastEnd time.Time // when its last command ended
}

// dcmd is one command of a build.
type dcmd struct {
	b      *dbuild
	cmd    command.Command
	cancel context.CancelCauseFunc
	groups map[int]bool // its process groups
	// abandoned is set (under donor.mu) when the command is killed to hand
	// the build back.
	abandoned string
	// interrupted is closed when the master interrupts the command: it
	// then stops waiting for its build to thaw, and ends at once.
	interrupted chan struct{}
	intOnce     sync.Once
}

func newDonor(a *Agent, cfg *Donation) *donor {
	d := &donor{
		a: a, cfg: cfg, log: a.log.With("donate", true),
		clk:     cfg.Clock,
		builds:  map[string]*dbuild{},
		changed: make(chan struct{}),
		state:   cfg.StatusFile,
	}
	if d.clk == nil {
		d.clk = clock.Real
	}
	if d.state == "" {
		d.state = filepath.Join(a.basedir, StatusFileName)
	}
	sys := cfg.System
	if sys == nil {
		sys = donate.NewSystem()
	}
	var notes []string
	d.lim, notes = donate.NewLimiter(cfg.Limits)
	if !d.lim.CanThrottle() {
		// Freezing is the next kindest to the owner.
		p := &cfg.Policy
		throttles := p.OnOwner == donate.Throttle
		if p.OnOwner == donate.Throttle {
			p.OnOwner = donate.Freeze
		}
		for b, act := range p.BuilderActions {
			if act == donate.Throttle {
				p.BuilderActions[b] = donate.Freeze
				throttles = true
			}
		}
		if throttles {
			notes = append(notes, "throttle is not supported on this platform; builds are frozen instead")
		}
	}
	cfg.Notes = append(cfg.Notes, notes...)
	for _, n := range notes {
		d.log.Warn("donate: " + n)
	}
	d.mon = &donate.Monitor{
		Policy:   donate.NewPolicy(cfg.Policy),
		Idle:     cfg.Idle,
		System:   sys,
		DiskPath: a.basedir,
		Target:   d,
		Clock:    d.clk,
		Logger:   d.log,
		Fast:     cfg.Fast,
		Slow:     cfg.Slow,
	}
	d.status = donate.Status{Reason: "starting", Detail: "starting", Since: d.clk.Now()}
	return d
}

// run polls until ctx ends, then records that the worker stopped.
func (d *donor) run(ctx context.Context) {
	d.mon.Run(ctx)
	d.writeStatus(true)
	d.lim.Close()
}

// Builds implements donate.Target: the builds with commands running or
// waiting, and any build the policy holds in a mode (frozen between two
// steps). Held builds are not the policy's: they have not started.
func (d *donor) Builds() ([]donate.Build, []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var bs []donate.Build
	var groups []int
	for _, b := range d.builds {
		if b.held || (len(b.cmds) == 0 && (b.mode == donate.Running || b.mode == donate.Abandoned)) {
			continue
		}
		bs = append(bs, donate.Build{Key: b.key, Builder: b.builder})
		for c := range b.cmds {
			for g := range c.groups {
				groups = append(groups, g)
			}
		}
	}
	return bs, groups
}

// Apply implements donate.Target.
func (d *donor) Apply(dec donate.Decision, o donate.Observation) {
	d.mu.Lock()
	now := o.Now
	if !d.lastTick.IsZero() && d.anyRunningLocked() {
		d.donated += now.Sub(d.lastTick)
	}
	d.lastTick = now
	prev := d.status
	first := !d.decided
	d.status, d.obs, d.decided = dec.Status, o, true
	keys := make([]string, 0, len(dec.Modes))
	for k := range dec.Modes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	modesChanged := false
	for _, k := range keys {
		if b := d.builds[k]; b != nil && b.mode != dec.Modes[k] {
			d.setModeLocked(b, dec.Modes[k], now)
			modesChanged = true
		}
	}
	for _, b := range d.builds {
		if b.pending {
			b.pending = false
			if b.mode == donate.Running && !isClosed(b.gate) {
				close(b.gate)
			}
		}
	}
	if dec.Status.Accepting {
		for _, b := range d.builds {
			if b.held {
				b.held = false
				close(b.gate)
				d.log.Info("starting a build that waited for the worker to accept builds", "builder", b.builder)
			}
		}
	}
	d.expireLocked(now)
	sess := d.sess
	// The master hears of a new state or cause, not of every new load
	// figure; the owner's status file has them all.
	changed := first || prev.Accepting != dec.Status.Accepting || prev.Cause != dec.Status.Cause
	reworded := prev.Reason != dec.Status.Reason
	if changed {
		close(d.changed)
		d.changed = make(chan struct{})
	}
	idleDisconnect := sess != nil && !dec.Status.Accepting && !d.activeLocked()
	d.mu.Unlock()

	if changed {
		if dec.Status.Accepting {
			d.log.Info("donate: accepting builds")
		} else {
			d.log.Info("donate: paused", "reason", dec.Status.Reason, "detail", dec.Status.Detail)
		}
	}
	// The status file first: what the master hears, the owner can read.
	if changed || reworded || modesChanged || now.Sub(d.lastWriteTime()) >= statusEvery {
		d.writeStatus(false)
	}
	if sess != nil {
		if sess.hasPause() {
			if changed {
				sess.notifyPause()
			}
		} else if idleDisconnect && sess.settingsSeen() {
			// A master without the pause extension would keep sending
			// builds: leave until the worker takes builds again.
			sess.hangUp(fmt.Errorf("donated worker paused (%s); the master does not know the pause extension, so the worker disconnects until it takes builds again", dec.Status.Reason))
		}
	}
}

// setModeLocked moves b to mode m: it freezes, thaws, throttles or
// abandons its commands. A mode this platform cannot do falls back to
// abandoning, which always works.
func (d *donor) setModeLocked(b *dbuild, m donate.Mode, now time.Time) {
	old := b.mode
	if old == donate.Abandoned {
		return
	}
	log := d.log.With("builder", b.builder, "build", b.id)
	var err error
	switch m {
	case donate.Frozen:
		// A throttled build that freezes stays throttled: its CPUs come
		// back on its way to Running.
		if isClosed(b.gate) {
			b.gate = make(chan struct{})
		}
		for c := range b.cmds {
			if f, ok := c.cmd.(command.Freezer); ok {
				err = errors.Join(err, f.Freeze())
			}
		}
	case donate.Throttled:
		d.thawLocked(b)
		for c := range b.cmds {
			for g := range c.groups {
				err = errors.Join(err, d.lim.Throttle(g))
			}
		}
	case donate.Running:
		d.thawLocked(b)
		if old == donate.Throttled {
			for c := range b.cmds {
				for g := range c.groups {
					if uerr := d.lim.Unthrottle(g); uerr != nil {
						log.Warn("cannot give a throttled build its CPUs back", "err", uerr)
					}
				}
			}
		}
	case donate.Abandoned:
		reason := d.status.Reason
		if old == donate.Frozen && d.cfg.Policy.MaxFreeze > 0 && now.Sub(b.modeSince) >= d.cfg.Policy.MaxFreeze {
			reason = fmt.Sprintf("%s; frozen for %s", reason, d.cfg.Policy.MaxFreeze)
		}
		d.abandonLocked(b, reason)
		log.Info("donate: handing the build back", "reason", reason)
		b.mode, b.modeSince = m, now
		return
	}
	if err != nil {
		log.Warn("donate: cannot "+m.String()+" the build; handing it back instead", "err", err)
		d.abandonLocked(b, d.status.Reason)
		b.mode, b.modeSince = donate.Abandoned, now
		return
	}
	log.Info("donate: build "+m.String(), "was", old.String(), "reason", d.status.Reason)
	b.mode, b.modeSince = m, now
}

func (d *donor) thawLocked(b *dbuild) {
	for c := range b.cmds {
		if f, ok := c.cmd.(command.Freezer); ok {
			if err := f.Thaw(); err != nil {
				d.log.Warn("donate: cannot thaw a command", "builder", b.builder, "err", err)
			}
		}
	}
	if !isClosed(b.gate) {
		close(b.gate)
	}
}

// abandonLocked kills b's commands. Each then reports "abandoned" instead
// of complete, or, without the pause extension, the worker drops the
// connection (the master then retries every build it had here).
func (d *donor) abandonLocked(b *dbuild, reason string) {
	b.reason = reason
	if !isClosed(b.gate) {
		close(b.gate) // waiting commands wake and see the abandon
	}
	for c := range b.cmds {
		c.abandoned = reason
		if f, ok := c.cmd.(command.Freezer); ok {
			_ = f.Thaw()
		}
		if c.cancel != nil {
			c.cancel(fmt.Errorf("the worker's owner needs the machine (%s); the build goes back to the master", reason))
		}
	}
	if d.sess != nil && !d.sess.hasPause() && len(b.cmds) > 0 {
		go d.sess.hangUp(fmt.Errorf("donated worker abandons a build (%s) and the master does not know the pause extension", reason))
	}
}

// expireLocked forgets builds that ended: at once for abandoned ones, after
// buildGrace for builds without a master build id, and, for those with
// one, beyond the newest keptBuilds.
func (d *donor) expireLocked(now time.Time) {
	var idle []*dbuild
	for k, b := range d.builds {
		if len(b.cmds) > 0 || b.held {
			continue
		}
		if b.id == "" && now.Sub(b.lastEnd) > buildGrace {
			delete(d.builds, k)
			continue
		}
		idle = append(idle, b)
	}
	if len(idle) > keptBuilds {
		sort.Slice(idle, func(i, j int) bool { return idle[i].lastEnd.After(idle[j].lastEnd) })
		for _, b := range idle[keptBuilds:] {
			delete(d.builds, b.key)
		}
	}
}

func (d *donor) anyRunningLocked() bool {
	for _, b := range d.builds {
		if len(b.cmds) > 0 && !b.held && (b.mode == donate.Running || b.mode == donate.Throttled) {
			return true
		}
	}
	return false
}

// activeLocked reports whether any build has commands.
func (d *donor) activeLocked() bool {
	for _, b := range d.builds {
		if len(b.cmds) > 0 {
			return true
		}
	}
	return false
}

// admit registers a command the master started, before it runs; the
// command then waits (wait) until its build may run. cancel kills it.
func (d *donor) admit(builder string, buildID any, sess *session, cmd command.Command, cancel context.CancelCauseFunc) *dcmd {
	id := ""
	if buildID != nil {
		if n, ok := proto.AsInt(buildID); ok {
			id = strconv.FormatInt(n, 10)
		} else if s, ok := buildID.(string); ok {
			id = s
		}
	}
	key := builder
	if id != "" {
		key += "#" + id
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.builds[key]
	now := d.clk.Now()
	if b == nil || b.mode == donate.Abandoned && len(b.cmds) == 0 && id == "" {
		b = &dbuild{key: key, builder: builder, id: id, gate: closedChan(), cmds: map[*dcmd]bool{}, modeSince: now}
		if d.decided && !d.status.Accepting {
			if sess.hasPause() {
				// The master dispatched before it heard of the pause:
				// hand the build back, it runs elsewhere.
				b.mode, b.reason = donate.Abandoned, d.status.Reason
			} else {
				b.held, b.gate = true, make(chan struct{})
			}
		}
		d.builds[key] = b
		if b.mode != donate.Abandoned {
			d.buildsRun++
		}
	}
	c := &dcmd{b: b, cmd: cmd, cancel: cancel, groups: map[int]bool{}, interrupted: make(chan struct{})}
	switch {
	case b.mode == donate.Abandoned:
		c.abandoned = b.reason
	case d.decided && !d.status.Accepting && b.mode == donate.Running && !b.held && isClosed(b.gate):
		// A build known to be running (its next step) while the worker is
		// paused: whether it may go on is the policy's to say, at once.
		b.pending, b.gate = true, make(chan struct{})
	}
	b.cmds[c] = true
	d.mon.Kick()
	return c
}

// wait blocks until c may run; it returns the reason when its build was
// handed back instead, or ctx's error.
func (d *donor) wait(ctx context.Context, c *dcmd) (abandoned string, err error) {
	for {
		d.mu.Lock()
		gate, reason := c.b.gate, c.abandoned
		d.mu.Unlock()
		if reason != "" {
			return reason, nil
		}
		select {
		case <-gate:
			d.mu.Lock()
			open := isClosed(c.b.gate)
			reason = c.abandoned
			d.mu.Unlock()
			if reason != "" {
				return reason, nil
			}
			if open {
				return "", nil
			}
			// Frozen again before this command got going: wait more.
		case <-c.interrupted:
			return "", nil // Run sees the interrupt and stops at once
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// interrupt lets c out of wait: the master interrupted it.
func (d *donor) interrupt(c *dcmd) { c.intOnce.Do(func() { close(c.interrupted) }) }

// ended unregisters a command.
func (d *donor) ended(c *dcmd) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := c.b
	delete(b.cmds, c)
	b.lastEnd = d.clk.Now()
	if b.mode == donate.Abandoned && len(b.cmds) == 0 && b.id == "" {
		// Without a build id the next build of this builder has the same
		// key; it must not inherit the abandon.
		delete(d.builds, b.key)
	}
	d.mon.Kick()
}

// groupStarted records a command's process group and throttles it if its
// build is throttled.
func (d *donor) groupStarted(c *dcmd, pgid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.groups[pgid] = true
	if c.b.mode == donate.Throttled {
		if err := d.lim.Throttle(pgid); err != nil {
			d.log.Warn("donate: cannot throttle a new process of a throttled build", "err", err)
		}
	}
}

func (d *donor) groupEnded(c *dcmd, pgid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(c.groups, pgid)
}

// attach makes sess the session to tell about pauses.
func (d *donor) attach(s *session) {
	d.mu.Lock()
	d.sess = s
	d.mu.Unlock()
}

func (d *donor) detach(s *session) {
	d.mu.Lock()
	if d.sess == s {
		d.sess = nil
	}
	d.mu.Unlock()
}

// current returns the latest status, and whether it is a decision yet.
func (d *donor) current() (donate.Status, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status, d.decided
}

// waitAccepting blocks until the worker accepts builds or ctx ends.
func (d *donor) waitAccepting(ctx context.Context) {
	for {
		d.mu.Lock()
		ok, ch := d.decided && d.status.Accepting, d.changed
		d.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// cmdLedger records a command's process groups in the agent's ledger and
// with the donor.
type cmdLedger struct {
	inner command.ProcessLedger
	d     *donor
	c     *dcmd
}

func (l cmdLedger) Started(pgid int) {
	if l.inner != nil {
		l.inner.Started(pgid)
	}
	l.d.groupStarted(l.c, pgid)
}

func (l cmdLedger) Ended(pgid int) {
	if l.inner != nil {
		l.inner.Ended(pgid)
	}
	l.d.groupEnded(l.c, pgid)
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
