package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/build"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// statusError is an error with the HTTP status the web API should answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string   { return e.msg }
func (e *statusError) HTTPStatus() int { return e.code }

func badRequest(format string, args ...any) error {
	return &statusError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// ForceSchedulers implements webui.Master.
func (m *Master) ForceSchedulers() []webui.ForceScheduler {
	var out []webui.ForceScheduler
	for _, s := range m.Config().Schedulers {
		if fs, ok := s.(*config.ForceScheduler); ok {
			out = append(out, webForceScheduler(fs))
		}
	}
	return out
}

// webForceScheduler is fs as the web UI shows and checks it.
func webForceScheduler(fs *config.ForceScheduler) webui.ForceScheduler {
	w := webui.ForceScheduler{Name: fs.Name, Label: fs.Label, Builders: fs.Builders}
	for _, p := range fs.Params {
		w.Params = append(w.Params, webui.ForceParam{
			Kind: p.Kind, Name: p.Name, Label: p.Label, Required: p.Required, Default: p.Default,
			Regex: p.Regex, Choices: p.Choices, Multiple: p.Multiple,
			Branch: p.Branch, Revision: p.Revision, Repository: p.Repository, Project: p.Project,
		})
	}
	return w
}

// Force queues a build of the requested builders through a force
// scheduler. It checks r against the scheduler's declared parameters (see
// webui.ForceScheduler.Resolve; a mistake is a 400 naming the parameter),
// sets their values and the free properties as properties with source
// "Force Build Form", and gives the buildset one source stamp per codebase
// parameter, or a single empty one when there is none. The buildset is
// stored before Force returns.
func (m *Master) Force(ctx context.Context, r webui.ForceRequest) (store.Buildset, []store.BuildRequest, error) {
	cfg := m.Config()
	var fs *config.ForceScheduler
	for _, s := range cfg.Schedulers {
		if f, ok := s.(*config.ForceScheduler); ok && f.Name == r.Scheduler {
			fs = f
		}
	}
	if fs == nil {
		return store.Buildset{}, nil, &statusError{http.StatusNotFound, fmt.Sprintf("no force scheduler named %q", r.Scheduler)}
	}
	if err := m.schedulerDisabled("force scheduler", fs.Name); err != nil {
		return store.Buildset{}, nil, err
	}
	builders := r.Builders
	if len(builders) == 0 {
		builders = fs.Builders
	}
	var ids []int64
	for _, name := range builders {
		if !contains(fs.Builders, name) {
			return store.Buildset{}, nil, badRequest("force scheduler %q does not run builder %q (it runs %s)", fs.Name, name, strings.Join(fs.Builders, ", "))
		}
		b, err := m.store.GetBuilderByName(ctx, name)
		if err != nil {
			return store.Buildset{}, nil, fmt.Errorf("force %s: %w", name, err)
		}
		ids = append(ids, b.ID)
	}
	fb, err := webForceScheduler(fs).Resolve(r)
	if err != nil {
		return store.Buildset{}, nil, err
	}
	owner := fb.Owner
	if owner == "" {
		owner = "anonymous"
	}
	reason := fb.Reason
	if reason == "" {
		reason = "forced"
	}
	props := make(map[string]store.Property, len(fb.Properties)+3)
	for k, v := range fb.Properties {
		props[k] = store.Property{Value: v, Source: "Force Build Form"}
	}
	// Set last: neither a parameter nor a free property may change them.
	props["scheduler"] = store.Property{Value: fs.Name, Source: "Scheduler"}
	props["owner"] = store.Property{Value: owner, Source: "Force Build Form"}
	props["reason"] = store.Property{Value: reason, Source: "Force Build Form"}
	stamps := fb.SourceStamps
	if len(stamps) == 0 {
		stamps = []store.SourceStamp{{}}
	}
	bs, reqs, err := m.store.AddBuildset(ctx, store.NewBuildset{
		Reason:       fmt.Sprintf("A build was forced by '%s': %s", owner, reason),
		Properties:   props,
		SourceStamps: stamps,
		BuilderIDs:   ids,
		SubmittedAt:  time.Now(),
	})
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("force: %w", err)
	}
	m.disp.Add(reqs...)
	return bs, reqs, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// StopBuild implements webui.Master.
func (m *Master) StopBuild(ctx context.Context, buildID int64, reason string) error {
	if reason == "" {
		reason = "stopped by a user"
	}
	err := m.run.Stop(buildID, reason)
	if errors.Is(err, build.ErrNotRunning) {
		if _, gerr := m.store.GetBuild(ctx, buildID); errors.Is(gerr, store.ErrNotFound) {
			return &statusError{http.StatusNotFound, fmt.Sprintf("build %d not found", buildID)}
		}
		return &statusError{http.StatusConflict, fmt.Sprintf("build %d is not running", buildID)}
	}
	return err
}

// WorkerStates implements webui.Master.
func (m *Master) WorkerStates() map[string]webui.WorkerState {
	out := map[string]webui.WorkerState{}
	running := m.runningBuilds()
	for _, s := range m.reg.Sessions() {
		out[s.Name] = webui.WorkerState{Connected: true, RunningBuilds: running[s.Name]}
	}
	m.addDonations(context.Background(), out)
	m.addPauses(context.Background(), out)
	m.addStopping(out) // ops_web.go
	m.addLatent(out)   // latent.go
	return out
}

// runningBuilds maps worker names to the ids of the builds running there.
func (m *Master) runningBuilds() map[string][]int64 {
	out := map[string][]int64{}
	builds, err := m.store.ListBuilds(context.Background(), store.BuildFilter{RunningOnly: true, Limit: 1000})
	if err != nil {
		return out
	}
	for _, b := range builds {
		out[b.WorkerName] = append(out[b.WorkerName], b.ID)
	}
	return out
}

// QueueReasons implements webui.Master. It asks the dispatcher for a
// snapshot, which it answers after handling every event sent before, so a
// request forced just before is accounted for.
func (m *Master) QueueReasons() map[int64]string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	snap, err := m.disp.Snapshot(ctx)
	if err != nil {
		return m.disp.Reasons() // stopped or slow: the last pass's view
	}
	return snap.Reasons
}

// observer relays build progress to the log and to Options.Observer.
type observer struct{ m *Master }

func (o observer) BuildStarted(b store.Build) {
	o.m.log.Info("build started", "builder", b.BuilderName, "number", b.Number, "build", b.ID, "worker", b.WorkerName)
	o.m.reports.BuildStarted(b)
	o.m.jobs.BuildStarted(b.BuildsetID) // a job moves to building
	if x := o.m.opts.Observer; x != nil {
		x.BuildStarted(b)
	}
}

func (o observer) StepChanged(id int64, s store.Step) {
	if x := o.m.opts.Observer; x != nil {
		x.StepChanged(id, s)
	}
}

func (o observer) CommandStarted(id int64, s store.Step, cmd string) {
	if x := o.m.opts.Observer; x != nil {
		x.CommandStarted(id, s, cmd)
	}
}

func (o observer) BuildFinished(b store.Build) {
	o.m.reports.BuildFinished(b)
	if x := o.m.opts.Observer; x != nil {
		x.BuildFinished(b)
	}
}
