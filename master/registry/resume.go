package registry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/proto"
)

// The resume extension (proto.ExtResume): when the connection of a worker
// that uses it is lost to the network, the session is held instead of
// failing its commands. The worker keeps them running; if it reconnects
// within the hold, the new connection takes the session up (its commands,
// their message counts, the builds waiting to start their next step) and
// the builds go on. Otherwise the commands fail with ErrWorkerLost, as
// without the extension, and their builds are retried.
//
// A held session is Detached (the dispatcher gives the worker no new
// build) but its builds keep their places: they have not ended, so the
// worker's slots stay taken. The next connection is Attached as usual.

// DefaultResumeMargin is how much longer than the worker's grace (its
// proto.KeyResumeGrace) the master holds a session: the worker may notice
// the loss later than the master, and needs time for its handshake.
const DefaultResumeMargin = 5 * time.Second

// defaultWorkerGrace is assumed for a worker that uses the extension
// without saying its grace; maxResumeHold bounds what a worker may ask.
const (
	defaultWorkerGrace = 40 * time.Second
	maxResumeHold      = 10 * time.Minute
)

// errReplaced closes a connection that failed to answer when its worker
// connected again: the case the extension is for, so it is held.
var errReplaced = errors.New("replaced by a new connection after failing to answer")

// errNotReported fails a held command the reconnected worker no longer
// runs. It wraps into ErrWorkerLost.
var errNotReported = errors.New("the worker no longer runs the command after reconnecting")

// resumeState is a session's part in the extension; guarded by Session.mu.
type resumeState struct {
	hold    time.Duration // how long to hold the session; 0: the extension is off
	noHold  bool          // the master closed the connection on purpose
	away    bool          // lost and held: waiting for the worker
	claimed bool          // a new connection is taking it up
	timer   clock.Timer
	settled chan struct{} // closed when an away session was taken up or given up
	next    *Session      // the session that took this one up
}

// holdFor returns how long to hold a session of a worker whose info is
// info.
func (r *Registry) holdFor(info map[string]any) time.Duration {
	g := defaultWorkerGrace
	if f, ok := proto.AsFloat(info[proto.KeyResumeGrace]); ok && f > 0 {
		g = time.Duration(f * float64(time.Second))
	}
	return min(g+r.opts.ResumeMargin, maxResumeHold)
}

// resumable reports whether the session uses the extension.
func (s *Session) resumable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resume.hold > 0
}

// holdable reports whether a session whose connection ended for reason
// is held: it uses the extension, and the connection was lost to the
// network rather than closed on purpose by either side.
func (s *Session) holdable(reason error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resume.hold <= 0 || s.resume.noHold {
		return false
	}
	return errors.Is(reason, errReplaced) || proto.Transient(reason)
}

// holdLocked marks s away and starts its hold; expire runs when it passes.
// Called with r.mu held, so that a reconnect finds it only once it is
// held.
func (s *Session) holdLocked(clk clock.Clock, expire func()) (hold time.Duration, commands int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resume.away = true
	s.resume.settled = make(chan struct{})
	s.resume.timer = clk.AfterFunc(s.resume.hold, expire)
	return s.resume.hold, len(s.commands)
}

