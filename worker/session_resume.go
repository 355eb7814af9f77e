package worker

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/proto"
)

// The worker's side of the resume extension (see proto.ExtResume): when
// the connection is lost, the running commands go on for ResumeGrace, and
// the next connection takes them up where they were.

// DefaultResumeGrace is how long running commands outlive a lost
// connection by default: a 30 s network outage, with time left for the
// reconnection (tried every second meanwhile) and its handshake.
const DefaultResumeGrace = 40 * time.Second

// resumeRetry bounds the delay between connection attempts while commands
// wait for a reconnect, so that the backoff cannot outgrow the grace.
const resumeRetry = time.Second

// resumeGrace returns how long commands outlive a lost connection; 0 when
// the extension is off.
func (a *Agent) resumeGrace() time.Duration {
	switch {
	case a.ResumeGrace < 0:
		return 0
	case a.ResumeGrace == 0:
		return DefaultResumeGrace
	}
	return a.ResumeGrace
}

func (a *Agent) clock() clock.Clock {
	if a.Clock != nil {
		return a.Clock
	}
	return clock.Real
}

// lost ends the session after its connection ended by itself. The
// commands are kept for the next connection when the master agreed to
// resume them, the connection was lost to the network (not closed on
// purpose by either side) and there is something to keep; otherwise they
// are cancelled, as without the extension.
func (s *session) lost(err error) {
	cs := s.set.Load()
	grace := s.a.resumeGrace()
	if !cs.resumable() || grace <= 0 || s.hungUp.Load() || !proto.Transient(err) || cs.size() == 0 {
		cs.abort(fmt.Errorf("%w: %w", errConnLost, err))
		return
	}
	cs.mu.Lock()
	cs.sess = nil
	cs.broadcastLocked()
	n := len(cs.cmds)
	cs.mu.Unlock()
	s.log.Warn("connection lost: keeping the running commands for a reconnect", "count", n, "grace", grace, "reason", err)
	s.a.keep(cs, grace)
}

// keep holds cs until the next connection adopts it or grace passes.
func (a *Agent) keep(cs *cmdSet, grace time.Duration) {
	a.mu.Lock()
	old := a.kept
	if a.keptTimer != nil {
		a.keptTimer.Stop()
	}
	a.kept = cs
	a.keptTimer = a.clock().AfterFunc(grace, func() {
		a.mu.Lock()
		if a.kept != cs {
			a.mu.Unlock()
			return // adopted meanwhile
		}
		a.kept, a.keptTimer = nil, nil
		a.mu.Unlock()
		a.log.Warn("the master did not come back in time: cancelling the kept commands", "grace", grace)
		cs.abort(fmt.Errorf("no reconnection to the master within %s", grace))
	})
	a.mu.Unlock()
	if old != nil && old != cs {
		// Cannot happen: a kept set is adopted or dropped as soon as the
		// next connection agrees on the extension, before any command.
		go old.abort(errors.New("superseded by newer kept commands"))
	}
}

// takeKept returns the kept set, if any, and stops its timer; the caller
// owns it from then on.
func (a *Agent) takeKept() *cmdSet {
	a.mu.Lock()
	defer a.mu.Unlock()
	cs := a.kept
	if a.keptTimer != nil {
		a.keptTimer.Stop()
	}
	a.kept, a.keptTimer = nil, nil
	return cs
}

// keeping reports whether commands wait for a reconnect.
func (a *Agent) keeping() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.kept != nil
}

// dropKept cancels the kept commands, if any, and waits for them.
func (a *Agent) dropKept(why error) {
	if cs := a.takeKept(); cs != nil {
		a.log.Warn("cancelling the commands kept for a reconnect", "why", why)
		cs.abort(why)
	}
}

// resumeSettings notes set_worker_settings: whether the master agreed to
// the resume extension. A master that did not cannot take up kept
// commands: they are cancelled. Called on the read loop.
func (s *session) resumeSettings(msg proto.Message) {
	args, _ := msg["args"].(map[string]any)
	agreed := s.a.resumeGrace() > 0 && slices.Contains(proto.Extensions(args[proto.KeyExtensions]), proto.ExtResume)
	cs := s.set.Load()
	cs.mu.Lock()
	if len(cs.cmds) == 0 {
		// Fixed once a command started: its messages are numbered or not.
		cs.resume = agreed
	}
	cs.mu.Unlock()
	s.resumeExt.Store(agreed)
	if !agreed && s.a.keeping() {
		go s.a.dropKept(errors.New("the master does not resume commands"))
	}
}

// resume answers the master's starforge_resume: the kept commands the
// master lists go on over this connection (their waiting messages leave at
// once), the others are cancelled. Called on the read loop, before any
// start_command of this connection.
func (s *session) resume(msg proto.Message) (any, error) {
	listed, err := proto.DecodeResume(msg, proto.ResumeReceived)
	if err != nil {
		return nil, err
	}
	kept := s.a.takeKept()
	if kept == nil {
		if len(listed) > 0 {
			s.log.Warn("the master holds commands this worker no longer runs", "count", len(listed))
		}
		return proto.ResumeFields(proto.ResumeSent, nil), nil
	}
	fresh := s.set.Load()
	if fresh.size() > 0 {
		go kept.abort(errors.New("starforge_resume came after start_command"))
		return nil, exception("starforge_resume must come before any start_command")
	}
	want := make(map[string]int64, len(listed))
	for _, c := range listed {
		want[c.ID] = c.Count
	}
	var goOn []proto.ResumeCommand
	forgotten := 0
	kept.mu.Lock()
	for key, r := range kept.cmds {
		if _, ok := want[key]; !ok {
			r.snd.forgotten.Store(true)
			r.cancel(errForgotten)
			forgotten++
			continue
		}
		goOn = append(goOn, proto.ResumeCommand{ID: key, Count: r.snd.sent.Load()})
	}
	kept.sess = s
	kept.broadcastLocked()
	kept.mu.Unlock()
	s.set.Store(kept)
	fresh.abort(errors.New("replaced by the commands kept from the last connection"))
	sort.Slice(goOn, func(i, j int) bool { return goOn[i].ID < goOn[j].ID })
	s.log.Info("reconnected: the running commands go on", "count", len(goOn), "cancelled", forgotten)
	return proto.ResumeFields(proto.ResumeSent, goOn), nil
}
