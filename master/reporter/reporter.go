// Package reporter tells the outside world about builds and package jobs:
// it posts commit statuses to GitHub, Gitea and GitLab, pushes builds and
// jobs as JSON to any HTTP endpoint and mails them over SMTP, as the
// reporters of master.star ask (see config.Reporter).
//
// A Manager is fed build events from the build path and never blocks it:
// events go into a bounded queue, and one goroutine looks up what it needs
// in the store and sends, retrying failures. When the queue is full, new
// events are dropped and logged.
package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// Store is what a Manager reads from the master's store.
type Store interface {
	GetBuilder(ctx context.Context, id int64) (store.Builder, error)
	GetBuildset(ctx context.Context, id int64) (store.Buildset, error)
	BuildProperties(ctx context.Context, id int64) (map[string]store.Property, error)
	ListBuilds(ctx context.Context, f store.BuildFilter) ([]store.Build, error)
	// For mails: the changes, failed steps and log tail, and jobs.
	BuildsetChanges(ctx context.Context, bsid int64) ([]store.Change, error)
	ListSteps(ctx context.Context, buildID int64) ([]store.Step, error)
	ListLogs(ctx context.Context, stepID int64) ([]store.Log, error)
	ReadLog(ctx context.Context, logID int64, first, last int, w io.Writer) (int, error)
	GetJob(ctx context.Context, id int64) (store.Job, error)
}

// Options configure a Manager. Store and Config are required.
type Options struct {
	Store  Store
	Config func() *config.Config // the current configuration; called per event
	Logger *slog.Logger          // default slog.Default()
	Client *http.Client          // default: one with a 30 s timeout
	// QueueSize bounds the events waiting to be reported (default 1000).
	QueueSize int
	// Attempts is how many times a request is tried (default 4).
	Attempts int
	// Backoff is the wait before retry number n (1, 2, ...); default 2^(n-1) s.
	Backoff func(n int) time.Duration
	// SMTPTimeout bounds one attempt at sending a mail (default 2 minutes).
	SMTPTimeout time.Duration
}

// Manager reports builds to the configured reporters. Its methods are safe
// for concurrent use.
type Manager struct {
	opts   Options
	queue  chan event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.RWMutex // write-held to close queue; read-held to send on it
	closed bool
}

type event struct {
	b        store.Build
	job      *store.Job // non-nil: a job's end, not a build event
	finished bool
	flushed  chan struct{} // non-nil: a Flush marker, closed when reached
}

// New starts a Manager. Call Close to stop it.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1000
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.SMTPTimeout <= 0 {
		opts.SMTPTimeout = 2 * time.Minute
	}
	if opts.Backoff == nil {
		opts.Backoff = func(n int) time.Duration { return time.Second << min(n-1, 6) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{opts: opts, queue: make(chan event, opts.QueueSize), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go m.loop()
	return m
}

// BuildStarted queues a report of b's start. It never blocks.
func (m *Manager) BuildStarted(b store.Build) { m.enqueue(event{b: b}) }

// BuildFinished queues a report of b's end. It never blocks.
func (m *Manager) BuildFinished(b store.Build) { m.enqueue(event{b: b, finished: true}) }

// JobFinished queues a report of the end of package job j (succeeded or
// failed). It never blocks. A j with its platforms (what the coordinator
// gives) is reported as it is; one with only its ID is read from the store.
func (m *Manager) JobFinished(j store.Job) { m.enqueue(event{job: &j, finished: true}) }

func (m *Manager) enqueue(e event) {
	if len(m.opts.Config().Reporters) == 0 {
		return
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return
	}
	select {
	case m.queue <- e:
	default:
		if e.job != nil {
			m.opts.Logger.Warn("reporter queue full: job event dropped", "job", e.job.ID, "name", e.job.Name)
			break
		}
		m.opts.Logger.Warn("reporter queue full: build event dropped", "build", e.b.ID, "builder", e.b.BuilderName, "finished", e.finished)
	}
}

// Flush waits until every event queued before it has been reported (or
// given up on), or until ctx is done.
func (m *Manager) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return errors.New("reporter: closed")
	}
	select {
	case m.queue <- event{flushed: ch}:
	case <-ctx.Done():
		m.mu.RUnlock()
		return ctx.Err()
	}
	m.mu.RUnlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the Manager: requests in flight are abandoned and queued
// events dropped. It waits for the sending goroutine to end.
func (m *Manager) Close() {
	m.cancel() // first: the loop then drains the queue without sending, so a Flush blocked on it gets through
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.queue)
	}
	m.mu.Unlock()
	<-m.done
}

