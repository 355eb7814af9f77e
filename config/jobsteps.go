package config

import (
	"fmt"

	"go.starlark.net/starlark"
)

// jobStepKinds are the steps of package farm builds: job_download() and
// job_upload(). They read the build's job properties (job_dir,
// job_files, job_platform) when they run.
var jobStepKinds = []*stepKind{
	{
		name:   "job_download",
		params: []param{{name: "dest"}},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &JobDownloadAction{}
			a.Dest, a.DestR = c.strR("dest", DefaultJobDest, true)
			return a, nil
		},
	},
	{
		name:   "job_upload",
		params: []param{{name: "workersrc", required: true, positional: true}},
		action: func(c *call) (StepAction, []starlark.Value) {
			a := &JobUploadAction{}
			a.WorkerSrc, a.WorkerSrcR = c.strR("workersrc", "", true)
			return a, []starlark.Value{reprArg(a.WorkerSrc, a.WorkerSrcR)}
		},
	},
}

// DefaultJobDest is job_download()'s default dest.
const DefaultJobDest = "job"

// JobDownloadAction is job_download(dest="job"): it downloads the files of
// the build's package (job_files, from BASEDIR/job_dir/input) into
// WORKDIR/dest, keeping their relative paths, and every file the job's
// earlier builds stored for the platform (BASEDIR/job_dir/repo/
// job_platform) into WORKDIR/dest/repo.
type JobDownloadAction struct {
	Dest  string // relative to the step's workdir
	DestR Renderable
}

// JobUploadAction is job_upload(workersrc): it uploads a directory of the
// worker into BASEDIR/job_dir/repo/job_platform, beside what is there
// already, and records each file as an artifact of the build.
type JobUploadAction struct {
	WorkerSrc  string // relative to the step's workdir unless absolute
	WorkerSrcR Renderable
}

// Kind implements StepAction.
func (*JobDownloadAction) Kind() string { return "job_download" }

// Kind implements StepAction.
func (*JobUploadAction) Kind() string { return "job_upload" }

// Render returns a with its renderable arguments rendered for env.
func (a *JobDownloadAction) Render(env *BuildEnv) (*JobDownloadAction, error) {
	out := &JobDownloadAction{Dest: a.Dest}
	if a.DestR != nil {
		v, err := a.DestR.Render(env)
		if err != nil {
			return nil, fmt.Errorf("dest: %w", err)
		}
		out.Dest = v
	}
	return out, nil
}

// Render returns a with its renderable arguments rendered for env.
func (a *JobUploadAction) Render(env *BuildEnv) (*JobUploadAction, error) {
	out := &JobUploadAction{WorkerSrc: a.WorkerSrc}
	if a.WorkerSrcR != nil {
		v, err := a.WorkerSrcR.Render(env)
		if err != nil {
			return nil, fmt.Errorf("workersrc: %w", err)
		}
		out.WorkerSrc = v
	}
	return out, nil
}
