// Package master wires the Starforge master together: configuration,
// store, worker registry, dispatcher, build runner and web server.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/dispatch"
	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/job"
	"github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/poller"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/reporter"
	"github.com/starforge/starforge/master/scheduler"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/master/webhook"
	"github.com/starforge/starforge/plugins/star"
	"github.com/starforge/starforge/webui"
)

// Options configure a Master.
type Options struct {
	// Basedir holds the database, uploaded files and the run/ directory.
	Basedir string
	// ConfigPath is the master.star to load; default Basedir/master.star.
	ConfigPath string
	Logger     *slog.Logger
	// ShutdownTimeout bounds how long Run waits for builds to end after its
	// context is cancelled. Default 30 s.
	ShutdownTimeout time.Duration
	// Observer, if set, is told of build progress too (benchmarks, metrics).
	Observer build.Observer
	// Clock times latent workers' instances (idle, missing, quarantine);
	// nil means the real clock.
	Clock clock.Clock
}

// Master is a running master. Its methods are safe for concurrent use.
type Master struct {
	opts    Options
	log     *slog.Logger
	cfg     atomic.Pointer[config.Config]
	store   *store.Store
	reg     *registry.Registry
	disp    *dispatch.Dispatcher
	run     *build.Runner
	web     *webui.Server
	props   *buildsetProps // buildset properties for builder functions
	sched   *scheduler.Manager
	pollers *poller.Manager
	hub     *buildHub // build progress, for followers (ops_events.go)
	ssh     sshState  // the SSH interface (ops_sshd.go)
	webOps  webOps    // the web UI's worker operations (ops_web.go)

	bus *event.Bus // live events, for the web UI (events.go)

	latent *latent.Manager // latent workers' instances (latent.go)

	reports *reporter.Manager // reporters of master.star; reads m.Config per event

	jobs   *job.Coordinator // package jobs (jobs.go)
	accept *job.Accepter    // takes jobs in: HTTP, SSH, incoming directories

	unlock func() // releases the basedir lock

	reconfigMu sync.Mutex // one reconfig at a time
	stopReq    chan *stopRequest

	mu        sync.Mutex
	status    webui.ConfigStatus // guarded by mu
	httpAddr  string
	workerURL string
	ready     chan struct{}
}

// StateFile is the database's default file name inside the basedir.
const StateFile = "state.sqlite"

// dbPath resolves master(db=...): a path relative to the basedir, an
// absolute one, or a sqlite:///path URL.
func dbPath(basedir, db string) string {
	if db == "" {
		db = StateFile
	}
	if p, ok := strings.CutPrefix(db, "sqlite://"); ok {
		db = p
	}
	if filepath.IsAbs(db) {
		return db
	}
	return filepath.Join(basedir, db)
}

// supported refuses settings the configuration language accepts but this
// master cannot honour yet, where ignoring them would be unsafe. There
// are none at the moment.
func supported(cfg *config.Config) error {
	return nil
}

