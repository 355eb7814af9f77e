package sshd

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// buildJSON is a build as the listings print it with --json.
type buildJSON struct {
	ID         int64      `json:"id"`
	Builder    string     `json:"builder"`
	Number     int        `json:"number"`
	Worker     string     `json:"worker"`
	Result     string     `json:"result"` // "running" until it ends, then success, failure, ...
	State      string     `json:"state"`
	StartedAt  time.Time  `json:"started_at"`
	CompleteAt *time.Time `json:"complete_at"`
	Step       string     `json:"current_step,omitempty"` // running builds: the step running now
}

func toBuildJSON(b store.Build) buildJSON {
	j := buildJSON{ID: b.ID, Builder: b.BuilderName, Number: b.Number, Worker: b.WorkerName,
		Result: resultText(b), State: b.StateString, StartedAt: b.StartedAt}
	if !b.CompleteAt.IsZero() {
		t := b.CompleteAt
		j.CompleteAt = &t
	}
	return j
}

func resultText(b store.Build) string {
	if b.CompleteAt.IsZero() {
		return "running"
	}
	return b.Results.String()
}

// requestJSON is a pending build request.
type requestJSON struct {
	ID          int64     `json:"id"`
	Buildset    int64     `json:"buildset"`
	Builder     string    `json:"builder"`
	Priority    int       `json:"priority"`
	SubmittedAt time.Time `json:"submitted_at"`
	Waiting     string    `json:"waiting_reason"`
}

// pending returns the pending requests in queue order: higher priority
// first, then the oldest.
func pending(ctx context.Context, c *cmdCtx) ([]store.BuildRequest, error) {
	reqs, err := c.b.Store().ListRequests(ctx, store.RequestFilter{PendingOnly: true, Limit: 1000})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(reqs, func(a, b store.BuildRequest) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.SubmittedAt.Compare(b.SubmittedAt), cmp.Compare(a.ID, b.ID))
	})
	return reqs, nil
}

// running returns the running builds, oldest first.
func running(ctx context.Context, c *cmdCtx) ([]store.Build, error) {
	bs, err := c.b.Store().ListBuilds(ctx, store.BuildFilter{RunningOnly: true, Limit: 1000})
	slices.Reverse(bs)
	return bs, err
}

// currentStep names the step a running build is at.
func currentStep(ctx context.Context, c *cmdCtx, id int64) string {
	steps, err := c.b.Store().ListSteps(ctx, id)
	if err != nil {
		return ""
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if !steps[i].StartedAt.IsZero() {
			return steps[i].Name
		}
	}
	return ""
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02 15:04")
}

