package latent

import "time"

// SlotState is what a slot is doing, for the web UI and the API.
type SlotState struct {
	Worker   string // the latent worker the slot belongs to
	State    State
	Instance string    // the instance's name; "" when stopped
	Since    time.Time // when the instance entered State; zero when stopped
	Why      string    // while stopping: why
	Builds   int       // builds running on the instance

	// Of the latent worker as a whole:
	Failures    int       // in a row
	LastError   string    // the last failure, while failures count
	Quarantined time.Time // no instance starts before; zero if none
	Disabled    string    // why it is disabled; "" if it is not
}

// States returns the state of every configured slot, by slot name.
func (m *Manager) States() map[string]SlotState {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	out := make(map[string]SlotState, len(m.slots))
	for name, s := range m.slots {
		w := s.w
		st := SlotState{Worker: w.cfg.Name, State: Stopped, Failures: w.failures, LastError: w.lastErr, Disabled: w.disabled}
		if q := w.quarantined; !q.IsZero() && now.Before(q) {
			st.Quarantined = q
		}
		if s.announcing {
			st.State = Stopping
		}
		if inst := s.inst; inst != nil {
			st.State, st.Instance, st.Since, st.Builds = inst.state, inst.Name, inst.since, inst.busy
			if inst.state == Stopping {
				st.Why = inst.why
			}
		}
		out[name] = st
	}
	return out
}