func (m *Manager) loop() {
	defer close(m.done)
	for e := range m.queue {
		if e.flushed != nil {
			close(e.flushed)
			continue
		}
		if m.ctx.Err() != nil {
			continue
		}
		if e.job != nil {
			m.reportJob(*e.job)
			continue
		}
		m.report(e)
	}
}

// info is what the reporters need to know about a build beyond store.Build.
type info struct {
	b          store.Build
	finished   bool
	tags       []string
	props      map[string]store.Property
	branches   []string
	revision   string
	repository string
	prev       result.Result // the builder's previous finished build, None if none
	url        string        // the build's page
	reason     string        // the buildset's
}

func (m *Manager) report(e event) {
	cfg := m.opts.Config()
	var in *info
	for _, r := range cfg.Reporters {
		if !e.finished && (r.Mode != "all" || r.Kind == "mail") {
			continue // only "all" reports starts, and never by mail
		}
		if len(r.Builders) > 0 && !slices.Contains(r.Builders, e.b.BuilderName) {
			continue
		}
		if in == nil {
			var err error
			if in, err = m.gather(cfg, e); err != nil {
				m.opts.Logger.Error("reporter: cannot read build", "build", e.b.ID, "err", err)
				return
			}
		}
		if !wanted(r, in) {
			continue
		}
		if err := m.send(cfg, r, in); err != nil {
			m.opts.Logger.Error("reporter failed", "reporter", r.Kind, "at", r.Pos.String(), "build", e.b.ID, "builder", e.b.BuilderName, "err", err)
		}
	}
}

func (m *Manager) gather(cfg *config.Config, e event) (*info, error) {
	ctx := m.ctx
	in := &info{b: e.b, finished: e.finished, prev: result.None}
	bl, err := m.opts.Store.GetBuilder(ctx, e.b.BuilderID)
	if err != nil {
		return nil, fmt.Errorf("builder %d: %w", e.b.BuilderID, err)
	}
	in.tags = bl.Tags
	if in.props, err = m.opts.Store.BuildProperties(ctx, e.b.ID); err != nil {
		return nil, fmt.Errorf("properties: %w", err)
	}
	if e.b.BuildsetID != 0 {
		bs, err := m.opts.Store.GetBuildset(ctx, e.b.BuildsetID)
		if err != nil {
			return nil, fmt.Errorf("buildset %d: %w", e.b.BuildsetID, err)
		}
		in.reason = bs.Reason
		for _, ss := range bs.SourceStamps {
			if ss.Branch != "" {
				in.branches = append(in.branches, ss.Branch)
			}
			if in.revision == "" && ss.Revision != "" {
				in.revision = ss.Revision
			}
			if in.repository == "" && ss.Repository != "" {
				in.repository = ss.Repository
			}
		}
	}
	if s := propString(in.props, "branch"); s != "" && !slices.Contains(in.branches, s) {
		in.branches = append(in.branches, s)
	}
	// got_revision is what the build really checked out; the source stamp
	// may name only a branch.
	if s := propString(in.props, "got_revision"); s != "" {
		in.revision = s
	} else if in.revision == "" {
		in.revision = propString(in.props, "revision")
	}
	if in.repository == "" {
		in.repository = propString(in.props, "repository")
	}
	if e.finished {
		prev, err := m.opts.Store.ListBuilds(ctx, store.BuildFilter{BuilderID: e.b.BuilderID, Before: e.b.ID, Limit: 20})
		if err != nil {
			return nil, fmt.Errorf("previous builds: %w", err)
		}
		for _, p := range prev {
			if p.Results != result.None {
				in.prev = p.Results
				break
			}
		}
	}
	if base := cfg.Master.URL; base != "" {
		in.url = fmt.Sprintf("%sbuilders/%d/builds/%d", base, e.b.BuilderID, e.b.Number)
	}
	return in, nil
}

