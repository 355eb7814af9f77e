package reporter

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// reportJob tells the http and mail reporters that want it about the end
// of job j. Commit-status reporters have no commit to attach a job to.
func (m *Manager) reportJob(j store.Job) {
	cfg := m.opts.Config()
	var full *store.Job
	if len(j.Platforms) > 0 {
		full = &j // as the coordinator read it when the job ended
	}
	for _, r := range cfg.Reporters {
		if r.Kind != "http" && (r.Kind != "mail" || len(r.Mail.To) == 0) {
			continue // a job has no blamelist: a mail reporter needs to=
		}
		if full == nil {
			fj, err := m.opts.Store.GetJob(m.ctx, j.ID)
			if err != nil {
				m.opts.Logger.Error("reporter: cannot read job", "job", j.ID, "err", err)
				return
			}
			full = &fj
		}
		if !jobWanted(r, full) {
			continue
		}
		var err error
		if r.Kind == "mail" {
			err = m.mailJob(cfg, r, full)
		} else {
			var req *request
			if req, err = httpRequest(cfg, r, map[string]any{"job": jobJSON(cfg, full)}); err == nil {
				err = m.retry(r, "job", full.ID, func() (bool, error) { return m.do(req) })
			}
		}
		if err != nil {
			m.opts.Logger.Error("reporter failed", "reporter", r.Kind, "at", r.Pos.String(), "job", full.ID, "name", full.Name, "err", err)
		}
	}
}

// jobWanted reports whether r reports the end of job j. A job has no
// branch and is not a build of one builder: when r names builders or tags,
// the job's farm must be among them (a farm's builders are tagged with its
// name); branches= does not apply. Mode "all" reports every job,
// "exception" none, and every other mode the failed ones.
func jobWanted(r *config.Reporter, j *store.Job) bool {
	if (len(r.Builders) > 0 || len(r.Tags) > 0) && !slices.Contains(r.Builders, j.Farm) && !slices.Contains(r.Tags, j.Farm) {
		return false
	}
	switch r.Mode {
	case "all":
		return true
	case "exception":
		return false
	}
	return j.State == store.JobFailed
}

// jobURL returns the job's page, "" without master(url=).
func jobURL(cfg *config.Config, id int64) string {
	if cfg.Master.URL == "" {
		return ""
	}
	return fmt.Sprintf("%sjobs/%d", cfg.Master.URL, id)
}

// jobPackages returns the names of the packages in the job's spec, by
// index; nil if the spec cannot be read.
func jobPackages(j *store.Job) []string {
	var spec struct {
		Packages []json.RawMessage `json:"packages"`
	}
	if json.Unmarshal(j.Spec, &spec) != nil {
		return nil
	}
	names := make([]string, len(spec.Packages))
	for i, p := range spec.Packages {
		var obj struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(p, &obj) != nil {
			_ = json.Unmarshal(p, &obj.Name) // a package given as a string
		}
		names[i] = obj.Name
	}
	return names
}

// jobJSON is the job as http_reporter posts it under "job": the store's
// fields, its platforms with their builds, and the job page's URL.
func jobJSON(cfg *config.Config, j *store.Job) map[string]any {
	pkgs := jobPackages(j)
	plats := make([]map[string]any, 0, len(j.Platforms))
	for _, p := range j.Platforms {
		builds := make([]map[string]any, 0, len(p.Builds))
		for _, b := range p.Builds {
			var res any
			if b.Complete {
				res = int(b.Results)
			}
			jb := map[string]any{
				"seq": b.Seq, "package_index": b.Package, "attempt": b.Attempt,
				"buildsetid": b.BuildsetID, "buildid": b.BuildID,
				"complete": b.Complete, "results": res,
			}
			if b.Package < len(pkgs) {
				jb["package"] = pkgs[b.Package]
			}
			builds = append(builds, jb)
		}
		plats = append(plats, map[string]any{
			"platform": p.Platform, "builderid": p.BuilderID, "builder": p.BuilderName,
			"state": p.State, "summary": p.Summary, "builds": builds,
		})
	}
	var complete any
	if !j.CompleteAt.IsZero() {
		complete = j.CompleteAt.Unix()
	}
	var spec any
	_ = json.Unmarshal(j.Spec, &spec)
	return map[string]any{
		"jobid":        j.ID,
		"farm":         j.Farm,
		"name":         j.Name,
		"submitter":    j.Submitter,
		"state":        j.State,
		"summary":      j.Summary,
		"submitted_at": j.SubmittedAt.Unix(),
		"complete_at":  complete,
		"spec":         spec,
		"platforms":    plats,
		"url":          jobURL(cfg, j.ID),
	}
}

// mailJob sends mail reporter r's report of job j. Job mails have a fixed
// form: the subject and body templates are about builds.
func (m *Manager) mailJob(cfg *config.Config, r *config.Reporter, j *store.Job) error {
	subject, body := jobMail(cfg, j)
	msg, err := composeMail(r.Mail, r.Mail.To, subject, body, [][2]string{
		{"X-Starforge-Job", fmt.Sprint(j.ID)},
		{"X-Starforge-Result", j.State},
	})
	if err != nil {
		return err
	}
	return m.retry(r, "job", j.ID, func() (bool, error) { return m.sendMail(cfg, r.Mail, msg) })
}

// jobMail returns the subject and body of the mail about job j.
func jobMail(cfg *config.Config, j *store.Job) (subject, body string) {
	subject = fmt.Sprintf("Starforge: job %d %s %s", j.ID, j.Name, j.State)
	pkgs := jobPackages(j)
	var b strings.Builder
	fmt.Fprintf(&b, "Job %d %q of farm %s", j.ID, j.Name, j.Farm)
	if j.Submitter != "" {
		fmt.Fprintf(&b, ", submitted by %s", j.Submitter)
	}
	fmt.Fprintf(&b, ", %s.\n\n", j.State)
	if u := jobURL(cfg, j.ID); u != "" {
		fmt.Fprintf(&b, "Job page:  %s\n", u)
	}
	fmt.Fprintf(&b, "Submitted: %s\n", j.SubmittedAt.UTC().Format(time.RFC1123))
	if !j.CompleteAt.IsZero() {
		fmt.Fprintf(&b, "Finished:  %s (%s)\n", j.CompleteAt.UTC().Format(time.RFC1123), j.CompleteAt.Sub(j.SubmittedAt).Round(time.Second))
	}
	if j.Summary != "" {
		fmt.Fprintf(&b, "\n%s\n", j.Summary)
	}
	b.WriteString("\nPlatforms:\n")
	for _, p := range j.Platforms {
		fmt.Fprintf(&b, "\n  %s: %s", p.Platform, p.State)
		if p.Summary != "" {
			fmt.Fprintf(&b, " (%s)", p.Summary)
		}
		b.WriteString("\n")
		for _, jb := range p.Builds {
			name := fmt.Sprintf("package %d", jb.Package+1)
			if jb.Package < len(pkgs) && pkgs[jb.Package] != "" {
				name = pkgs[jb.Package]
			}
			if jb.Attempt > 1 {
				name += fmt.Sprintf(" (attempt %d)", jb.Attempt)
			}
			res := "not finished"
			if jb.Complete {
				res = jb.Results.String()
			}
			if jb.BuildID != 0 {
				fmt.Fprintf(&b, "    %s: build %d: %s\n", name, jb.BuildID, res)
			} else {
				fmt.Fprintf(&b, "    %s: %s\n", name, res)
			}
		}
	}
	fmt.Fprintf(&b, "\n-- \n%s\n", cmp.Or(cfg.Master.Title, "Starforge"))
	return subject, b.String()
}