// New loads the configuration and opens the store; Run starts serving.
func New(opts Options) (*Master, error) {
	if opts.Basedir == "" {
		return nil, errors.New("master: no basedir")
	}
	abs, err := filepath.Abs(opts.Basedir)
	if err != nil {
		return nil, fmt.Errorf("master: basedir: %w", err)
	}
	opts.Basedir = abs
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(abs, "master.star")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(filepath.Join(abs, "run"), 0o755); err != nil {
		return nil, fmt.Errorf("master: create basedir: %w", err)
	}
	cfg, err := config.LoadWith(opts.ConfigPath, config.Options{Library: star.Library})
	if err != nil {
		return nil, err
	}
	if err := supported(cfg); err != nil {
		return nil, err
	}
	unlock, err := lockBasedir(abs)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(dbPath(abs, cfg.Master.DB))
	if err != nil {
		unlock()
		return nil, fmt.Errorf("master: %w", err)
	}
	m := &Master{opts: opts, log: opts.Logger, store: st, unlock: unlock, ready: make(chan struct{}), stopReq: make(chan *stopRequest, 1)}
	m.cfg.Store(cfg)
	m.publishEvents()
	m.watchBuilds()
	m.status = webui.ConfigStatus{Summary: cfg.Summary(), LoadedAt: time.Now()}
	m.run = build.New(st, nil, m.Config, abs, m.log)
	m.run.Observer = observer{m}
	m.reports = reporter.New(reporter.Options{Store: st, Config: m.Config, Logger: m.log.With("component", "reporter")})
	m.disp = dispatch.New(latentStarter{m}, m.log)
	m.disp.SetHooks(m.queueHooks())
	m.latent = m.newLatent()
	m.disp.SetLatent(m.latent)
	m.run.Locks = stepLocker{m.disp}
	m.run.Queue = m.disp
	m.props = &buildsetProps{st: st, log: m.log}
	m.reg = registry.New(registry.Options{
		Credentials: m.credentials,
		Hooks:       registry.Hooks{Attached: m.attached, Detached: m.detached, Paused: m.donorPaused},
		Logger:      m.log,
		Instances:   m.latent.Login,
	})
	m.run.Sessions = m.reg
	m.sched = scheduler.New(scheduler.Options{Store: st, Queue: m.disp, Clock: clock.Real, Logger: m.log})
	m.jobs = m.newJobs()
	st.OnBuildsetComplete(m.buildsetComplete)
	m.run.Triggerer = triggerer{m}
	m.pollers = poller.NewManager(poller.Options{
		Dir: filepath.Join(abs, "gitpoller"), Sink: m, State: st, Clock: clock.Real, Logger: m.log,
		Secret: func(name string) (string, error) { return m.Config().Secret(name) },
	})
	hooks := webhook.New(webhook.Options{Hooks: m.Config, Sink: m, Poller: pollers{m.pollers}, Logger: m.log})
	m.web = webui.New(m, webui.Options{Logger: m.log, ChangeHook: hooks, Config: m.Config, Basedir: m.opts.Basedir, Jobs: m.accept})
	return m, nil
}

// Config returns the configuration in force.
func (m *Master) Config() *config.Config { return m.cfg.Load() }

// Store returns the master's store.
func (m *Master) Store() *store.Store { return m.store }

// Title implements webui.Master.
func (m *Master) Title() string { return m.Config().Master.Title }

func (m *Master) credentials(name string) (string, bool) {
	w := m.Config().Worker(name)
	if w == nil {
		return "", false
	}
	return w.Password, true
}

func (m *Master) attached(s *registry.Session) {
	if !m.latentAttached(s) { // latent.go
		return
	}
	ctx := context.Background()
	id, err := m.store.EnsureWorker(ctx, s.Name)
	if err == nil {
		err = m.store.SetWorkerConnected(ctx, id, true, s.Info(), time.Now())
	}
	if err != nil {
		m.log.Error("record worker connection", "worker", s.Name, "err", err)
	}
	m.releaseHold(s.Name) // ops_web.go
	m.disp.Attached(s.Name)
	m.publishWorker(s.Name, "connected")
}

func (m *Master) detached(s *registry.Session, reason error) {
	ctx := context.Background()
	if w, err := m.store.GetWorkerByName(ctx, s.Name); err == nil {
		if err := m.store.SetWorkerConnected(ctx, w.ID, false, nil, time.Now()); err != nil {
			m.log.Error("record worker disconnection", "worker", s.Name, "err", err)
		}
	}
	m.disp.Detached(s.Name)
	m.latent.Detached(s.Name, s)
	m.refreshPause(ctx, s.Name) // a donor's pause ends with its session
	m.publishWorker(s.Name, "disconnected")
}

// dispatchConfig extracts what the dispatcher needs from cfg. props gives
// builder functions the properties of requests' buildsets; it may be nil.
func dispatchConfig(cfg *config.Config, props *buildsetProps) dispatch.Config {
	var dc dispatch.Config
	for _, b := range cfg.Builders {
		// Donated desktops take only the builders that allow them.
		var workers []string
		for _, w := range b.WorkerNames {
			if b.AcceptsWorker(cfg.Worker(w)) {
				workers = append(workers, slotsOf(cfg, w)...) // latent.go
			}
		}
		db := dispatch.Builder{
			Name: b.Name, Workers: workers, Locks: lockAccesses(b.Locks), Priority: b.Priority,
		}
		builderFuncs(&db, cfg, b, props)
		dc.Builders = append(dc.Builders, db)
	}
	for _, w := range cfg.Workers {
		dc.Workers = append(dc.Workers, dispatch.Worker{Name: w.Name, MaxBuilds: w.MaxBuilds, Locks: lockAccesses(w.Locks)})
	}
	dc.Workers = append(dc.Workers, latentWorkers(cfg)...)
	for _, l := range cfg.Locks {
		dc.Locks = append(dc.Locks, dispatch.Lock{
			Name: l.Name, PerWorker: l.Kind == config.WorkerLock, MaxCount: l.MaxCount, MaxCountForWorker: l.MaxCountForWorker,
		})
	}
	return dc
}

