package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
)

// This file holds the control operations the SSH interface needs and
// the web UI can share: cancel a request, rebuild a build, pause a
// worker, submit a try job. Their errors carry an HTTP status (see
// statusError): 400 and 404 for bad input, 403 for what the
// configuration does not allow, 409 for what the current state refuses.

func notFoundf(format string, args ...any) error {
	return &statusError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflictf(format string, args ...any) error {
	return &statusError{http.StatusConflict, fmt.Sprintf(format, args...)}
}

func forbiddenf(format string, args ...any) error {
	return &statusError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

// CancelRequest cancels pending build request id: it completes
// CANCELLED with reason recorded, and leaves the queue. A request a build
// has already claimed is refused (409) with the build to stop instead.
func (m *Master) CancelRequest(ctx context.Context, id int64, reason string) error {
	if reason == "" {
		reason = "cancelled by a user"
	}
	_, err := m.store.CancelRequest(ctx, id, reason, time.Now())
	switch {
	case err == nil:
		m.disp.Remove(id)
		m.log.Info("build request cancelled", "request", id, "reason", reason)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return notFoundf("build request %d not found", id)
	case errors.Is(err, store.ErrAlreadyClaimed):
		builds, lerr := m.store.ListBuilds(ctx, store.BuildFilter{RequestID: id, RunningOnly: true, Limit: 1})
		if lerr == nil && len(builds) > 0 {
			b := builds[0]
			return conflictf("build request %d has started: build %d (%s #%d) runs it; stop the build instead", id, b.ID, b.BuilderName, b.Number)
		}
		return conflictf("build request %d has started; stop its build instead", id)
	case errors.Is(err, store.ErrAlreadyFinished):
		if r, gerr := m.store.GetRequest(ctx, id); gerr == nil {
			return conflictf("build request %d is already complete (%s)", id, r.Results)
		}
		return conflictf("build request %d is already complete", id)
	}
	return fmt.Errorf("cancel build request %d: %w", id, err)
}

// Rebuild queues build buildID again, as Buildbot's rebuild: a new
// buildset for the same builder with the old one's source stamps
// (patches included), changes and properties, owned by owner, with the
// reason "rebuild of BUILDER #N". The buildset is stored before Rebuild
// returns.
func (m *Master) Rebuild(ctx context.Context, buildID int64, owner string) (store.Buildset, []store.BuildRequest, error) {
	b, err := m.store.GetBuild(ctx, buildID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Buildset{}, nil, notFoundf("build %d not found", buildID)
	}
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("rebuild: %w", err)
	}
	what := fmt.Sprintf("%s #%d", b.BuilderName, b.Number)
	if b.BuildsetID == 0 {
		return store.Buildset{}, nil, conflictf("build %d (%s) was not started by a build request: there is nothing to rebuild it from", buildID, what)
	}
	if m.Config().Builder(b.BuilderName) == nil {
		return store.Buildset{}, nil, conflictf("cannot rebuild %s: builder %s is no longer in the configuration", what, b.BuilderName)
	}
	old, err := m.store.GetBuildset(ctx, b.BuildsetID)
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("rebuild %s: %w", what, err)
	}
	changes, err := m.store.BuildsetChanges(ctx, old.ID)
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("rebuild %s: %w", what, err)
	}
	prio := 0
	if b.RequestID != 0 {
		if r, err := m.store.GetRequest(ctx, b.RequestID); err == nil {
			prio = r.Priority
		}
	}
	props := maps.Clone(old.Properties)
	if props == nil {
		props = map[string]store.Property{}
	}
	if owner != "" {
		props["owner"] = store.Property{Value: owner, Source: "Rebuild"}
	}
	sss := make([]store.SourceStamp, len(old.SourceStamps))
	for i, ss := range old.SourceStamps {
		ss.ID = 0
		sss[i] = ss
	}
	if len(sss) == 0 {
		sss = []store.SourceStamp{{}}
	}
	ids := make([]int64, len(changes))
	for i, c := range changes {
		ids[i] = c.ID
	}
	bs, reqs, err := m.store.AddBuildset(ctx, store.NewBuildset{
		Reason:       "rebuild of " + what,
		Properties:   props,
		SourceStamps: sss,
		BuilderIDs:   []int64{b.BuilderID},
		Priority:     prio,
		ChangeIDs:    ids,
		SubmittedAt:  time.Now(),
	})
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("rebuild %s: %w", what, err)
	}
	m.disp.Add(reqs...)
	m.log.Info("rebuild queued", "build", buildID, "of", what, "buildset", bs.ID, "owner", owner)
	return bs, reqs, nil
}

