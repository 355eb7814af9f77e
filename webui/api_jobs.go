package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// Package jobs (see package master/job):
//
//	POST /api/v2/jobs        a tar or tar.gz of a job directory: 201 with the job
//	GET  /api/v2/jobs        ?state=, ?farm=, keyset pages newest first (before=)
//	GET  /api/v2/jobs/{id}   one job with its platforms and their builds
//
// and the pages /jobs and /jobs/{id} (page_jobs.go).

// JobSubmitter accepts package jobs: the master's job.Accepter. Submit
// reads a tar or tar.gz stream of a job directory and returns the job once
// it is stored. For a job that is invalid its error has a method
// Problems() []string, each problem naming the file and field at fault.
// It must be safe for concurrent use.
type JobSubmitter interface {
	Submit(ctx context.Context, r io.Reader, submitter string) (store.Job, error)
}

// problemsError is how a JobSubmitter says that a job is invalid.
type problemsError interface {
	error
	Problems() []string
}

// anonymousSubmitter is the submitter of a job sent while logins are off.
const anonymousSubmitter = "anonymous"

func (s *Server) jobRoutes(api, mux *http.ServeMux) {
	api.Handle("POST /api/v2/jobs", s.api(s.submitJob))
	api.Handle("GET /api/v2/jobs", s.api(s.listJobs))
	api.Handle("GET /api/v2/jobs/{id}", s.api(s.getJob))
	mux.Handle("GET /jobs", s.page(s.jobsPage))
	mux.Handle("GET /jobs/{id}", s.page(s.jobPage))
}

type jobJSON struct {
	JobID       int64           `json:"jobid"`
	Farm        string          `json:"farm"`
	Name        string          `json:"name"`
	Submitter   string          `json:"submitter"`
	State       string          `json:"state"`
	Summary     string          `json:"summary"`
	Complete    bool            `json:"complete"`
	SubmittedAt unixTime        `json:"submitted_at"`
	CompleteAt  unixTime        `json:"complete_at"`
	Spec        json.RawMessage `json:"spec"`
	// Platforms are given for one job, not in lists.
	Platforms []jobPlatformJSON `json:"platforms,omitempty"`
}

type jobPlatformJSON struct {
	Name      string `json:"name"`
	Builder   string `json:"builder"`
	BuilderID int64  `json:"builderid"`
	State     string `json:"state"`
	Summary   string `json:"summary"`
	// Status says what the platform is doing, for people.
	Status string         `json:"status"`
	Builds []jobBuildJSON `json:"builds"`
}

type jobBuildJSON struct {
	Seq          int        `json:"seq"`
	Package      string     `json:"package"`
	PackageIndex int        `json:"package_index"`
	Attempt      int        `json:"attempt"`
	BSID         int64      `json:"bsid"`
	BuildID      *int64     `json:"buildid"` // the latest build; null until one starts
	Number       *int       `json:"number"`  // its number in its builder
	Complete     bool       `json:"complete"`
	Results      resultJSON `json:"results"`
}

func toJobJSON(j store.Job) jobJSON {
	spec := json.RawMessage(j.Spec)
	if !json.Valid(spec) {
		spec = json.RawMessage("null")
	}
	return jobJSON{JobID: j.ID, Farm: j.Farm, Name: j.Name, Submitter: j.Submitter, State: j.State, Summary: j.Summary,
		Complete: !j.CompleteAt.IsZero(), SubmittedAt: unixTime(j.SubmittedAt), CompleteAt: unixTime(j.CompleteAt), Spec: spec}
}

