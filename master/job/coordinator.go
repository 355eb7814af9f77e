package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// Queue takes the build requests of the buildsets a Coordinator adds: the
// dispatcher.
type Queue interface {
	Add(reqs ...store.BuildRequest)
}

// PublishFunc runs a job's publish step; Publish is the real one.
type PublishFunc func(ctx context.Context, basedir string, j store.Job, platforms []string, p *config.Publish) error

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	Store *store.Store
	// Basedir is the master's base directory; store.Job.Dir is relative
	// to it.
	Basedir string
	// Config returns the configuration in force: a job's farm (its publish
	// step) is looked up in it when the job is ready to publish.
	Config func() *config.Config
	// Queue gets the requests of every buildset the coordinator adds.
	Queue  Queue
	Logger *slog.Logger // nil: slog.Default()
	// OnFinished, if set, is called with a job (platforms and builds
	// included) once it succeeded or failed, from the coordinator's
	// goroutine: it must not block for long.
	OnFinished func(store.Job)
	// Publish runs publish steps; nil means Publish.
	Publish PublishFunc
	// RetryDelay is how long the coordinator waits before looking at
	// every active job again after the store refused something; default
	// 30s.
	RetryDelay time.Duration
}

// A Coordinator sees package jobs through: it makes each platform's chain
// of buildsets, one package after the other, decides from each completed
// buildset what comes next (Decide), and once every platform has finished
// either publishes the job (all succeeded) or fails it.
//
// Concurrency: Accepted, BuildsetComplete and BuildStarted only queue an
// event and return at once, so they may be called from any goroutine,
// including the store's OnBuildsetComplete hook. One goroutine, started by
// Start, takes the events in order and makes every decision, reading the
// job afresh from the store each time, so no two decisions about a job
// ever race. Publish steps run in goroutines of their own (one per job)
// and report back to that goroutine, so a long publish holds no other job
// up.
//
// Every decision is a function of what the store holds, so repeating one is
// harmless: a step is linked to its buildset in the buildset's
// transaction, and a step that exists already is never added again. This
// is what makes Start's reconciliation after a restart safe.
type Coordinator struct {
	st        *store.Store
	basedir   string
	cfg       func() *config.Config
	q         Queue
	log       *slog.Logger
	onFinish  func(store.Job)
	publishFn PublishFunc
	retry     time.Duration

	wake chan struct{}

	mu      sync.Mutex
	events  []event
	started bool

	// Owned by the goroutine of Start.
	publishing map[int64]bool // jobs whose publish step runs now
	pubs       sync.WaitGroup
	retryT     *time.Timer
}

type event struct {
	all       bool          // look at every active job
	job       int64         // look at this job
	buildset  int64         // look at the job of this buildset, if any
	published *published    // a publish step ended
	flushed   chan struct{} // closed once the events before it are handled
}

type published struct {
	job int64
	err error
}

// NewCoordinator returns a coordinator; Start runs it.
func NewCoordinator(o CoordinatorOptions) *Coordinator {
	c := &Coordinator{st: o.Store, basedir: o.Basedir, cfg: o.Config, q: o.Queue, log: o.Logger,
		onFinish: o.OnFinished, publishFn: o.Publish, retry: o.RetryDelay,
		wake: make(chan struct{}, 1), publishing: map[int64]bool{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.publishFn == nil {
		c.publishFn = Publish
	}
	if c.retry <= 0 {
		c.retry = 30 * time.Second
	}
	return c
}

// Start reconciles every active job with the store (making the steps that
// are missing, finishing the platforms and jobs whose chains are done,
// publishing again a job that was publishing when the master stopped) and
// then handles events until ctx ends. It returns at once; Done is closed
// when the coordinator has stopped. Events that came before Start are
// handled after the reconciliation. Start the coordinator after the
// dispatcher has the queue's pending requests, so the requests it adds are
// not read twice.
func (c *Coordinator) Start(ctx context.Context) (done <-chan struct{}, err error) {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return nil, errors.New("job: coordinator started twice")
	}
	c.started = true
	c.events = append([]event{{all: true}}, c.events...)
	c.mu.Unlock()
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		c.run(ctx)
	}()
	c.poke()
	return ch, nil
}