// PauseWorker pauses the configured worker called name: it gets no new
// builds until UnpauseWorker; the builds it runs go on. The pause and its
// reason are stored, so they outlive a restart, and shown on the workers
// page and as the waiting reason of requests only it could run.
func (m *Master) PauseWorker(ctx context.Context, name, reason string) error {
	return m.setPaused(ctx, name, true, reason)
}

// UnpauseWorker lets worker name take new builds again. reason is logged.
func (m *Master) UnpauseWorker(ctx context.Context, name, reason string) error {
	m.cancelStop(name) // ops_web.go
	return m.setPaused(ctx, name, false, reason)
}

func (m *Master) setPaused(ctx context.Context, name string, paused bool, reason string) error {
	if m.Config().Worker(name) == nil {
		return notFoundf("no worker named %q in the configuration", name)
	}
	id, err := m.store.EnsureWorker(ctx, name)
	if err == nil {
		err = m.store.SetWorkerPaused(ctx, id, paused, reason)
	}
	if err != nil {
		return fmt.Errorf("pause worker %s: %w", name, err)
	}
	if paused {
		m.log.Info("worker paused", "worker", name, "reason", reason)
	} else {
		m.log.Info("worker unpaused", "worker", name, "reason", reason)
	}
	m.refreshPause(ctx, name)
	return nil
}

// restorePauses tells the dispatcher which workers the store says are
// paused; Run calls it before any worker can attach.
func (m *Master) restorePauses(ctx context.Context) error {
	ws, err := m.store.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("read paused workers: %w", err)
	}
	for _, w := range ws {
		if w.Paused {
			m.disp.Pause(w.Name, w.PauseReason)
		}
	}
	return nil
}

// addPauses sets Paused and PauseReason in states (WorkerStates' map)
// from the store, adding paused workers that are not connected.
func (m *Master) addPauses(ctx context.Context, states map[string]webui.WorkerState) {
	ws, err := m.store.ListWorkers(ctx)
	if err != nil {
		m.log.Warn("read paused workers", "err", err)
		return
	}
	for _, w := range ws {
		if !w.Paused {
			continue
		}
		st, ok := states[w.Name]
		if !ok {
			st.Connected = w.Connected
		}
		st.Paused, st.PauseReason = true, w.PauseReason
		states[w.Name] = st
	}
}

// TryRequest is a try job: build BaseRev (or the head of Branch) with
// Patch applied after checkout, on Builders.
type TryRequest struct {
	Builders   []string // at least one; every one listed by one try_scheduler
	BaseRev    string   // "": the head of Branch (or of the default branch)
	Branch     string
	Repository string // "": the repository the builders' steps name
	Patch      []byte // a unified diff, as git diff or diff -u make
	PatchLevel int    // as patch -p; git diff output wants 1
	Who        string // the user sending it; owner of the buildset
	Comment    string
	Properties map[string]string // extra buildset properties; may be nil
}

// MaxPatchSize bounds a try job's patch.
const MaxPatchSize = 16 << 20