func lockAccesses(as []config.LockAccess) []dispatch.LockAccess {
	var out []dispatch.LockAccess
	for _, a := range as {
		out = append(out, dispatch.LockAccess{Lock: a.Lock.Name, Exclusive: a.Mode == config.Exclusive})
	}
	return out
}

// register records the configured builders and workers in the store.
func (m *Master) register(ctx context.Context, cfg *config.Config) error {
	for _, b := range cfg.Builders {
		if _, err := m.store.EnsureBuilder(ctx, store.Builder{Name: b.Name, Description: b.Description, Tags: b.Tags}); err != nil {
			return fmt.Errorf("register builder %s: %w", b.Name, err)
		}
	}
	for _, w := range cfg.Workers {
		if _, err := m.store.EnsureWorker(ctx, w.Name); err != nil {
			return fmt.Errorf("register worker %s: %w", w.Name, err)
		}
	}
	for _, w := range latentWorkers(cfg) {
		if _, err := m.store.EnsureWorker(ctx, w.Name); err != nil {
			return fmt.Errorf("register latent worker %s: %w", w.Name, err)
		}
	}
	return nil
}

// ReconfigResult says what a successful reconfig changed.
type ReconfigResult struct {
	Summary      string   // the new configuration's one-line summary
	Cancelled    []int64  // pending requests of removed builders
	Disconnected []string // workers removed or whose password changed
}

// Reconfig loads the configuration file again and, if it is valid, swaps it
// in atomically for new builds; running builds keep the configuration they
// started with. Pending requests of builders that were removed are
// cancelled with the reason recorded; workers that were removed or whose
// password changed are disconnected. An invalid file changes nothing and
// its error is returned (and kept for the API). Reconfigs run one at a time.
func (m *Master) Reconfig(ctx context.Context) (ReconfigResult, error) {
	m.reconfigMu.Lock()
	defer m.reconfigMu.Unlock()
	now := time.Now()
	cfg, err := config.LoadWith(m.opts.ConfigPath, config.Options{Library: star.Library})
	if err == nil {
		err = supported(cfg)
	}
	if err == nil {
		err = m.register(ctx, cfg)
	}
	if err != nil {
		m.mu.Lock()
		m.status.LastError, m.status.LastErrorAt = err.Error(), now
		m.mu.Unlock()
		return ReconfigResult{}, err
	}
	old := m.cfg.Swap(cfg)
	m.latent.SetConfig(cfg.LatentWorkers)
	m.disp.SetConfig(dispatchConfig(cfg, m.props))
	m.sched.SetConfig(cfg)
	m.pollers.SetConfig(cfg.GitPollers)
	m.mu.Lock()
	m.status.LoadedAt, m.status.Summary = now, cfg.Summary()
	m.mu.Unlock()

	res := ReconfigResult{Summary: cfg.Summary()}
	removed := map[string]bool{}
	for _, b := range old.Builders {
		if cfg.Builder(b.Name) == nil {
			removed[b.Name] = true
		}
	}
	if len(removed) > 0 {
		pending, err := m.store.PendingRequests(ctx)
		if err != nil {
			m.log.Error("reconfig: read the queue to cancel removed builders' requests", "err", err)
		}
		for _, r := range pending {
			if !removed[r.BuilderName] {
				continue
			}
			why := fmt.Sprintf("builder %s was removed from the configuration at %s", r.BuilderName, now.UTC().Format(time.RFC3339))
			if _, err := m.store.CancelRequest(ctx, r.ID, why, now); err != nil {
				// Claimed meanwhile: it runs with the old configuration.
				m.log.Warn("reconfig: cancel request", "request", r.ID, "err", err)
				continue
			}
			res.Cancelled = append(res.Cancelled, r.ID)
		}
		m.disp.Remove(res.Cancelled...)
	}
	for _, w := range old.Workers {
		nw := cfg.Worker(w.Name)
		var why string
		switch {
		case nw == nil:
			why = "the worker was removed from the configuration"
		case nw.Password != w.Password:
			why = "the worker's password changed in the configuration"
		default:
			continue
		}
		if s := m.reg.Get(w.Name); s != nil {
			s.Disconnect(errors.New(why))
			res.Disconnected = append(res.Disconnected, w.Name)
		}
	}
	m.log.Info("reconfigured", "config", cfg.Path, "summary", res.Summary,
		"cancelled_requests", len(res.Cancelled), "disconnected_workers", res.Disconnected)
	return res, nil
}