// propString returns property name as a string, "" if it is not one. A
// map (got_revision per codebase) yields its first non-empty string value
// in key order.
func propString(props map[string]store.Property, name string) string {
	switch v := props[name].Value.(type) {
	case string:
		return v
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if s, ok := v[k].(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

// wanted reports whether r reports the build in, by tags, branches and mode.
func wanted(r *config.Reporter, in *info) bool {
	if len(r.Tags) > 0 && !slices.ContainsFunc(in.tags, func(t string) bool { return slices.Contains(r.Tags, t) }) {
		return false
	}
	if len(r.Branches) > 0 && !slices.ContainsFunc(in.branches, func(b string) bool { return slices.Contains(r.Branches, b) }) {
		return false
	}
	if !in.finished {
		return r.Mode == "all"
	}
	return modeWants(r.Mode, in.b.Results, in.prev)
}

// modeWants reports whether mode reports a finished build with result res
// whose builder's previous finished build had prev (None if none).
func modeWants(mode string, res, prev result.Result) bool {
	switch mode {
	case "all":
		return true
	case "failing":
		return res == result.Failure
	case "problem":
		return res == result.Failure && (prev == result.Success || prev == result.Warnings)
	case "change":
		return prev != result.None && res != prev
	case "warnings":
		return res == result.Warnings || res == result.Failure
	case "exception":
		return res == result.Exception
	}
	return false
}

// send makes r's request about in, retrying network errors and 5xx/429
// answers with backoff.
func (m *Manager) send(cfg *config.Config, r *config.Reporter, in *info) error {
	if r.Kind == "mail" {
		msg, err := m.buildMail(cfg, r, in)
		if err != nil {
			return err
		}
		return m.retry(r, "build", in.b.ID, func() (bool, error) { return m.sendMail(cfg, r.Mail, msg) })
	}
	req, err := buildRequest(cfg, r, in)
	if err != nil {
		return err
	}
	if req == nil {
		return nil
	}
	return m.retry(r, "build", in.b.ID, func() (bool, error) { return m.do(req) })
}

// retry calls try until it succeeds, fails for good (retry false) or has
// been called Options.Attempts times, waiting Options.Backoff in between.
// Each failure that will be retried is logged with what (such as "build")
// and id.
func (m *Manager) retry(r *config.Reporter, what string, id int64, try func() (retry bool, err error)) error {
	var last error
	for attempt := 1; attempt <= m.opts.Attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(m.opts.Backoff(attempt - 1))
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
				return fmt.Errorf("abandoned at shutdown after %d attempts: %w", attempt-1, last)
			}
		}
		retry, err := try()
		if err == nil {
			return nil
		}
		last = err
		if !retry {
			return err
		}
		if attempt == m.opts.Attempts {
			break
		}
		m.opts.Logger.Warn("reporter: will retry", "reporter", r.Kind, "at", r.Pos.String(), what, id, "attempt", attempt, "err", err)
	}
	return fmt.Errorf("gave up after %d attempts: %w", m.opts.Attempts, last)
}

// request is one HTTP request to make, possibly several times.
type request struct {
	url    string
	header http.Header
	body   []byte
}

func (m *Manager) do(rq *request) (retry bool, err error) {
	req, err := http.NewRequestWithContext(m.ctx, http.MethodPost, rq.url, bytes.NewReader(rq.body))
	if err != nil {
		return false, err
	}
	req.Header = rq.header.Clone()
	resp, err := m.opts.Client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	err = fmt.Errorf("POST %s: %s: %s", redact(rq.url), resp.Status, strings.TrimSpace(string(snippet)))
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, err
}

// redact drops any user info and query from u, where a token might hide.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(bad url)"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