// Try queues a try job through the try_scheduler that lists all of
// r.Builders: one buildset whose source stamp carries r.Patch, which the
// git step applies after checking out the base revision. The buildset
// and its patch are stored before Try returns.
func (m *Master) Try(ctx context.Context, r TryRequest) (store.Buildset, []store.BuildRequest, error) {
	cfg := m.Config()
	if len(r.Builders) == 0 {
		return store.Buildset{}, nil, badRequest("try: name at least one builder")
	}
	for i, name := range r.Builders {
		if slices.Contains(r.Builders[:i], name) {
			return store.Buildset{}, nil, badRequest("try: builder %q is listed twice", name)
		}
		if cfg.Builder(name) == nil {
			return store.Buildset{}, nil, notFoundf("try: no builder named %q", name)
		}
		if cfg.TrySchedulerFor(name) == nil {
			return store.Buildset{}, nil, forbiddenf("try: builder %q does not accept try jobs: no try_scheduler lists it", name)
		}
	}
	ts := cfg.TrySchedulerFor(r.Builders...)
	if ts == nil {
		return store.Buildset{}, nil, forbiddenf("try: no single try_scheduler lists all of %s; send them separately", strings.Join(r.Builders, ", "))
	}
	if err := m.schedulerDisabled("try: try_scheduler", ts.Name); err != nil {
		return store.Buildset{}, nil, err
	}
	if err := checkPatch(r.Patch); err != nil {
		return store.Buildset{}, nil, badRequest("try: %v", err)
	}
	if r.PatchLevel < 0 {
		return store.Buildset{}, nil, badRequest("try: patch level %d: want 0 or more", r.PatchLevel)
	}
	who := r.Who
	if who == "" {
		who = "anonymous"
	}
	props := map[string]store.Property{
		"scheduler": {Value: ts.Name, Source: "Scheduler"},
		"owner":     {Value: who, Source: "Try"},
	}
	for _, k := range slices.Sorted(maps.Keys(r.Properties)) {
		if !webui.ValidPropertyName(k) {
			return store.Buildset{}, nil, badRequest("try: property name %q: use letters, digits, '_', '-' and '.'", k)
		}
		if _, reserved := props[k]; reserved {
			return store.Buildset{}, nil, badRequest("try: property %q is set by the try job itself", k)
		}
		props[k] = store.Property{Value: r.Properties[k], Source: "Try"}
	}
	var ids []int64
	for _, name := range r.Builders {
		b, err := m.store.GetBuilderByName(ctx, name)
		if err != nil {
			return store.Buildset{}, nil, fmt.Errorf("try %s: %w", name, err)
		}
		ids = append(ids, b.ID)
	}
	reason := fmt.Sprintf("try by '%s'", who)
	if c := strings.TrimSpace(r.Comment); c != "" {
		reason += ": " + firstLineOf(c)
	}
	bs, reqs, err := m.store.AddBuildset(ctx, store.NewBuildset{
		Reason:     reason,
		Properties: props,
		SourceStamps: []store.SourceStamp{{
			Repository: r.Repository, Branch: r.Branch, Revision: r.BaseRev,
			Patch: &store.Patch{Level: r.PatchLevel, Body: r.Patch, Author: who, Comment: r.Comment},
		}},
		BuilderIDs:  ids,
		SubmittedAt: time.Now(),
	})
	if err != nil {
		return store.Buildset{}, nil, fmt.Errorf("try: %w", err)
	}
	m.disp.Add(reqs...)
	m.log.Info("try job queued", "buildset", bs.ID, "scheduler", ts.Name, "builders", r.Builders,
		"who", who, "base", r.BaseRev, "branch", r.Branch, "patch_bytes", len(r.Patch))
	return bs, reqs, nil
}

// checkPatch says what is wrong with a try patch, if anything: it must be
// a unified diff of reasonable size.
func checkPatch(p []byte) error {
	switch {
	case len(bytes.TrimSpace(p)) == 0:
		return errors.New("the patch is empty: send a unified diff (git diff, diff -u) on standard input")
	case len(p) > MaxPatchSize:
		return fmt.Errorf("the patch is %d bytes; the limit is %d", len(p), MaxPatchSize)
	case bytes.IndexByte(p, 0) >= 0:
		return errors.New("the patch holds NUL bytes: send a text diff (git diff --binary makes binary changes text)")
	}
	// A unified diff has a "--- a" line followed by a "+++ b" line;
	// git's renames and mode changes have a "diff --git" header instead.
	lines := bytes.Split(p, []byte("\n"))
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("diff --git ")) {
			return nil
		}
		if bytes.HasPrefix(l, []byte("--- ")) && i+1 < len(lines) && bytes.HasPrefix(lines[i+1], []byte("+++ ")) {
			return nil
		}
	}
	return errors.New("the patch is not a unified diff: no \"--- a/file\" and \"+++ b/file\" header lines (make it with git diff or diff -u)")
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