// StopResult says what a stop did to the builds that were running.
type StopResult struct {
	Finished int // ended by themselves within the grace period
	Requeued int // interrupted: ended RETRY, their requests back in the queue
}

type stopRequest struct {
	grace time.Duration
	done  chan StopResult
}

// ErrStopping is returned by Stop when a stop is already under way.
var ErrStopping = errors.New("the master is already stopping")

// Stop makes Run stop: no new builds start, running builds get up to grace
// to end by themselves (zero: none), and the rest are interrupted and end
// RETRY with their requests back at the head of the queue. It returns once
// they have all ended, or when ctx ends.
func (m *Master) Stop(ctx context.Context, grace time.Duration) (StopResult, error) {
	req := &stopRequest{grace: grace, done: make(chan StopResult, 1)}
	select {
	case m.stopReq <- req:
	default:
		return StopResult{}, ErrStopping
	}
	select {
	case r := <-req.done:
		return r, nil
	case <-ctx.Done():
		return StopResult{}, ctx.Err()
	}
}

// ConfigStatus implements webui.Master: which configuration is in force
// and how the last reconfig went.
func (m *Master) ConfigStatus() webui.ConfigStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.status
	st.Path = m.opts.ConfigPath
	return st
}

// HTTPAddr returns the web server's address once Run listens ("" before).
func (m *Master) HTTPAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.httpAddr
}

// WorkerAddr returns the worker listener's address once Run listens.
func (m *Master) WorkerAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.workerURL
}

// Ready is closed once Run listens on both ports.
func (m *Master) Ready() <-chan struct{} { return m.ready }

