package webui

import (
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// Sizes of the home page's lists. Each is one keyset query (the builder
// boxes one per builder), so the page costs the same for any history size.
const (
	homeRecent      = 20
	homeRunning     = 50
	homeLastResults = 5
	homeQueueCap    = maxLimit // the queue is counted up to this, then shown as "1000+"
)

type homeData struct {
	layout
	WorkersConnected int
	WorkersTotal     int
	QueueLen         int
	QueueMore        bool // the queue holds more than QueueLen requests
	Running          []runningBuild
	Recent           []store.Build
	Builders         []builderSummary
}

type runningBuild struct {
	Build store.Build
	Step  string // the step running now, or the build's state string
}

type builderSummary struct {
	Builder store.Builder
	Last    []store.Build // newest first
}

// GET /
func (s *Server) homePage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	d := homeData{layout: layout{Site: s.m.Title(), Nav: "home", Refresh: 5}}

	workers, err := st.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	live := s.m.WorkerStates()
	d.WorkersTotal = len(workers)
	for _, wk := range workers {
		connected := wk.Connected
		if ls, ok := live[wk.Name]; ok {
			connected = ls.Connected
		}
		if connected {
			d.WorkersConnected++
		}
	}

	pending, err := st.ListRequests(ctx, store.RequestFilter{PendingOnly: true, Limit: homeQueueCap})
	if err != nil {
		return fmt.Errorf("list pending requests: %w", err)
	}
	d.QueueLen, d.QueueMore = len(pending), len(pending) == homeQueueCap

	running, err := st.ListBuilds(ctx, store.BuildFilter{RunningOnly: true, Limit: homeRunning})
	if err != nil {
		return fmt.Errorf("list running builds: %w", err)
	}
	for _, b := range running {
		rb := runningBuild{Build: b, Step: b.StateString}
		steps, err := st.ListSteps(ctx, b.ID)
		if err != nil {
			return fmt.Errorf("list steps of build %d: %w", b.ID, err)
		}
		if cur, ok := currentStep(steps); ok {
			rb.Step = cur.Name
		}
		d.Running = append(d.Running, rb)
	}

	if d.Recent, err = st.ListBuilds(ctx, store.BuildFilter{Limit: homeRecent}); err != nil {
		return fmt.Errorf("list recent builds: %w", err)
	}

	builders, err := st.ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}
	for _, b := range builders {
		last, err := st.ListBuilds(ctx, store.BuildFilter{BuilderID: b.ID, Limit: homeLastResults})
		if err != nil {
			return fmt.Errorf("list builds of builder %d: %w", b.ID, err)
		}
		d.Builders = append(d.Builders, builderSummary{Builder: b, Last: last})
	}
	return s.render(w, http.StatusOK, "home", d)
}

// currentStep is the last started step that has not finished.
func currentStep(steps []store.Step) (store.Step, bool) {
	for i := len(steps) - 1; i >= 0; i-- {
		if s := steps[i]; !s.StartedAt.IsZero() && s.CompleteAt.IsZero() {
			return s, true
		}
	}
	return store.Step{}, false
}