// buildRequest returns the request r makes about in, or nil when there is
// nothing to send (a status for a build without a revision).
func buildRequest(cfg *config.Config, r *config.Reporter, in *info) (*request, error) {
	if r.Kind == "http" {
		return httpRequest(cfg, r, buildJSON(in))
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "starforge")
	secret := func(name string) (string, error) {
		v, err := cfg.Secret(name)
		if err != nil {
			return "", fmt.Errorf("reporter %s: %w", r.Kind, err)
		}
		return v, nil
	}

	if in.revision == "" || in.repository == "" {
		return nil, nil // nothing to attach a status to
	}
	path, err := repoPath(in.repository)
	if err != nil {
		return nil, err
	}
	token, err := secret(r.Token)
	if err != nil {
		return nil, err
	}
	st := statusBody{
		State:       state(r.Kind, in),
		TargetURL:   in.url,
		Description: description(in),
	}
	ctxName := strings.ReplaceAll(r.Context, "BUILDER", in.b.BuilderName)
	sha := url.PathEscape(in.revision)
	var u string
	switch r.Kind {
	case "github":
		st.Context = ctxName
		h.Set("Authorization", "Bearer "+token)
		h.Set("Accept", "application/vnd.github+json")
		u = fmt.Sprintf("%s/repos/%s/statuses/%s", r.URL, path, sha)
	case "gitea":
		st.Context = ctxName
		h.Set("Authorization", "token "+token)
		u = fmt.Sprintf("%s/api/v1/repos/%s/statuses/%s", r.URL, path, sha)
	case "gitlab":
		st.Name = ctxName
		h.Set("PRIVATE-TOKEN", token)
		u = fmt.Sprintf("%s/api/v4/projects/%s/statuses/%s", r.URL, strings.ReplaceAll(url.PathEscape(path), "/", "%2F"), sha)
	default:
		return nil, fmt.Errorf("unknown reporter kind %q", r.Kind)
	}
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return &request{url: u, header: h, body: body}, nil
}

// httpRequest returns the request of http_reporter r posting v as JSON.
func httpRequest(cfg *config.Config, r *config.Reporter, v any) (*request, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "starforge")
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	for k, name := range r.SecretHeaders {
		v, err := cfg.Secret(name)
		if err != nil {
			return nil, fmt.Errorf("reporter %s: %w", r.Kind, err)
		}
		h.Set(k, v)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("as JSON: %w", err)
	}
	return &request{url: r.URL, header: h, body: body}, nil
}

type statusBody struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description"`
	Context     string `json:"context,omitempty"` // GitHub, Gitea
	Name        string `json:"name,omitempty"`    // GitLab
}

// state maps the build's result to the service's status state.
func state(kind string, in *info) string {
	res := in.b.Results
	if !in.finished {
		res = result.None
	}
	if kind == "gitlab" {
		switch res {
		case result.None:
			return "running"
		case result.Success, result.Warnings:
			return "success"
		case result.Cancelled, result.Skipped:
			return "canceled"
		}
		return "failed"
	}
	switch res {
	case result.None:
		return "pending"
	case result.Success, result.Warnings:
		return "success"
	case result.Failure:
		return "failure"
	}
	return "error"
}

func description(in *info) string {
	if !in.finished {
		return fmt.Sprintf("Build #%d started", in.b.Number)
	}
	return fmt.Sprintf("Build #%d: %s", in.b.Number, in.b.Results)
}

// repoPath returns "owner/repo" (or "group/sub/repo") from a repository URL
// in https://host/owner/repo(.git), ssh://git@host/owner/repo.git or
// git@host:owner/repo.git form.
func repoPath(repo string) (string, error) {
	var p string
	if u, err := url.Parse(repo); err == nil && u.Scheme != "" && u.Host != "" {
		p = u.Path
	} else if at, colon := strings.Index(repo, "@"), strings.Index(repo, ":"); colon > 0 && (at < 0 || at < colon) && !strings.Contains(repo[:colon], "/") {
		p = repo[colon+1:]
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	if strings.Count(p, "/") < 1 || strings.Contains(p, "//") {
		return "", fmt.Errorf("repository %q: cannot tell owner/repo from it", repo)
	}
	return p, nil
}

// buildJSON is the build as the HTTP reporter posts it: the REST API's
// fields plus the builder's name, the result's name, the properties and
// the build page's URL.
func buildJSON(in *info) map[string]any {
	b := in.b
	props := make(map[string][2]any, len(in.props))
	for k, p := range in.props {
		props[k] = [2]any{p.Value, p.Source}
	}
	ts := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Unix()
	}
	var res any
	if in.finished {
		res = int(b.Results)
	}
	return map[string]any{
		"buildid":        b.ID,
		"number":         b.Number,
		"builderid":      b.BuilderID,
		"builder":        b.BuilderName,
		"buildrequestid": b.RequestID,
		"buildsetid":     b.BuildsetID,
		"workerid":       b.WorkerID,
		"worker":         b.WorkerName,
		"started_at":     ts(b.StartedAt),
		"complete_at":    ts(b.CompleteAt),
		"complete":       in.finished,
		"state_string":   b.StateString,
		"results":        res,
		"result":         map[bool]string{true: b.Results.String(), false: "pending"}[in.finished],
		"properties":     props,
		"tags":           in.tags,
		"url":            in.url,
	}
}