// Accepted tells the coordinator that job j was stored: it makes the
// first step of every platform. It does not block.
func (c *Coordinator) Accepted(j store.Job) { c.enqueue(event{job: j.ID}) }

// BuildsetComplete tells the coordinator that buildset id completed with
// res; if the buildset is a step of a job, the next step follows. It does
// not block: call it from store.OnBuildsetComplete.
func (c *Coordinator) BuildsetComplete(id int64, res result.Result) {
	c.enqueue(event{buildset: id})
}

// BuildStarted tells the coordinator that a build of buildset id started;
// if it is a job's, the job and the platform are marked building. It does
// not block.
func (c *Coordinator) BuildStarted(buildsetID int64) {
	if buildsetID != 0 {
		c.enqueue(event{buildset: buildsetID})
	}
}

func (c *Coordinator) enqueue(ev event) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	c.poke()
}

func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flush returns once every event queued before it has been handled.
func (c *Coordinator) flush(ctx context.Context) error {
	ch := make(chan struct{})
	c.enqueue(event{flushed: ch})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Coordinator) run(ctx context.Context) {
	defer func() {
		if c.retryT != nil {
			c.retryT.Stop()
		}
		c.pubs.Wait() // they end with ctx
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		evs := c.events
		c.events = nil
		c.mu.Unlock()
		for _, ev := range evs {
			if ctx.Err() != nil {
				return
			}
			c.handle(ctx, ev)
		}
	}
}

func (c *Coordinator) handle(ctx context.Context, ev event) {
	var err error
	switch {
	case ev.flushed != nil:
		close(ev.flushed)
	case ev.all:
		err = c.reconcileAll(ctx)
	case ev.job != 0:
		err = c.reconcile(ctx, ev.job)
	case ev.buildset != 0:
		var l store.JobLink
		var ok bool
		l, ok, err = c.st.JobOfBuildset(ctx, ev.buildset)
		if err == nil && ok {
			err = c.reconcile(ctx, l.JobID)
		}
	case ev.published != nil:
		err = c.finishPublish(ctx, *ev.published)
	}
	if err != nil && ctx.Err() == nil {
		c.log.Error("jobs: cannot go on; trying again later", "err", err, "in", c.retry)
		if c.retryT == nil {
			c.retryT = time.AfterFunc(c.retry, func() { c.enqueue(event{all: true}) })
		} else {
			c.retryT.Reset(c.retry)
		}
	}
}

func (c *Coordinator) reconcileAll(ctx context.Context) error {
	jobs, err := c.st.ActiveJobs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if err := c.reconcileJob(ctx, j); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Coordinator) reconcile(ctx context.Context, id int64) error {
	j, err := c.st.GetJob(ctx, id)
	if err != nil {
		return err
	}
	return c.reconcileJob(ctx, j)
}