// jobPackages returns the package names of a job's normalized spec, in
// order; nil if the spec does not say.
func jobPackages(spec []byte) []string {
	var s struct {
		Packages []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if json.Unmarshal(spec, &s) != nil {
		return nil
	}
	out := make([]string, len(s.Packages))
	for i, p := range s.Packages {
		out[i] = p.Name
	}
	return out
}

// packageLabel names package i of pkgs with its position: "libfoo (2/3)".
func packageLabel(pkgs []string, i int) string {
	if i < 0 || i >= len(pkgs) {
		return fmt.Sprintf("package #%d", i+1)
	}
	return fmt.Sprintf("%s (%d/%d)", pkgs[i], i+1, len(pkgs))
}

// platformStatus says what platform p of a job is doing, for people:
// "waiting for a worker to build hello (1/2)", "building libfoo (2/3)",
// "succeeded", "failed: ...". pkgs are the job's package names.
func platformStatus(p store.JobPlatform, pkgs []string) string {
	switch p.State {
	case store.PlatformSucceeded:
		return "succeeded"
	case store.PlatformFailed:
		switch {
		case strings.HasPrefix(p.Summary, "failed"): // the coordinator's summaries say it already
			return p.Summary
		case p.Summary != "":
			return "failed: " + p.Summary
		}
		return "failed"
	}
	if len(p.Builds) == 0 {
		return "queued"
	}
	last := p.Builds[len(p.Builds)-1]
	what := packageLabel(pkgs, last.Package)
	if last.Attempt > 1 {
		what += ", second attempt"
	}
	switch {
	case last.Complete:
		// The coordinator moves on at once; this is seen in between.
		return fmt.Sprintf("built %s: %s", what, last.Results)
	case last.BuildID == 0:
		return "waiting for a worker to build " + what
	}
	return "building " + what
}

// jobStateClass maps a job's or platform's state to the colour class of the
// results it stands for.
func jobStateClass(state string) string {
	switch state {
	case store.JobSucceeded: // also PlatformSucceeded
		return result.Success.String()
	case store.JobFailed: // also PlatformFailed
		return result.Failure.String()
	case store.JobBuilding, store.JobPublishing: // and PlatformBuilding
		return "running"
	}
	return "pending"
}

// jobDetail is a job with what its pages and API show beyond the store's
// rows: package names, statuses and build numbers.
// jobOf returns the job of the request's {id} path value, stored and as
// the API shows it.
func (s *Server) jobOf(r *http.Request) (store.Job, jobJSON, error) {
	id, err := pathID(r, "id", "job id")
	if err != nil {
		return store.Job{}, jobJSON{}, err
	}
	j, err := s.m.Store().GetJob(r.Context(), id)
	if err != nil {
		return store.Job{}, jobJSON{}, lookupErr(err, "job %d", id)
	}
	d, err := s.jobDetail(r.Context(), j)
	return j, d, err
}

func (s *Server) jobDetail(ctx context.Context, j store.Job) (jobJSON, error) {
	out := toJobJSON(j)
	pkgs := jobPackages(j.Spec)
	out.Platforms = make([]jobPlatformJSON, 0, len(j.Platforms))
	for _, p := range j.Platforms {
		pj := jobPlatformJSON{Name: p.Platform, Builder: p.BuilderName, BuilderID: p.BuilderID, State: p.State,
			Summary: p.Summary, Status: platformStatus(p, pkgs), Builds: make([]jobBuildJSON, 0, len(p.Builds))}
		for _, b := range p.Builds {
			bj := jobBuildJSON{Seq: b.Seq, PackageIndex: b.Package, Attempt: b.Attempt, BSID: b.BuildsetID,
				Complete: b.Complete, Results: resultJSON(b.Results)}
			if b.Package >= 0 && b.Package < len(pkgs) {
				bj.Package = pkgs[b.Package]
			}
			if b.BuildID != 0 {
				build, err := s.m.Store().GetBuild(ctx, b.BuildID)
				if err != nil {
					return jobJSON{}, fmt.Errorf("job %d: build %d: %w", j.ID, b.BuildID, err)
				}
				id, n := build.ID, build.Number
				bj.BuildID, bj.Number = &id, &n
			}
			pj.Builds = append(pj.Builds, bj)
		}
		out.Platforms = append(out.Platforms, pj)
	}
	return out, nil
}

// uploadLimit is the most a job upload may be: master(upload_max_size);
// 0 for no cap.
func (s *Server) uploadLimit() int64 {
	if s.auth.cfg != nil {
		if c := s.auth.cfg(); c != nil {
			return c.Master.UploadMaxSize
		}
	}
	return config.DefaultUploadMaxSize
}

// jobProblems is the body of a 400 for an invalid job.
type jobProblems struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

// POST /api/v2/jobs: the body is a tar or tar.gz of a job directory. It
// needs the force permission on the whole master (a job builds on builders
// the submitter does not choose one by one). 201 with
// {"jobs": [JOB]} and Location; 400 {"error", "problems"} for an invalid
// job, which is not stored; 413 beyond master(upload_max_size).
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) error {
	if err := allowAny(r, "force", "submit jobs"); err != nil {
		return err
	}
	if err := allow(r, "force", "", "submit jobs (that needs the force permission on every builder)"); err != nil {
		return err
	}
	if s.jobs == nil {
		return errorf(http.StatusNotImplemented, "this master accepts no jobs")
	}
	limit := s.uploadLimit()
	if limit > 0 && r.ContentLength > limit {
		return tooLarge(limit)
	}
	body := r.Body
	if limit > 0 {
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	submitter := userOf(r)
	if principalOf(r).open {
		submitter = anonymousSubmitter
	}
	j, err := s.jobs.Submit(r.Context(), body, submitter)
	var mbe *http.MaxBytesError
	var pe problemsError
	switch {
	case errors.As(err, &mbe):
		return tooLarge(limit)
	case errors.As(err, &pe):
		probs := pe.Problems()
		if probs == nil {
			probs = []string{}
		}
		writeJSON(w, http.StatusBadRequest, jobProblems{Error: fmt.Sprintf("invalid job: %s", problemsText(probs, pe)), Problems: probs})
		return nil
	case err != nil:
		if statusOf(err) < 500 {
			return err // the submitter says what is wrong
		}
		return fmt.Errorf("submit job: %w", err)
	}
	w.Header().Set("Location", "/api/v2/jobs/"+strconv.FormatInt(j.ID, 10))
	writeJSON(w, http.StatusCreated, map[string]any{"jobs": []jobJSON{toJobJSON(j)}, "meta": listMeta{Total: 1}})
	return nil
}

func tooLarge(limit int64) error {
	return errorf(http.StatusRequestEntityTooLarge, "the job is larger than the master accepts (upload_max_size %d bytes); nothing was stored", limit)
}

// problemsText is the one-line error of an invalid job.
func problemsText(probs []string, err error) string {
	switch len(probs) {
	case 0:
		return err.Error()
	case 1:
		return probs[0]
	}
	return fmt.Sprintf("%s (and %d more problems)", probs[0], len(probs)-1)
}

var jobStates = []string{store.JobQueued, store.JobBuilding, store.JobPublishing, store.JobSucceeded, store.JobFailed}

// sqlEqString returns the single value of an eq filter on string field
// name, marking it as done by SQL, or "" if there is none.
func (q *listQuery) sqlEqString(name string) string {
	for _, fl := range q.filters {
		if fl.f.name == name && (fl.op == "eq" || fl.op == "in") && len(fl.vals) == 1 {
			if v, ok := fl.vals[0].(string); ok && v != "" {
				fl.inSQL = true
				return v
			}
		}
	}
	return ""
}

// GET /api/v2/jobs with the list conventions, newest first, and
// before=ID (jobid__lt=ID). state= and farm= are applied in SQL.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[jobJSON]("jobs"), "before")
	if err != nil {
		return err
	}
	f := store.JobQuery{State: q.sqlEqString("state"), Farm: q.sqlEqString("farm")}
	if f.State != "" && !slices.Contains(jobStates, f.State) {
		return errorf(http.StatusBadRequest, "state: want one of %s, got %q", strings.Join(jobStates, ", "), f.State)
	}
	st := s.m.Store()
	l := largeList[jobJSON]{
		idField: "jobid",
		scanCap: 2000,
		fetch: func(ctx context.Context, p store.Page) ([]jobJSON, error) {
			if p.Ascending {
				return nil, errorf(http.StatusBadRequest, "order: jobs are listed newest first only (order=-jobid)")
			}
			f.Before, f.Limit = p.Before, p.Limit
			jobs, err := st.ListJobs(ctx, f)
			if err != nil {
				return nil, err
			}
			out := make([]jobJSON, 0, len(jobs))
			for _, j := range jobs {
				if j.ID <= p.After {
					break // newest first: every one after is below the bound too
				}
				out = append(out, toJobJSON(j))
			}
			return out, nil
		},
		id: func(j jobJSON) int64 { return j.JobID },
	}
	return scanList(r.Context(), w, q, l)
}

// GET /api/v2/jobs/{id}?field=
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[jobJSON]("jobs"))
	if err != nil {
		return err
	}
	_, d, err := s.jobOf(r)
	if err != nil {
		return err
	}
	writeOne(w, q, d)
	return nil
}
