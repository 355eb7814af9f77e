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

// newJobs makes the jobs' coordinator; startJobs runs it.
func (m *Master) newJobs() *job.Coordinator {
	return job.NewCoordinator(job.CoordinatorOptions{
		Store:      m.store,
		Basedir:    m.opts.Basedir,
		Config:     m.Config,
		Queue:      m.disp,
		Logger:     m.log.With("component", "jobs"),
		OnFinished: m.jobFinished,
	})
}

// startJobs runs the coordinator until ctx ends: it first takes up the
// jobs left active by the previous run. Call it once the dispatcher has
// the pending requests. The returned channel is closed when it stopped.
func (m *Master) startJobs(ctx context.Context) <-chan struct{} {
	done, err := m.jobs.Start(ctx)
	if err != nil { // started twice: a bug, not a reason to stop the master
		m.log.Error("jobs", "err", err)
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return done
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
//
// TODO(lead): pass m.JobAccepted as the job.Accepter's OnAccepted when the
// Accepter is wired.
func (m *Master) JobAccepted(j store.Job) { m.jobs.Accepted(j) }

// jobFinished is told of each job that succeeded or failed: it logs it and
// hands it to the reporters.
func (m *Master) jobFinished(j store.Job) {
	m.log.Info("job finished", "job", j.ID, "name", j.Name, "farm", j.Farm, "state", j.State, "summary", j.Summary)
	m.reports.JobFinished(j)
}
