package webui

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// jobsPageSize is how many jobs /jobs shows at a time.
const jobsPageSize = 50

// maxPublishLog bounds the part of a job's publish.log its page shows:
// the end, where a failure is explained.
const maxPublishLog = 256 << 10

type jobsData struct {
	layout
	Jobs   []jobRow
	State  string   // the state filter, "" for all
	Farm   string   // the farm filter, "" for all
	States []string // the choices of the state filter
	Older  string   // the link to the next page, "" on the last
}

type jobRow struct {
	Job   store.Job
	Class string // colour of its state
}

// GET /jobs: the jobs, newest first, a page at a time (?before=ID), with
// ?state= and ?farm= filters.
func (s *Server) jobsPage(w http.ResponseWriter, r *http.Request) error {
	qs := r.URL.Query()
	d := jobsData{layout: layout{Site: s.m.Title(), Title: "Jobs", Nav: "jobs", Refresh: 5},
		State: qs.Get("state"), Farm: qs.Get("farm"), States: jobStates}
	if d.State != "" && !slices.Contains(jobStates, d.State) {
		return errorf(http.StatusBadRequest, "state: want one of %s, got %q", strings.Join(jobStates, ", "), d.State)
	}
	var before int64
	if b := qs.Get("before"); b != "" {
		v, err := strconv.ParseInt(b, 10, 64)
		if err != nil || v < 1 {
			return badParam("before", "a positive job id", b)
		}
		before = v
	}
	jobs, err := s.m.Store().ListJobs(r.Context(), store.JobQuery{State: d.State, Farm: d.Farm, Before: before, Limit: jobsPageSize + 1})
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	if len(jobs) > jobsPageSize {
		jobs = jobs[:jobsPageSize]
		next := url.Values{"before": {strconv.FormatInt(jobs[len(jobs)-1].ID, 10)}}
		if d.State != "" {
			next.Set("state", d.State)
		}
		if d.Farm != "" {
			next.Set("farm", d.Farm)
		}
		d.Older = "/jobs?" + next.Encode()
	}
	for _, j := range jobs {
		d.Jobs = append(d.Jobs, jobRow{Job: j, Class: jobStateClass(j.State)})
	}
	return s.render(w, http.StatusOK, "jobs", d)
}

type jobData struct {
	layout
	Job        jobJSON
	Class      string
	Submitted  time.Time
	Completed  time.Time
	Platforms  []jobPlatformRow
	PublishLog string
	LogCut     bool // PublishLog is the end of a longer file
}

type jobPlatformRow struct {
	jobPlatformJSON
	Class  string
	Builds []jobBuildRow
}

type jobBuildRow struct {
	jobBuildJSON
	Class string
	URL   string // the build's page; "" until it starts
}

// GET /jobs/{id}: one row per platform with its state, what it is doing
// and its builds (linked to their pages, where the logs are), the job's
// summary and its publish log.
func (s *Server) jobPage(w http.ResponseWriter, r *http.Request) error {
	j, detail, err := s.jobOf(r)
	if err != nil {
		return err
	}
	refresh := 5
	if !j.CompleteAt.IsZero() {
		refresh = 0 // nothing changes any more
	}
	d := jobData{layout: layout{Site: s.m.Title(), Title: fmt.Sprintf("Job %d %s", j.ID, j.Name), Nav: "jobs", Refresh: refresh},
		Job: detail, Class: jobStateClass(j.State), Submitted: j.SubmittedAt, Completed: j.CompleteAt}
	for _, p := range detail.Platforms {
		row := jobPlatformRow{jobPlatformJSON: p, Class: jobStateClass(p.State)}
		for _, b := range p.Builds {
			br := jobBuildRow{jobBuildJSON: b, Class: statusClass(result.Result(b.Results), b.BuildID != nil, b.Complete)}
			if b.Number != nil {
				br.URL = fmt.Sprintf("/builders/%d/builds/%d", p.BuilderID, *b.Number)
			}
			row.Builds = append(row.Builds, br)
		}
		d.Platforms = append(d.Platforms, row)
	}
	if d.PublishLog, d.LogCut, err = s.publishLog(j.Dir); err != nil {
		s.log.Warn("webui: reading a job's publish log", "job", j.ID, "err", err)
	}
	return s.render(w, http.StatusOK, "job", d)
}

// publishLog returns the end of BASEDIR/dir/publish.log, "" if there is
// none, and whether it was cut.
func (s *Server) publishLog(dir string) (string, bool, error) {
	if s.basedir == "" || dir == "" || !filepath.IsLocal(filepath.FromSlash(dir)) {
		return "", false, nil
	}
	f, err := os.Open(filepath.Join(s.basedir, filepath.FromSlash(dir), "publish.log"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, err
	}
	cut := fi.Size() > maxPublishLog
	if cut {
		if _, err := f.Seek(fi.Size()-maxPublishLog, io.SeekStart); err != nil {
			return "", false, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPublishLog))
	if err != nil {
		return "", false, err
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), cut, nil
}
