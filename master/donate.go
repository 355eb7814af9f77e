package master

import (
	"context"
	"time"

	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/webui"
)

// A worker can be paused two ways: by a person (PauseWorker: stored, it
// survives restarts) and by a donated desktop itself while its owner is
// active (the pause extension: it lasts as long as the session says so).
// The dispatcher sees one pause, with the person's reason first.

// donorPaused is the registry's Paused hook.
func (m *Master) donorPaused(s *registry.Session, paused bool, reason string) {
	if paused {
		m.log.Info("donated worker paused itself", "worker", s.Name, "reason", reason)
	} else {
		m.log.Info("donated worker takes builds again", "worker", s.Name)
	}
	m.refreshPause(context.Background(), s.Name)
}

// refreshPause tells the dispatcher whether worker name is paused, by a
// person or by itself, and why.
func (m *Master) refreshPause(ctx context.Context, name string) {
	reason, paused := "", false
	if w, err := m.store.GetWorkerByName(ctx, name); err == nil && w.Paused {
		reason, paused = w.PauseReason, true
	}
	if s := m.reg.Get(name); s != nil {
		if p, why, _ := s.Paused(); p {
			if paused {
				reason += "; " + why
			} else {
				reason, paused = why, true
			}
		}
	}
	if paused {
		m.disp.Pause(name, reason)
	} else {
		m.disp.Unpause(name)
	}
}

// addDonations marks donated workers in states: whether each paused
// itself and why, and the build hours it has given.
func (m *Master) addDonations(ctx context.Context, states map[string]webui.WorkerState) {
	cfg := m.Config()
	var ids []int64
	byID := map[int64]string{}
	for _, w := range cfg.Workers {
		if !w.Donated {
			continue
		}
		st := states[w.Name]
		st.Donated = true
		if s := m.reg.Get(w.Name); s != nil {
			if p, why, since := s.Paused(); p {
				st.Paused, st.PauseReason = true, why
				if !since.IsZero() {
					st.PauseReason += " (since " + since.Local().Format(time.TimeOnly) + ")"
				}
			}
		}
		states[w.Name] = st
		if sw, err := m.store.GetWorkerByName(ctx, w.Name); err == nil {
			ids = append(ids, sw.ID)
			byID[sw.ID] = w.Name
		}
	}
	if len(ids) == 0 {
		return
	}
	secs, err := m.store.WorkerBuildSeconds(ctx, ids)
	if err != nil {
		m.log.Warn("read donated build time", "err", err)
		return
	}
	for id, sec := range secs {
		st := states[byID[id]]
		st.DonatedHours = sec / 3600
		states[byID[id]] = st
	}
}
