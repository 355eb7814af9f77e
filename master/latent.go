package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/dispatch"
	"github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"

	drivers "github.com/starforge/starforge/plugins/latent"
)

// Latent workers: the Manager (master/latent) owns their instances; each
// slot of a latent worker is a worker to the dispatcher, the registry and
// the store. This file wires the Manager to the rest of the master.

// newLatent makes the master's latent worker Manager.
func (m *Master) newLatent() *latent.Manager {
	return latent.New(latent.Options{
		Dispatcher: m.disp,
		NewDriver:  m.latentDriver,
		MasterAddr: m.instanceMasterAddr,
		Store:      m.store,
		GiveUp:     func(slot string, reason error) { m.reg.GiveUp(slot, reason) },
		Changed:    func(slot string) { m.publishWorker(slot, "state_updated") },
		Clock:      m.opts.Clock,
		Logger:     m.log,
	})
}

// latentDriver makes the driver of latent worker w (plugins/latent).
func (m *Master) latentDriver(w *config.LatentWorker) (latent.Driver, error) {
	dir := m.opts.Basedir
	if p := m.Config().Path; p != "" {
		dir = filepath.Dir(p)
	}
	return drivers.New(drivers.Env{Worker: w, Basedir: m.opts.Basedir, ConfigDir: dir, Logger: m.log.With("worker", w.Name),
		Secret: func(name string) (string, error) { return m.Config().Secret(name) }})
}

// instanceMasterAddr is the worker port as an instance on this machine
// dials it: a wildcard listen address becomes the loopback address.
func (m *Master) instanceMasterAddr() string {
	addr := m.WorkerAddr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// latentStarter runs builds for the dispatcher: on a latent slot, only
// while its instance runs, which then does not count as idle.
type latentStarter struct{ m *Master }

func (s latentStarter) RunBuild(req store.BuildRequest, worker string) bool {
	if s.m.latent.IsSlot(worker) {
		release, ok := s.m.latent.Acquire(worker)
		if !ok {
			return true // its instance is stopping: the request waits
		}
		requeue := s.m.run.RunBuild(req, worker)
		release(!requeue)
		return requeue
	}
	return s.m.run.RunBuild(req, worker)
}

// latentAttached tells the Manager of a slot's new session; false means
// the session was refused and closed.
func (m *Master) latentAttached(s *registry.Session) bool {
	if !m.latent.IsSlot(s.Name) || m.latent.Attached(s.Name, s) {
		return true
	}
	s.Disconnect(errors.New("this latent instance is being stopped"))
	return false
}

// addLatent adds the state of every latent slot to states.
func (m *Master) addLatent(states map[string]webui.WorkerState) {
	for name, ls := range m.latent.States() {
		st := states[name]
		st.Latent = &webui.LatentState{
			Worker: ls.Worker, State: string(ls.State), Instance: ls.Instance, Since: ls.Since, Why: ls.Why,
			Failures: ls.Failures, LastError: ls.LastError, QuarantinedUntil: ls.Quarantined, Disabled: ls.Disabled,
		}
		states[name] = st
	}
}

// EnableWorker enables latent worker name (or the latent worker of slot
// name) again after failures disabled it; reason is logged. Other workers
// are refused (409), unknown names are 404.
func (m *Master) EnableWorker(ctx context.Context, name, reason string) error {
	cfg := m.Config()
	lw := latent.WorkerOf(name)
	if cfg.LatentWorker(lw) == nil {
		if cfg.Worker(name) != nil {
			return conflictf("worker %s is not a latent worker: only latent workers are disabled by failures (unpause it instead if it is paused)", name)
		}
		return notFoundf("no latent worker named %q in the configuration", name)
	}
	if err := m.latent.Enable(ctx, lw); err != nil {
		if errors.Is(err, latent.ErrNoWorker) {
			return notFoundf("no latent worker named %q in the configuration", lw)
		}
		return fmt.Errorf("enable worker %s: %w", lw, err)
	}
	m.log.Info("latent worker enabled", "worker", lw, "reason", reason)
	return nil
}

// slotsOf returns the workers the dispatcher knows for a worker name a
// builder lists: a latent worker's slots, or the name itself.
func slotsOf(cfg *config.Config, name string) []string {
	if lw := cfg.LatentWorker(name); lw != nil {
		return latent.Slots(lw)
	}
	return []string{name}
}

// latentWorkers returns the slots of cfg's latent workers as the
// dispatcher's workers: one build at a time each.
func latentWorkers(cfg *config.Config) []dispatch.Worker {
	var out []dispatch.Worker
	for _, lw := range cfg.LatentWorkers {
		for _, slot := range latent.Slots(lw) {
			out = append(out, dispatch.Worker{Name: slot, MaxBuilds: 1, Latent: lw.Name})
		}
	}
	return out
}
