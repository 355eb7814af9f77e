package config

// validate checks what no single builtin call can: that names are unique and
// that every name refers to something declared. It runs after the whole
// configuration has executed, so that declaration order does not matter,
// and reports every problem rather than the first.
func (l *loader) validate(cfg *Config) {
	l.collectDecls(cfg)
	l.resolveFarms(cfg)      // farm.go
	l.collectGitPollers(cfg) // gitpoller.go
	l.resolveWorkerFilters(cfg)
	defer l.collectArtifactRetention(cfg) // artifacts.go: once every builder is known

	workers := make(map[string]*Worker, len(cfg.Workers))
	workerNames := make([]string, 0, len(cfg.Workers))
	for _, w := range cfg.Workers {
		if first, dup := workers[w.Name]; dup {
			l.errs.addf(w.Pos, "worker: duplicate name %q (first declared at %s)", w.Name, first.Pos)
			continue
		}
		workers[w.Name] = w
		workerNames = append(workerNames, w.Name)
	}
	latent := l.validateLatent(cfg, workers, &workerNames)

	builders := make(map[string]*Builder, len(cfg.Builders))
	builderNames := make([]string, 0, len(cfg.Builders))
	for _, b := range cfg.Builders {
		if first, dup := builders[b.Name]; dup {
			l.errs.addf(b.Pos, "builder: duplicate name %q (first declared at %s)", b.Name, first.Pos)
			continue
		}
		builders[b.Name] = b
		builderNames = append(builderNames, b.Name)
	}

	// Two builders building in the same directory of the same worker would
	// overwrite each other's files. Default directory names can collide
	// ("a/b" and "a_b"), so this is worth checking.
	type workerDir struct{ worker, dir string }
	dirs := make(map[workerDir]*Builder)
	for _, b := range cfg.Builders {
		for _, wn := range b.WorkerNames {
			if workers[wn] == nil && latent[wn] == nil {
				l.errs.addf(b.Pos, "builder %q: workers: unknown worker %q%s", b.Name, wn, didYouMean(wn, workerNames))
				continue
			}
			key := workerDir{wn, b.WorkerBuildDir}
			if first := dirs[key]; first != nil && first != b && first.Name != b.Name {
				l.errs.addf(b.Pos, "builder %q: workerbuilddir %q is also used by builder %q (%s) on worker %q",
					b.Name, b.WorkerBuildDir, first.Name, first.Pos, wn)
				break // one report per builder is enough
			}
			dirs[key] = b
		}
	}

	schedulers := make(map[string]Scheduler, len(cfg.Schedulers))
	for _, s := range cfg.Schedulers {
		d := s.(declared)
		name := s.SchedulerName()
		if first, dup := schedulers[name]; dup {
			l.errs.addf(d.pos(), "%s: duplicate name %q (first declared at %s)", d.kind(), name, first.(declared).pos())
		} else {
			schedulers[name] = s
		}
		for _, bn := range s.BuilderNames() {
			if builders[bn] == nil {
				l.errs.addf(d.pos(), "%s %q: builders: unknown builder %q%s", d.kind(), name, bn, didYouMean(bn, builderNames))
			}
		}
	}
	l.validateDependents(cfg)
	l.validateTriggers(cfg, schedulers) // trigger.go
	l.validateLocks(cfg, func(n string) bool { return workers[n] != nil || latent[n] != nil }, workerNames)
	l.validateWebAuth(cfg) // webauth.go; before validateUsers, which sees the htpasswd users
	l.validateUsers(cfg)
	l.validateDonated(cfg, workers) // donate.go
}

// declared is implemented by the schedulers (and later, other pluggable
// declarations) that the loader creates, so that validation can point at
// them without knowing their concrete types.
type declared interface {
	kind() string // the builtin that declared it, e.g. "force_scheduler"
	pos() Pos     // where it was declared
}

func (s *ForceScheduler) kind() string { return "force_scheduler" }
func (s *ForceScheduler) pos() Pos     { return s.Pos }
