package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
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
			out = append(out, webui.ForceScheduler{Name: fs.Name, Label: fs.Label, Builders: fs.Builders})
		}
	}
	return out
}

// Force queues a build of the requested builders through a force
// scheduler. The buildset is stored before Force returns.
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
	owner := r.Owner
	if owner == "" {
		owner = "anonymous"
	}
	reason := r.Reason
	if reason == "" {
		reason = "forced"
	}
	props := map[string]store.Property{
		"scheduler": {Value: fs.Name, Source: "Scheduler"},
		"owner":     {Value: owner, Source: "Force Build Form"},
		"reason":    {Value: reason, Source: "Force Build Form"},
	}
	keys := make([]string, 0, len(r.Properties))
	for k := range r.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validPropName(k) {
			return store.Buildset{}, nil, badRequest("property name %q: use letters, digits, '_', '-' and '.'", k)
		}
		props[k] = store.Property{Value: r.Properties[k], Source: "Force Build Form"}
	}
	bs, reqs, err := m.store.AddBuildset(ctx, store.NewBuildset{
		Reason:       fmt.Sprintf("A build was forced by '%s': %s", owner, reason),
		Properties:   props,
		SourceStamps: []store.SourceStamp{{}},
		BuilderIDs:   ids,
		SubmittedAt:  time.Now(),
	})
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("force: %w", err)
	}
	m.disp.Add(reqs...)
	return bs, reqs, nil
}

func validPropName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
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
	if x := o.m.opts.Observer; x != nil {
		x.BuildFinished(b)
	}
}
