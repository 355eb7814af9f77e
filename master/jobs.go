package master

import (
	"context"

	"github.com/starforge/starforge/master/job"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// This file wires package jobs into the master: the coordinator that
// builds them (package job) hears of completed buildsets and started
// builds, adds its buildsets to the dispatcher's queue and publishes
// finished jobs from the master's base directory.

// newJobs makes the jobs' coordinator and accepter; startJobs runs them.
func (m *Master) newJobs() *job.Coordinator {
	m.accept = job.NewAccepter(job.AcceptOptions{
		Store:      m.store,
		BaseDir:    m.opts.Basedir,
		Config:     m.Config,
		OnAccepted: m.JobAccepted,
		Logger:     m.log.With("component", "jobs"),
	})
	return job.NewCoordinator(job.CoordinatorOptions{
		Store:      m.store,
		Basedir:    m.opts.Basedir,
		Config:     m.Config,
		Queue:      m.disp,
		Logger:     m.log.With("component", "jobs"),
		OnFinished: m.jobFinished,
	})
}

// startJobs runs the coordinator and the incoming directories' watcher
// until ctx ends: the coordinator first takes up the jobs left active by
// the previous run, the watcher adopts job directories a crash left
// unstored and takes the jobs dropped while the master was down. Call it
// once the dispatcher has the pending requests. The returned channel is
// closed when both stopped.
func (m *Master) startJobs(ctx context.Context) <-chan struct{} {
	all := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if err := m.accept.Run(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("jobs: incoming directories", "err", err)
		}
	}()
	done, err := m.jobs.Start(ctx)
	if err != nil { // started twice: a bug, not a reason to stop the master
		m.log.Error("jobs", "err", err)
		d := make(chan struct{})
		close(d)
		done = d
	}
	go func() { <-done; <-watched; close(all) }()
	return all
}

// buildsetComplete is the store's OnBuildsetComplete: the schedulers
// (dependent schedulers, triggers) and the jobs both follow buildsets.
// Neither blocks.
func (m *Master) buildsetComplete(id int64, res result.Result) {
	m.sched.BuildsetComplete(id, res)
	m.jobs.BuildsetComplete(id, res)
}

// JobAccepted tells the master that job j was just stored (over HTTP, SSH
// or from an incoming directory): its builds start. It does not block.
func (m *Master) JobAccepted(j store.Job) { m.jobs.Accepted(j) }

// jobFinished is told of each job that succeeded or failed: it logs it and
// hands it to the reporters.
func (m *Master) jobFinished(j store.Job) {
	m.log.Info("job finished", "job", j.ID, "name", j.Name, "farm", j.Farm, "state", j.State, "summary", j.Summary)
	m.reports.JobFinished(j)
}