func duration(b store.Build) string {
	end := b.CompleteAt
	if end.IsZero() {
		end = time.Now()
	}
	if b.StartedAt.IsZero() {
		return "-"
	}
	return end.Sub(b.StartedAt).Round(time.Second).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var buildersCmd = &command{
	name: "builders", synopsis: "[--json]", summary: "list the builders: last build, running, queued", perm: "view",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(c *cmdCtx, _ []string) int {
			type builderJSON struct {
				Name           string     `json:"name"`
				Description    string     `json:"description"`
				Tags           []string   `json:"tags"`
				Workers        []string   `json:"workers"`
				ForceScheduler string     `json:"force_scheduler"` // "" if it cannot be forced
				TryScheduler   string     `json:"try_scheduler"`   // "" if it takes no try jobs
				LastBuild      *buildJSON `json:"last_build"`
				Running        int        `json:"running"`
				Queued         int        `json:"queued"`
			}
			ctx, st := c.ctx, c.b.Store()
			run, err := running(ctx, c)
			if err != nil {
				return c.fail(err)
			}
			queued, err := pending(ctx, c)
			if err != nil {
				return c.fail(err)
			}
			var out []builderJSON
			for _, b := range c.cfg.Builders {
				j := builderJSON{Name: b.Name, Description: b.Description, Tags: nonNil(b.Tags), Workers: nonNil(b.WorkerNames)}
				if fs := c.cfg.ForceSchedulerFor(b.Name); fs != nil {
					j.ForceScheduler = fs.Name
				}
				if ts := c.cfg.TrySchedulerFor(b.Name); ts != nil {
					j.TryScheduler = ts.Name
				}
				if sb, err := st.GetBuilderByName(ctx, b.Name); err == nil {
					last, err := st.ListBuilds(ctx, store.BuildFilter{BuilderID: sb.ID, Limit: 1})
					if err != nil {
						return c.fail(err)
					}
					if len(last) > 0 {
						lb := toBuildJSON(last[0])
						j.LastBuild = &lb
					}
				} else if !errors.Is(err, store.ErrNotFound) {
					return c.fail(err)
				}
				for _, r := range run {
					if r.BuilderName == b.Name {
						j.Running++
					}
				}
				for _, r := range queued {
					if r.BuilderName == b.Name {
						j.Queued++
					}
				}
				out = append(out, j)
			}
			if *asJSON {
				if out == nil {
					out = []builderJSON{}
				}
				return c.printJSON(out)
			}
			tw := c.table("BUILDER", "LAST BUILD", "RUNNING", "QUEUED", "WORKERS", "ACCEPTS")
			for _, j := range out {
				last := "-"
				if lb := j.LastBuild; lb != nil {
					last = fmt.Sprintf("#%d %s", lb.Number, lb.Result)
				}
				var accepts []string
				if j.ForceScheduler != "" {
					accepts = append(accepts, "force")
				}
				if j.TryScheduler != "" {
					accepts = append(accepts, "try")
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", j.Name, last, j.Running, j.Queued, strings.Join(j.Workers, ","), dash(strings.Join(accepts, ",")))
			}
			tw.Flush()
			return ExitOK
		}
	},
}

var workersCmd = &command{
	name: "workers", synopsis: "[--json]", summary: "list the workers: connected, paused, running builds", perm: "view",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(c *cmdCtx, _ []string) int {
			type workerJSON struct {
				Name        string      `json:"name"`
				Connected   bool        `json:"connected"`
				Since       *time.Time  `json:"since"` // when it last connected or disconnected, whichever it is now
				Paused      bool        `json:"paused"`
				PauseReason string      `json:"pause_reason"`
				MaxBuilds   int         `json:"max_builds"` // 0: no limit
				Running     []buildJSON `json:"running"`
			}
			ctx := c.ctx
			stored, err := c.b.Store().ListWorkers(ctx)
			if err != nil {
				return c.fail(err)
			}
			byName := map[string]store.Worker{}
			for _, w := range stored {
				byName[w.Name] = w
			}
			run, err := running(ctx, c)
			if err != nil {
				return c.fail(err)
			}
			out := []workerJSON{}
			for _, w := range c.cfg.Workers {
				sw := byName[w.Name]
				j := workerJSON{Name: w.Name, Connected: sw.Connected, Paused: sw.Paused, PauseReason: sw.PauseReason,
					MaxBuilds: w.MaxBuilds, Running: []buildJSON{}}
				since := sw.LastDisconnected
				if sw.Connected {
					since = sw.LastConnected
				}
				if !since.IsZero() {
					j.Since = &since
				}
				for _, b := range run {
					if b.WorkerName == w.Name {
						j.Running = append(j.Running, toBuildJSON(b))
					}
				}
				out = append(out, j)
			}
			if *asJSON {
				return c.printJSON(out)
			}
			tw := c.table("WORKER", "STATE", "SINCE", "RUNNING", "PAUSED")
			for _, j := range out {
				state := "disconnected"
				if j.Connected {
					state = "connected"
				}
				since := "-"
				if j.Since != nil {
					since = ago(*j.Since)
				}
				var rs []string
				for _, b := range j.Running {
					rs = append(rs, fmt.Sprintf("%s/%d", b.Builder, b.Number))
				}
				paused := "-"
				if j.Paused {
					paused = "paused"
					if j.PauseReason != "" {
						paused += ": " + j.PauseReason
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.Name, state, since, dash(strings.Join(rs, " ")), paused)
			}
			tw.Flush()
			return ExitOK
		}
	},
}

var statusCmd = &command{
	name: "status", synopsis: "[BUILDER] [--limit N] [--json]", perm: "view", maxArgs: 1,
	summary: "what runs now; with BUILDER, its recent builds and queued requests",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		asJSON := fs.Bool("json", false, "print JSON")
		limit := fs.Int("limit", 10, "with BUILDER: how many recent builds")
		return func(c *cmdCtx, args []string) int {
			if len(args) == 1 {
				return builderStatus(c, args[0], *limit, *asJSON)
			}
			ctx := c.ctx
			run, err := running(ctx, c)
			if err != nil {
				return c.fail(err)
			}
			queued, err := pending(ctx, c)
			if err != nil {
				return c.fail(err)
			}
			ws, err := c.b.Store().ListWorkers(ctx)
			if err != nil {
				return c.fail(err)
			}
			connected, paused := 0, 0
			for _, w := range ws {
				if c.cfg.Worker(w.Name) == nil {
					continue
				}
				if w.Connected {
					connected++
				}
				if w.Paused {
					paused++
				}
			}
			rj := []buildJSON{}
			for _, b := range run {
				j := toBuildJSON(b)
				j.Step = currentStep(ctx, c, b.ID)
				rj = append(rj, j)
			}
			if *asJSON {
				return c.printJSON(map[string]any{
					"title": c.cfg.Master.Title, "config": c.cfg.Summary(),
					"workers": len(c.cfg.Workers), "workers_connected": connected, "workers_paused": paused,
					"running": rj, "queued": len(queued),
				})
			}
			fmt.Fprintf(c.out, "%s: %s; %d of %d workers connected", c.cfg.Master.Title, c.cfg.Summary(), connected, len(c.cfg.Workers))
			if paused > 0 {
				fmt.Fprintf(c.out, ", %d paused", paused)
			}
			fmt.Fprintf(c.out, "\n%d running, %d queued\n", len(rj), len(queued))
			if len(rj) > 0 {
				fmt.Fprintln(c.out)
				tw := c.table("BUILD", "ID", "WORKER", "STEP", "STARTED")
				for _, j := range rj {
					fmt.Fprintf(tw, "%s/%d\t%d\t%s\t%s\t%s\n", j.Builder, j.Number, j.ID, j.Worker, dash(j.Step), ago(j.StartedAt))
				}
				tw.Flush()
			}
			return ExitOK
		}
	},
}