// Run serves until ctx ends, then stops: running builds are interrupted
// and end RETRY with their requests back at the head of the queue, so a
// restarted master runs them again.
func (m *Master) Run(ctx context.Context) error {
	defer m.unlock()
	defer m.store.Close()
	defer m.reports.Close() // before the store closes
	cfg := m.Config()
	stats, err := m.store.Recover(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("master: recover: %w", err)
	}
	if stats.Builds > 0 || stats.Requests > 0 {
		m.log.Info("recovered after an unclean stop", "builds_marked_retry", stats.Builds, "requests_requeued", stats.Requests)
	}
	if err := m.register(ctx, cfg); err != nil {
		return fmt.Errorf("master: %w", err)
	}
	pending, err := m.store.PendingRequests(ctx)
	if err != nil {
		return fmt.Errorf("master: read queue: %w", err)
	}

	wl, err := net.Listen("tcp", cfg.Master.WorkerAddr)
	if err != nil {
		return fmt.Errorf("master: worker port: %w", err)
	}
	hl, err := net.Listen("tcp", cfg.Master.HTTPAddr)
	if err != nil {
		wl.Close()
		return fmt.Errorf("master: web port: %w", err)
	}
	stopOps, err := m.startOps(ctx, cfg) // paused workers; the SSH server
	if err != nil {
		wl.Close()
		hl.Close()
		return fmt.Errorf("master: %w", err)
	}
	defer stopOps()
	m.mu.Lock()
	m.workerURL = wl.Addr().String()
	m.httpAddr = hl.Addr().String()
	m.mu.Unlock()
	if err := m.writeRunFiles(); err != nil {
		m.log.Warn("write run files", "err", err)
	}
	stopControl, err := m.serveControl(ctx)
	if err != nil {
		m.log.Warn("starforge reconfig is unavailable; SIGHUP still reconfigures", "err", err)
		stopControl = func() {}
	}
	defer stopControl()

	m.latent.SetConfig(cfg.LatentWorkers)
	if n, err := m.latent.Recover(ctx); err != nil {
		m.log.Error("latent workers: cannot take up the previous run's state", "err", err)
	} else if n > 0 {
		m.log.Warn("latent workers: stopping instances left running by the previous run", "instances", n)
	}

	dctx, stopDispatch := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() { m.disp.Run(dctx); close(dispatched) }()
	m.disp.SetConfig(dispatchConfig(cfg, m.props))
	m.disp.Add(pending...)

	// Schedulers before change sources: a change the pollers find at launch
	// must meet its scheduler.
	srcCtx, stopSources := context.WithCancel(context.Background())
	var sources sync.WaitGroup
	m.sched.SetConfig(cfg)
	sources.Go(func() {
		if err := m.sched.Run(srcCtx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("schedulers stopped", "err", err)
		}
	})
	// Jobs after the dispatcher has the pending requests: the steps the
	// coordinator adds as it takes up active jobs are not queued twice.
	jobsDone := m.startJobs(srcCtx)
	sources.Go(func() { <-jobsDone })
	m.pollers.SetConfig(cfg.GitPollers)
	sources.Go(func() {
		if err := m.pollers.Run(srcCtx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("pollers stopped", "err", err)
		}
	})
	defer func() { stopSources(); sources.Wait() }()
	defer m.startArtifactJanitor()() // artifacts.go

	workerSrv := &http.Server{Handler: m.reg, ReadHeaderTimeout: 10 * time.Second}
	webSrv := &http.Server{Handler: m.web.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- serve(workerSrv, wl) }()
	go func() { errc <- serve(webSrv, hl) }()
	m.log.Info("master running", "config", cfg.Path, "summary", cfg.Summary(),
		"workers_at", m.workerURL, "web_ui", "http://"+m.httpAddr+"/", "queued", len(pending))
	close(m.ready)

	var runErr error
	var stop *stopRequest
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case stop = <-m.stopReq:
	}
	stopOps() // SSH sessions end first, telling their users why
	// Stop assigning first: a runner that is shutting down hands requests
	// straight back, and a live dispatcher would offer them again at once.
	stopDispatch()
	running := len(m.run.Running())
	if stop != nil && stop.grace > 0 && running > 0 {
		m.log.Info("master stopping: waiting for running builds", "running", running, "up_to", stop.grace)
		t := time.NewTimer(stop.grace)
		select {
		case <-dispatched: // every build ended by itself
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	requeued := len(m.run.Running())
	m.log.Info("master stopping", "interrupting_builds", requeued)
	sctx, cancel := context.WithTimeout(context.Background(), m.opts.ShutdownTimeout)
	defer cancel()
	_ = webSrv.Shutdown(sctx)
	if err := m.run.Shutdown(sctx, "master shutting down"); err != nil {
		m.log.Warn("builds still running at shutdown", "err", err)
	}
	<-dispatched // returns once every build it started has ended
	if err := m.latent.Close(sctx); err != nil {
		m.log.Warn("latent instances still running at shutdown; the next start stops them", "err", err)
	}
	// No more events: the web UI's live streams end.
	m.bus.Close()
	if stop != nil {
		stop.done <- StopResult{Finished: running - requeued, Requeued: requeued}
	}
	_ = workerSrv.Close()
	m.reg.Close()
	os.Remove(filepath.Join(m.opts.Basedir, "run", "http.addr"))
	os.Remove(filepath.Join(m.opts.Basedir, "run", "worker.addr"))
	return runErr
}

func serve(s *http.Server, l net.Listener) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// writeRunFiles records the listening addresses, so scripts and tests that
// asked for port 0 can find the master.
func (m *Master) writeRunFiles() error {
	dir := filepath.Join(m.opts.Basedir, "run")
	if err := os.WriteFile(filepath.Join(dir, "worker.addr"), []byte(m.WorkerAddr()+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "http.addr"), []byte(m.HTTPAddr()+"\n"), 0o644)
}
