package worker

import (
	"context"
	"slices"

	"github.com/starforge/starforge/worker/proto"
)

// The worker's side of the pause extension (see proto.ExtPause).

// settingsApplied notes set_worker_settings: whether the master agreed to
// the pause extension. Called on the read loop.
func (s *session) settingsApplied(msg proto.Message) {
	d := s.a.donor
	if d == nil {
		return
	}
	args, _ := msg["args"].(map[string]any)
	if slices.Contains(proto.Extensions(args[proto.KeyExtensions]), proto.ExtPause) {
		s.pauseExt.Store(true)
		s.notifyOnce.Do(func() { go s.notifier() })
		s.notifyPause()
	} else if !s.gotSettings.Load() {
		s.log.Warn("the master does not know the pause extension: this donated worker disconnects whenever it pauses")
	}
	s.gotSettings.Store(true)
	s.a.plainMaster.Store(!s.pauseExt.Load())
	d.mon.Kick()
}

// hasPause reports whether the master agreed to the pause extension.
func (s *session) hasPause() bool { return s.pauseExt.Load() }

// settingsSeen reports whether set_worker_settings arrived, so the
// extension was decided.
func (s *session) settingsSeen() bool { return s.gotSettings.Load() }

// notifyPause wakes the notifier; it never blocks.
func (s *session) notifyPause() {
	select {
	case s.pauseKick <- struct{}{}:
	default:
	}
}

// notifier sends the donor's state to the master when it changes, one
// request at a time, always the latest state (a change that happens while
// a request is out is sent after it).
func (s *session) notifier() {
	var last *proto.Pause
	for {
		select {
		case <-s.pauseKick:
		case <-s.conn.Done():
			return
		}
		st, ok := s.a.donor.current()
		if !ok {
			continue
		}
		p := proto.Pause{Paused: !st.Accepting, Reason: st.Reason}
		if st.Accepting {
			p.Reason = ""
		}
		if last != nil && *last == p {
			continue
		}
		if _, err := s.conn.Call(context.Background(), proto.OpPause, p.Fields()); err != nil {
			s.log.Warn("cannot tell the master about the pause", "err", err)
			continue
		}
		last = &p
	}
}

// abandonedReason returns why c's build was handed back, or "".
func (d *donor) abandonedReason(c *dcmd) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return c.abandoned
}