func builderStatus(c *cmdCtx, name string, limit int, asJSON bool) int {
	ctx, st := c.ctx, c.b.Store()
	if limit < 1 || limit > 1000 {
		return c.errorf(ExitUsage, "--limit %d: want 1 to 1000", limit)
	}
	sb, err := st.GetBuilderByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.cfg.Builder(name) == nil) {
		var names []string
		for _, b := range c.cfg.Builders {
			names = append(names, b.Name)
		}
		return c.errorf(ExitUsage, "no builder named %q%s", name, didYouMean(name, names))
	}
	if err != nil {
		return c.fail(err)
	}
	builds, err := st.ListBuilds(ctx, store.BuildFilter{BuilderID: sb.ID, Limit: limit})
	if err != nil {
		return c.fail(err)
	}
	reqs, err := st.ListRequests(ctx, store.RequestFilter{BuilderID: sb.ID, PendingOnly: true, Limit: 1000})
	if err != nil {
		return c.fail(err)
	}
	slices.Reverse(reqs)
	reasons := c.b.QueueReasons()
	bj := []buildJSON{}
	for _, b := range builds {
		j := toBuildJSON(b)
		if b.CompleteAt.IsZero() {
			j.Step = currentStep(ctx, c, b.ID)
		}
		bj = append(bj, j)
	}
	rj := []requestJSON{}
	for _, r := range reqs {
		rj = append(rj, requestJSON{ID: r.ID, Buildset: r.BuildsetID, Builder: r.BuilderName, Priority: r.Priority,
			SubmittedAt: r.SubmittedAt, Waiting: reasons[r.ID]})
	}
	if asJSON {
		return c.printJSON(map[string]any{"builder": name, "builds": bj, "queued": rj})
	}
	if len(bj) == 0 {
		fmt.Fprintf(c.out, "%s has no builds yet\n", name)
	} else {
		tw := c.table("BUILD", "ID", "RESULT", "STATE", "WORKER", "STARTED", "DURATION")
		for i, j := range bj {
			fmt.Fprintf(tw, "#%d\t%d\t%s\t%s\t%s\t%s\t%s\n", j.Number, j.ID, j.Result, dash(j.State), j.Worker, ago(j.StartedAt), duration(builds[i]))
		}
		tw.Flush()
	}
	if len(rj) > 0 {
		fmt.Fprintf(c.out, "\n%d queued:\n", len(rj))
		printQueue(c, rj)
	}
	return ExitOK
}

func printQueue(c *cmdCtx, rj []requestJSON) {
	tw := c.table("REQUEST", "BUILDER", "PRIORITY", "SUBMITTED", "WAITING FOR")
	for _, r := range rj {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", r.ID, r.Builder, r.Priority, ago(r.SubmittedAt), dash(r.Waiting))
	}
	tw.Flush()
}

var queueCmd = &command{
	name: "queue", synopsis: "[--json]", summary: "list the pending build requests and why each waits", perm: "view",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(c *cmdCtx, _ []string) int {
			reqs, err := pending(c.ctx, c)
			if err != nil {
				return c.fail(err)
			}
			reasons := c.b.QueueReasons()
			rj := []requestJSON{}
			for _, r := range reqs {
				rj = append(rj, requestJSON{ID: r.ID, Buildset: r.BuildsetID, Builder: r.BuilderName, Priority: r.Priority,
					SubmittedAt: r.SubmittedAt, Waiting: reasons[r.ID]})
			}
			if *asJSON {
				return c.printJSON(rj)
			}
			if len(rj) == 0 {
				fmt.Fprintln(c.out, "the queue is empty")
				return ExitOK
			}
			printQueue(c, rj)
			return ExitOK
		}
	},
}

// resolveBuild finds the build a BUILD argument names.
func resolveBuild(c *cmdCtx, arg string) (store.Build, int) {
	ref, err := parseBuildRef(arg)
	if err != nil {
		return store.Build{}, c.errorf(ExitUsage, "%v", err)
	}
	st := c.b.Store()
	var b store.Build
	if ref.builder == "" {
		b, err = st.GetBuild(c.ctx, ref.id)
	} else {
		var sb store.Builder
		sb, err = st.GetBuilderByName(c.ctx, ref.builder)
		if errors.Is(err, store.ErrNotFound) {
			return store.Build{}, c.errorf(ExitUsage, "no builder named %q", ref.builder)
		}
		if err == nil {
			b, err = st.GetBuildByNumber(c.ctx, sb.ID, ref.number)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Build{}, c.errorf(ExitUsage, "build %s not found", ref)
	}
	if err != nil {
		return store.Build{}, c.fail(err)
	}
	return b, ExitOK
}

// succeeded says whether a build or request result counts as success for
// exit codes: success, warnings, or skipped (collapsed into another
// build, which covers it).
func succeeded(r result.Result) bool {
	return r == result.Success || r == result.Warnings || r == result.Skipped
}
