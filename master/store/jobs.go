package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/starforge/starforge/master/result"
)

// Job states. A job is JobQueued until its first build starts, JobBuilding
// until every platform has finished, JobPublishing while its publish step
// runs, and then JobSucceeded or JobFailed for good.
const (
	JobQueued     = "queued"
	JobBuilding   = "building"
	JobPublishing = "publishing"
	JobSucceeded  = "succeeded"
	JobFailed     = "failed"
)

// Platform states of a job: pending until its first build starts, then
// building, then succeeded or failed.
const (
	PlatformPending   = "pending"
	PlatformBuilding  = "building"
	PlatformSucceeded = "succeeded"
	PlatformFailed    = "failed"
)

// Job is a package job: files and metadata submitted once, built on every
// platform it names (one builder each), then published.
type Job struct {
	ID        int64
	Farm      string // the package_farm() that builds it
	Name      string
	Submitter string
	// Spec is the job's metadata as JSON, as package job validated it. The
	// store keeps it opaque.
	Spec []byte
	// Dir is where the master keeps the job's files, relative to its base
	// directory.
	Dir         string
	State       string // one of the Job* states
	Summary     string // for people: what happened, such as which platform failed
	SubmittedAt time.Time
	CompleteAt  time.Time // zero until the job succeeded or failed

	// Platforms are filled by GetJob and ActiveJobs, ordered by name.
	Platforms []JobPlatform
}

// JobPlatform is one platform a job builds on.
type JobPlatform struct {
	Platform    string
	BuilderID   int64
	BuilderName string
	State       string // one of the Platform* states
	Summary     string
	// Builds are this platform's buildsets in the order they were made.
	Builds []JobBuild
}

// JobBuild is one buildset of a job: one package (by its index in the job's
// spec) on one platform.
type JobBuild struct {
	Seq        int // position in the platform's chain, from 0
	Package    int // index of the package in the job's spec
	Attempt    int // 1, or 2 for a retry at the end
	BuildsetID int64
	// Complete and Results are the buildset's; BuildID is its latest build,
	// 0 while none has started.
	Complete bool
	Results  result.Result
	BuildID  int64
}

// JobLink, set on NewBuildset.Job, records the buildset as step Seq of a
// job's chain on Platform, in the transaction that adds the buildset. Adding
// the same step twice fails, so a coordinator that repeats itself after a
// crash cannot build a package twice.
type JobLink struct {
	JobID    int64
	Platform string
	Seq      int
	Package  int
	Attempt  int
}

