package latent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Recover takes up what the master's previous run left: the latent
// workers it disabled, and the instances it started and never stopped
// (it crashed), which are stopped in the background by the drivers of the
// latent workers that own them. Drivers that implement Lister are asked
// too, for names the Manager gives ("<worker>-" and ten hex digits), so
// that an instance started just before a crash, or with its record lost,
// is found as well. Call it after SetConfig and before the first Start;
// it returns how many leftovers it found.
func (m *Manager) Recover(ctx context.Context) (int, error) {
	if err := m.restoreDisabled(ctx); err != nil {
		return 0, err
	}
	type leftover struct {
		name   string
		worker string
	}
	var found []leftover
	seen := map[string]bool{}
	if m.opts.Store != nil {
		recs, err := m.opts.Store.ObjectState(ctx, instancesObject)
		if err != nil {
			return 0, fmt.Errorf("latent: read instances left running: %w", err)
		}
		for _, name := range sortedKeys(recs) {
			var r instanceRecord
			if err := json.Unmarshal(recs[name], &r); err != nil {
				m.log.Warn("latent: unreadable instance record; ignoring it", "instance", name, "err", err)
				continue
			}
			found = append(found, leftover{name, r.Worker})
			seen[name] = true
		}
	}
	m.mu.Lock()
	type lister struct {
		worker string
		l      Lister
	}
	var listers []lister
	for _, name := range sortedKeys(m.workers) {
		if l, ok := m.workers[name].driver.(Lister); ok {
			listers = append(listers, lister{name, l})
		}
	}
	m.mu.Unlock()
	for _, x := range listers {
		names, err := x.l.List(ctx, x.worker+"-")
		if err != nil {
			m.log.Error("latent: cannot list instances left running", "worker", x.worker, "err", err)
			continue
		}
		for _, n := range names {
			if !seen[n] && isInstanceName(x.worker, n) {
				found = append(found, leftover{n, x.worker})
				seen[n] = true
			}
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	current := map[string]bool{}
	for _, s := range m.slots {
		if s.inst != nil {
			current[s.inst.Name] = true
		}
	}
	n := 0
	for _, lo := range found {
		if current[lo.name] {
			continue
		}
		w := m.workers[lo.worker]
		if w == nil || w.driver == nil {
			m.log.Warn("latent: instance left running by a previous run belongs to a latent worker that is not configured (or cannot be driven): stop it by hand",
				"instance", lo.name, "worker", lo.worker)
			continue
		}
		n++
		m.log.Warn("latent: stopping instance left running by a previous run", "worker", lo.worker, "instance", lo.name)
		inst := &instance{Instance: Instance{Name: lo.name, WorkerName: lo.worker}, w: w, driver: w.driver, slot: &slot{name: lo.worker}}
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			if err := m.stopDriver(inst); err != nil {
				m.log.Error("latent: cannot stop instance left running by a previous run; will try again", "instance", lo.name, "err", err)
				m.retryStop(inst)
				return
			}
			m.log.Info("latent: stopped instance left running by a previous run", "worker", lo.worker, "instance", lo.name)
		}()
	}
	return n, nil
}

// restoreDisabled reads which latent workers are disabled.
func (m *Manager) restoreDisabled(ctx context.Context) error {
	if m.opts.Store == nil {
		return nil
	}
	recs, err := m.opts.Store.ObjectState(ctx, disabledObject)
	if err != nil {
		return fmt.Errorf("latent: read disabled workers: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, raw := range recs {
		var why string
		if err := json.Unmarshal(raw, &why); err != nil || why == "" {
			why = "disabled before the master restarted"
		}
		if w := m.workers[name]; w != nil {
			w.disabled = why
		}
	}
	m.changedLocked()
	return nil
}

// isInstanceName reports whether name is one the Manager gives instances
// of latent worker worker: its name, a dash, ten lower-case hex digits.
// Another latent worker's instances ("vm-2-…" for "vm") do not match.
func isInstanceName(worker, name string) bool {
	rest, ok := strings.CutPrefix(name, worker+"-")
	if !ok || len(rest) != 10 {
		return false
	}
	for _, c := range rest {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