// reconcileJob brings job j, as the store has it, one decision further:
// the next step of every platform that needs one, the platforms that
// finished, the job itself once they all have.
func (c *Coordinator) reconcileJob(ctx context.Context, j store.Job) error {
	switch j.State {
	case store.JobSucceeded, store.JobFailed:
		return nil
	case store.JobPublishing:
		c.startPublish(ctx, j)
		return nil
	}
	spec, err := parseSpec(j.Spec)
	if err != nil {
		return c.finish(ctx, j, store.JobUpdate{State: store.JobFailed,
			Summary: fmt.Sprintf("the stored job.json is unusable: %v; nothing published", err)})
	}
	var u store.JobUpdate
	var failures []string
	allDone, started := true, false
	for _, p := range j.Platforms {
		platStarted := false
		for _, b := range p.Builds {
			platStarted = platStarted || b.BuildID != 0
		}
		started = started || platStarted
		d := Decide(spec.OnFailure, len(spec.Packages), p.Builds)
		state, summary := p.State, p.Summary
		switch d.State {
		case ChainWaiting:
			allDone = false
		case ChainNext:
			allDone = false
			if err := c.addStep(ctx, j, spec, p, d.Next); err != nil {
				return err
			}
		case ChainSucceeded:
			state, summary = store.PlatformSucceeded, "succeeded"
		case ChainFailed:
			state, summary = store.PlatformFailed, "failed: "+describeFailures(spec, d.Failed)
			failures = append(failures, "failed on "+p.Platform+": "+describeFailures(spec, d.Failed))
		}
		if state == store.PlatformPending && platStarted {
			state = store.PlatformBuilding
		}
		if state != p.State || summary != p.Summary {
			u.Platforms = append(u.Platforms, store.PlatformUpdate{Platform: p.Platform, State: state, Summary: summary})
		}
	}
	switch {
	case allDone && len(failures) > 0:
		u.State, u.Summary = store.JobFailed, strings.Join(failures, "; ")+"; nothing published"
		return c.finish(ctx, j, u)
	case allDone:
		pub, err := c.publishStep(j.Farm)
		if err != nil {
			u.State, u.Summary = store.JobFailed, fmt.Sprintf("publish failed: %v", err)
			return c.finish(ctx, j, u)
		}
		if pub == nil {
			u.State, u.Summary = store.JobSucceeded, fmt.Sprintf("succeeded on %s; nothing to publish", platforms(len(j.Platforms)))
			return c.finish(ctx, j, u)
		}
		// Committed before the publish step runs: whatever happens next,
		// the job publishes (again, after a restart) or fails, and never
		// goes back to building.
		u.State, u.Summary = store.JobPublishing, fmt.Sprintf("succeeded on %s; publishing", platforms(len(j.Platforms)))
		if err := c.update(ctx, j.ID, u); err != nil {
			return err
		}
		j.State = store.JobPublishing
		c.startPublish(ctx, j)
		return nil
	case started && j.State == store.JobQueued:
		u.State = store.JobBuilding
	}
	if u.State == "" && len(u.Platforms) == 0 {
		return nil
	}
	return c.update(ctx, j.ID, u)
}

func (c *Coordinator) update(ctx context.Context, id int64, u store.JobUpdate) error {
	err := c.st.UpdateJob(ctx, id, u)
	if errors.Is(err, store.ErrJobComplete) {
		return nil // decided already
	}
	return err
}

// finish records the end of job j and tells OnFinished.
func (c *Coordinator) finish(ctx context.Context, j store.Job, u store.JobUpdate) error {
	err := c.st.UpdateJob(ctx, j.ID, u)
	if errors.Is(err, store.ErrJobComplete) {
		return nil
	}
	if err != nil {
		return err
	}
	c.log.Info("job finished", "job", j.ID, "name", j.Name, "state", u.State, "summary", u.Summary)
	if c.onFinish != nil {
		fin, err := c.st.GetJob(ctx, j.ID)
		if err != nil {
			return err
		}
		c.onFinish(fin)
	}
	return nil
}

// addStep adds step s of platform p's chain as a buildset on the
// platform's builder and queues its request.
func (c *Coordinator) addStep(ctx context.Context, j store.Job, spec Spec, p store.JobPlatform, s Step) error {
	pkg := spec.Packages[s.Package]
	reason := fmt.Sprintf("job %d %q: package %d/%d %s on %s", j.ID, j.Name, s.Package+1, len(spec.Packages), pkg.Name, p.Platform)
	if s.Attempt > 1 {
		reason += " (retry)"
	}
	options := spec.Options
	if options == nil {
		options = map[string]any{}
	}
	files := pkg.Files
	if files == nil {
		files = []string{}
	}
	prop := func(v any) store.Property { return store.Property{Value: v, Source: "Job"} }
	nb := store.NewBuildset{
		Reason: reason,
		Properties: map[string]store.Property{
			"job_id":            prop(j.ID),
			"job_name":          prop(j.Name),
			"job_dir":           prop(j.Dir),
			"job_package":       prop(pkg.Name),
			"job_package_index": prop(s.Package),
			"job_files":         prop(files),
			"job_platform":      prop(p.Platform),
			"job_attempt":       prop(s.Attempt),
			"job_submitter":     prop(j.Submitter),
			"job_options":       prop(options),
		},
		BuilderIDs: []int64{p.BuilderID},
		Job:        &store.JobLink{JobID: j.ID, Platform: p.Platform, Seq: s.Seq, Package: s.Package, Attempt: s.Attempt},
	}
	bs, reqs, err := c.st.AddBuildset(ctx, nb)
	if err != nil {
		// The step may exist already (another master on the same
		// database, or a decision repeated): the primary key refused it.
		if again, gerr := c.st.GetJob(ctx, j.ID); gerr == nil {
			for _, ap := range again.Platforms {
				if ap.Platform == p.Platform && len(ap.Builds) > s.Seq {
					return nil
				}
			}
		}
		return fmt.Errorf("job %d: step %d (%s) on %s: %w", j.ID, s.Seq, pkg.Name, p.Platform, err)
	}
	c.log.Info("job step queued", "job", j.ID, "platform", p.Platform, "package", pkg.Name, "attempt", s.Attempt, "buildset", bs.ID)
	if c.q != nil {
		c.q.Add(reqs...)
	}
	return nil
}