// live returns the session to use for s's worker now: s itself, or the
// session that took it up after a reconnect. While s is away it waits. It
// fails with ErrWorkerLost when the session was lost for good.
func (s *Session) live(ctx context.Context) (*Session, error) {
	for {
		s.mu.Lock()
		lost, next, away, settled := s.lost, s.resume.next, s.resume.away, s.resume.settled
		s.mu.Unlock()
		switch {
		case next != nil:
			s = next
			continue
		case lost != nil:
			return nil, fmt.Errorf("%w: %v", ErrWorkerLost, lost)
		case !away:
			return s, nil
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// awaitSettled waits, after s's connection dropped, until the registry
// decided about s and, if it held s, until the hold ended.
func (s *Session) awaitSettled(ctx context.Context) error {
	select {
	case <-s.detached:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	settled := s.resume.settled
	s.mu.Unlock()
	if settled == nil {
		return nil
	}
	select {
	case <-settled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endHold ends an away session's hold: taken up by next, or given up for
// reason (its commands fail with ErrWorkerLost). force ends a claimed hold
// too; the timer's expiry does not.
func (s *Session) endHold(next *Session, reason error, force bool) {
	s.mu.Lock()
	if !s.resume.away || (s.resume.claimed && !force) {
		s.mu.Unlock()
		return
	}
	s.resume.away, s.resume.claimed = false, false
	if s.resume.timer != nil {
		s.resume.timer.Stop()
	}
	var cmds map[string]*RemoteCommand
	if next != nil {
		s.resume.next = next
	} else {
		s.lost = reason
		cmds = s.commands
		s.commands = map[string]*RemoteCommand{}
	}
	close(s.resume.settled)
	s.mu.Unlock()
	for _, c := range cmds {
		c.finish(fmt.Errorf("%w: %v", ErrWorkerLost, reason))
	}
}

// interruptHeld ends c at once if its session is away: nobody can tell the
// worker, which kills it when it reconnects and finds it no longer listed.
// While a reconnect is taking c up, the interrupt waits to be sent on the
// new connection. moved: c changed sessions meanwhile; ask again.
func (s *Session) interruptHeld(c *RemoteCommand, why string) (done, moved bool) {
	s.mu.Lock()
	if !s.resume.away {
		s.mu.Unlock()
		return false, false
	}
	if s.resume.claimed {
		c.mu.Lock()
		defer c.mu.Unlock()
		defer s.mu.Unlock()
		if c.session != s {
			return false, true
		}
		c.pending = why
		return true, false
	}
	held := s.commands[c.ID] == c
	if held {
		delete(s.commands, c.ID)
	}
	s.mu.Unlock()
	if held {
		s.log.Info("command interrupted while the worker is away", "command_id", c.ID, "why", why)
		c.finish(fmt.Errorf("interrupted (%s) while the worker was disconnected; the worker stops the command when it reconnects", why))
	}
	return true, false
}

// expire gives up s when its hold passed without a reconnect.
func (r *Registry) expire(s *Session) {
	r.mu.Lock()
	if r.away[s.Name] == s {
		delete(r.away, s.Name)
	}
	r.mu.Unlock()
	s.mu.Lock()
	hold, n := s.resume.hold, len(s.commands)
	s.mu.Unlock()
	if n > 0 {
		r.log.Warn("worker did not come back: its commands are lost", "worker", s.Name, "hold", hold, "commands", n)
	}
	s.endHold(nil, fmt.Errorf("the worker did not reconnect within %s", hold), false)
}

// takeAway claims the held session of the named worker, if there is one,
// for a new connection to take up; its hold no longer expires.
func (r *Registry) takeAway(name string) *Session {
	r.mu.Lock()
	old := r.away[name]
	delete(r.away, name)
	r.mu.Unlock()
	if old == nil {
		return nil
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	if !old.resume.away || old.resume.claimed {
		return nil // it expired meanwhile
	}
	old.resume.claimed = true
	old.resume.timer.Stop()
	return old
}

// giveUpAway gives up every held session, for reason.
func (r *Registry) giveUpAway(reason error) {
	r.mu.Lock()
	away := make([]*Session, 0, len(r.away))
	for name, s := range r.away {
		away = append(away, s)
		delete(r.away, name)
	}
	r.mu.Unlock()
	for _, s := range away {
		s.endHold(nil, reason, false)
	}
}

// resumeSession runs starforge_resume on a new connection s that agreed to
// the extension: it takes up the worker's held session, if any, moving the
// commands the worker still runs to s. The others fail as lost.
func (r *Registry) resumeSession(ctx context.Context, s *Session) error {
	old := r.takeAway(s.Name)
	var held []*RemoteCommand
	if old != nil {
		old.mu.Lock()
		for _, c := range old.commands {
			held = append(held, c)
		}
		old.commands = map[string]*RemoteCommand{}
		nextID := old.nextID
		old.mu.Unlock()
		sort.Slice(held, func(i, j int) bool { return idLess(held[i].ID, held[j].ID) })
		// Registered before asking: the worker's waiting messages may come
		// before its answer. New commands must not reuse the old ids.
		s.mu.Lock()
		s.nextID = max(s.nextID, nextID)
		for _, c := range held {
			s.commands[c.ID] = c
		}
		s.mu.Unlock()
	}
	req := make([]proto.ResumeCommand, len(held))
	for i, c := range held {
		req[i] = proto.ResumeCommand{ID: c.ID, Count: c.received()}
	}
	res, err := s.conn.Call(ctx, proto.OpResume, proto.ResumeFields(proto.ResumeReceived, req))
	var report []proto.ResumeCommand
	if err == nil {
		report, err = proto.DecodeResume(res, proto.ResumeSent)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", proto.OpResume, err)
		for _, c := range held {
			s.remove(c.ID)
			c.finish(fmt.Errorf("%w: %v", ErrWorkerLost, err))
		}
		if old != nil {
			old.endHold(nil, err, true)
		}
		return err
	}
	sent := make(map[string]int64, len(report))
	for _, c := range report {
		sent[c.ID] = c.Count
	}
	resumed := 0
	var interrupts []*RemoteCommand
	var whys []string
	for i, c := range held {
		n, ok := sent[c.ID]
		recv := req[i].Count
		switch {
		case !ok:
			s.remove(c.ID)
			c.finish(fmt.Errorf("%w: %w", ErrWorkerLost, errNotReported))
			continue
		case n != recv && n != recv+1:
			s.remove(c.ID)
			c.finish(fmt.Errorf("%w: the worker numbered %d messages of command %s, the master handled %d", ErrWorkerLost, n, c.ID, recv))
			continue
		}
		c.mu.Lock()
		c.session = s
		why := c.pending
		c.pending = ""
		c.mu.Unlock()
		resumed++
		if why != "" {
			interrupts = append(interrupts, c)
			whys = append(whys, why)
		}
	}
	if old != nil {
		old.endHold(s, nil, true)
		r.log.Info("worker reconnected: its commands go on", "worker", s.Name, "resumed", resumed, "lost", len(held)-resumed)
	}
	for i, c := range interrupts {
		go func() {
			ictx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Interrupt(ictx, whys[i]); err != nil {
				r.log.Warn("interrupt after reconnect", "worker", s.Name, "command_id", c.ID, "err", err)
			}
		}()
	}
	return nil
}

// idLess orders command ids numerically when they are numbers.
func idLess(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}

// seqNumber reads a numbered message's number (resume extension).
func (s *Session) seqNumber(msg proto.Message) (n int64, numbered bool, err error) {
	if !s.HasExtension(proto.ExtResume) {
		return 0, false, nil
	}
	n, numbered, err = proto.Args(msg).OptInt(proto.KeySeq)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", msg.Op(), err)
	}
	if numbered && n < 1 {
		return 0, false, fmt.Errorf("%s: %s must be positive, got %d", msg.Op(), proto.KeySeq, n)
	}
	return n, numbered, nil
}