// AddJob stores j (State JobQueued; ID, timestamps and platform states are
// set here) with its platforms, in one transaction, and returns it with its
// id. Every platform must name an existing builder.
func (s *Store) AddJob(ctx context.Context, j Job) (Job, error) {
	if j.Farm == "" || j.Name == "" || j.Dir == "" || len(j.Spec) == 0 {
		return Job{}, fmt.Errorf("store: add job: farm, name, dir and spec are required")
	}
	if len(j.Platforms) == 0 {
		return Job{}, fmt.Errorf("store: add job %q: no platforms", j.Name)
	}
	j.State, j.CompleteAt = JobQueued, time.Time{}
	j.SubmittedAt = time.UnixMicro(orNow(j.SubmittedAt).UnixMicro()).UTC()
	plats := make([]JobPlatform, len(j.Platforms))
	copy(plats, j.Platforms)
	j.Platforms = plats
	err := s.write(ctx, len(j.Spec)+256, func(tx *wtx) error {
		if err := tx.queryRow(`INSERT INTO jobs (farm, name, submitter, spec, dir, state, summary, submitted_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			j.Farm, j.Name, j.Submitter, string(j.Spec), j.Dir, j.State, j.Summary, j.SubmittedAt.UnixMicro()).Scan(&j.ID); err != nil {
			return err
		}
		for i := range j.Platforms {
			p := &j.Platforms[i]
			p.State, p.Builds = PlatformPending, nil
			if err := tx.queryRow(`SELECT name FROM builders WHERE id = ?`, p.BuilderID).Scan(&p.BuilderName); err != nil {
				return fmt.Errorf("platform %q: builder %d: %w", p.Platform, p.BuilderID, notFound(err))
			}
			if _, err := tx.exec(`INSERT INTO job_platforms (jobid, platform, builderid, state, summary)
				VALUES (?, ?, ?, ?, ?)`, j.ID, p.Platform, p.BuilderID, p.State, p.Summary); err != nil {
				return fmt.Errorf("platform %q: %w", p.Platform, err)
			}
		}
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("store: add job %q: %w", j.Name, err)
	}
	return j, nil
}

const jobCols = `id, farm, name, submitter, spec, dir, state, summary, submitted_at, complete_at FROM jobs`

func scanJob(r rowScanner) (Job, error) {
	var j Job
	var spec string
	var submitted int64
	var complete sql.NullInt64
	if err := r.Scan(&j.ID, &j.Farm, &j.Name, &j.Submitter, &spec, &j.Dir, &j.State, &j.Summary, &submitted, &complete); err != nil {
		return Job{}, err
	}
	j.Spec = []byte(spec)
	j.SubmittedAt = time.UnixMicro(submitted).UTC()
	j.CompleteAt = fromMicros(complete)
	return j, nil
}

// GetJob returns job id with its platforms and their builds.
func (s *Store) GetJob(ctx context.Context, id int64) (Job, error) {
	j, err := scanJob(s.queryRow(ctx, `SELECT `+jobCols+` WHERE id = ?`, id))
	if err != nil {
		return Job{}, fmt.Errorf("store: get job %d: %w", id, notFound(err))
	}
	if j.Platforms, err = s.jobPlatforms(ctx, id); err != nil {
		return Job{}, fmt.Errorf("store: get job %d: %w", id, err)
	}
	return j, nil
}

func (s *Store) jobPlatforms(ctx context.Context, id int64) ([]JobPlatform, error) {
	rows, err := s.query(ctx, `SELECT jp.platform, jp.builderid, b.name, jp.state, jp.summary
		FROM job_platforms jp JOIN builders b ON b.id = jp.builderid
		WHERE jp.jobid = ? ORDER BY jp.platform`, id)
	if err != nil {
		return nil, fmt.Errorf("platforms: %w", err)
	}
	var out []JobPlatform
	idx := map[string]int{}
	for rows.Next() {
		var p JobPlatform
		if err := rows.Scan(&p.Platform, &p.BuilderID, &p.BuilderName, &p.State, &p.Summary); err != nil {
			rows.Close()
			return nil, fmt.Errorf("platforms: %w", err)
		}
		idx[p.Platform] = len(out)
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("platforms: %w", err)
	}
	rows, err = s.query(ctx, `SELECT jb.platform, jb.seq, jb.package, jb.attempt, jb.buildsetid, bs.complete, bs.results,
			(SELECT MAX(b.id) FROM buildrequests br JOIN builds b ON b.buildrequestid = br.id WHERE br.buildsetid = jb.buildsetid)
		FROM job_builds jb JOIN buildsets bs ON bs.id = jb.buildsetid
		WHERE jb.jobid = ? ORDER BY jb.platform, jb.seq`, id)
	if err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var plat string
		var b JobBuild
		var res, build sql.NullInt64
		if err := rows.Scan(&plat, &b.Seq, &b.Package, &b.Attempt, &b.BuildsetID, &b.Complete, &res, &build); err != nil {
			return nil, fmt.Errorf("builds: %w", err)
		}
		b.Results, b.BuildID = fromResult(res), build.Int64
		if i, ok := idx[plat]; ok {
			out[i].Builds = append(out[i].Builds, b)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("builds: %w", err)
	}
	return out, nil
}

// JobQuery selects jobs for ListJobs: newest first, with ids below Before
// when it is not 0, in the given State when it is not empty, at most Limit
// (default 50).
type JobQuery struct {
	State  string
	Farm   string
	Before int64
	Limit  int
}

// ListJobs returns the jobs q selects, newest first, without their
// platforms.
func (s *Store) ListJobs(ctx context.Context, q JobQuery) ([]Job, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.query(ctx, `SELECT `+jobCols+` WHERE id < ? AND (? = '' OR state = ?) AND (? = '' OR farm = ?)
		ORDER BY id DESC LIMIT ?`, before, q.State, q.State, q.Farm, q.Farm, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list jobs: %w", err)
	}
	return out, nil
}

// ActiveJobs returns every job not yet complete (queued, building or
// publishing), oldest first, with platforms and builds: what a coordinator
// resumes after a restart.
func (s *Store) ActiveJobs(ctx context.Context) ([]Job, error) {
	rows, err := s.query(ctx, `SELECT `+jobCols+` WHERE complete_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: active jobs: %w", err)
	}
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: active jobs: %w", err)
		}
		out = append(out, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: active jobs: %w", err)
	}
	for i := range out {
		if out[i].Platforms, err = s.jobPlatforms(ctx, out[i].ID); err != nil {
			return nil, fmt.Errorf("store: active jobs: job %d: %w", out[i].ID, err)
		}
	}
	return out, nil
}

// JobUpdate changes a job's state in one transaction: the job's own state
// and summary when State is not empty, and the listed platforms'.
// Moving to JobSucceeded or JobFailed records the completion time; a
// complete job is never changed again (ErrJobComplete).
type JobUpdate struct {
	State     string
	Summary   string
	Platforms []PlatformUpdate
}

// PlatformUpdate is the new state and summary of one platform of a job.
type PlatformUpdate struct {
	Platform, State, Summary string
}

// ErrJobComplete is returned by UpdateJob for a job that already succeeded
// or failed.
var ErrJobComplete = fmt.Errorf("job already complete")

// UpdateJob applies u to job id.
func (s *Store) UpdateJob(ctx context.Context, id int64, u JobUpdate) error {
	err := s.write(ctx, 128, func(tx *wtx) error {
		var complete sql.NullInt64
		if err := tx.queryRow(`SELECT complete_at FROM jobs WHERE id = ?`, id).Scan(&complete); err != nil {
			return notFound(err)
		}
		if complete.Valid {
			return ErrJobComplete
		}
		for _, p := range u.Platforms {
			res, err := tx.exec(`UPDATE job_platforms SET state = ?, summary = ? WHERE jobid = ? AND platform = ?`,
				p.State, p.Summary, id, p.Platform)
			if err != nil {
				return fmt.Errorf("platform %q: %w", p.Platform, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("platform %q: %w", p.Platform, ErrNotFound)
			}
		}
		if u.State == "" {
			return nil
		}
		var done any
		if u.State == JobSucceeded || u.State == JobFailed {
			done = time.Now().UnixMicro()
		}
		_, err := tx.exec(`UPDATE jobs SET state = ?, summary = ?, complete_at = ? WHERE id = ?`, u.State, u.Summary, done, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: update job %d: %w", id, err)
	}
	return nil
}

// JobOfBuildset returns the job link of buildset id; ok is false if the
// buildset is not part of a job.
func (s *Store) JobOfBuildset(ctx context.Context, id int64) (l JobLink, ok bool, err error) {
	err = s.queryRow(ctx, `SELECT jobid, platform, seq, package, attempt FROM job_builds WHERE buildsetid = ?`, id).
		Scan(&l.JobID, &l.Platform, &l.Seq, &l.Package, &l.Attempt)
	if err == sql.ErrNoRows {
		return JobLink{}, false, nil
	}
	if err != nil {
		return JobLink{}, false, fmt.Errorf("store: job of buildset %d: %w", id, err)
	}
	return l, true, nil
}

// linkJob records l for buildset bsid inside an AddBuildset transaction.
func (tx *wtx) linkJob(l *JobLink, bsid int64) error {
	if _, err := tx.exec(`INSERT INTO job_builds (jobid, platform, seq, package, attempt, buildsetid)
		VALUES (?, ?, ?, ?, ?, ?)`, l.JobID, l.Platform, l.Seq, l.Package, l.Attempt, bsid); err != nil {
		return fmt.Errorf("job %d platform %q step %d: %w", l.JobID, l.Platform, l.Seq, err)
	}
	return nil
}