// publishStep returns the publish step of farm, nil if it has none.
func (c *Coordinator) publishStep(farm string) (*config.Publish, error) {
	var cfg *config.Config
	if c.cfg != nil {
		cfg = c.cfg()
	}
	if cfg != nil {
		for _, f := range cfg.Farms {
			if f.Name == farm {
				return f.Publish, nil
			}
		}
	}
	return nil, fmt.Errorf("the farm %q is no longer configured", farm)
}

// startPublish runs job j's publish step in a goroutine of its own,
// unless it runs already.
func (c *Coordinator) startPublish(ctx context.Context, j store.Job) {
	if c.publishing[j.ID] {
		return
	}
	pub, err := c.publishStep(j.Farm)
	if err == nil && pub == nil {
		// The farm lost its publish step while the master was down.
		err = errors.New("the farm has no publish step any more")
	}
	plats := make([]string, len(j.Platforms))
	for i, p := range j.Platforms {
		plats[i] = p.Platform
	}
	c.publishing[j.ID] = true
	c.pubs.Add(1)
	go func() {
		defer c.pubs.Done()
		if err == nil {
			c.log.Info("job publishing", "job", j.ID, "name", j.Name, "kind", pub.Kind)
			err = c.publishFn(ctx, c.basedir, j, plats, pub)
		}
		c.enqueue(event{published: &published{job: j.ID, err: err}})
	}()
}

func (c *Coordinator) finishPublish(ctx context.Context, p published) error {
	delete(c.publishing, p.job)
	if ctx.Err() != nil {
		return nil // stopped midway: it publishes again at the next start
	}
	j, err := c.st.GetJob(ctx, p.job)
	if err != nil {
		return err
	}
	if j.State != store.JobPublishing {
		return nil
	}
	u := store.JobUpdate{State: store.JobSucceeded, Summary: fmt.Sprintf("succeeded on %s; published", platforms(len(j.Platforms)))}
	if p.err != nil {
		u = store.JobUpdate{State: store.JobFailed, Summary: fmt.Sprintf("publish failed: %v", p.err)}
	}
	return c.finish(ctx, j, u)
}

// parseSpec reads the normalized spec a job was stored with.
func parseSpec(b []byte) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, err
	}
	if len(s.Packages) == 0 {
		return Spec{}, errors.New("no packages")
	}
	if s.OnFailure == "" {
		s.OnFailure = OnFailureStop
	}
	return s, nil
}

// describeFailures says which packages failed and how: "hello (build 17:
// failure)".
func describeFailures(spec Spec, fs []Failure) string {
	out := make([]string, len(fs))
	for i, f := range fs {
		name := fmt.Sprintf("package %d", f.Package+1)
		if f.Package >= 0 && f.Package < len(spec.Packages) {
			name = spec.Packages[f.Package].Name
		}
		again := ""
		if f.Attempt > 1 {
			again = ", second attempt"
		}
		if f.BuildID != 0 {
			out[i] = fmt.Sprintf("%s (build %d: %s%s)", name, f.BuildID, f.Results, again)
		} else {
			out[i] = fmt.Sprintf("%s (%s before a build started%s)", name, f.Results, again)
		}
	}
	return strings.Join(out, ", ")
}

func platforms(n int) string {
	if n == 1 {
		return "1 platform"
	}
	return fmt.Sprintf("%d platforms", n)
}
