package sshd

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// follower prints builds' steps and logs, and what is new each time it
// is asked again, so that a growing build can be followed.
type follower struct {
	c *cmdCtx
	w *bufio.Writer
	// step, if set, selects one step (by name or number) whose logs are
	// printed bare; otherwise every step's are, between header lines.
	step string

	lines   map[int64]int  // log id → lines printed
	stepsAt map[int64]int  // step id → 1 its start was printed, 2 its end too
	builds  map[int64]int  // build id → 1 its header was printed, 2 its end too
	found   map[int64]bool // build id → the selected step exists
	waiting string         // the last queue reason printed
}

func newFollower(c *cmdCtx, step string) *follower {
	return &follower{c: c, w: bufio.NewWriterSize(c.out, 32<<10), step: step,
		lines: map[int64]int{}, stepsAt: map[int64]int{}, builds: map[int64]int{}, found: map[int64]bool{}}
}

func (f *follower) match(s store.Step) bool {
	if f.step == "" {
		return !s.Hidden
	}
	return s.Name == f.step || strconv.Itoa(s.Number) == f.step
}

// show prints what is new in build b, as read from the store just before.
func (f *follower) show(b store.Build) error {
	ctx, st := f.c.ctx, f.c.b.Store()
	bare := f.step != ""
	if !bare && f.builds[b.ID] == 0 {
		fmt.Fprintf(f.w, "=== %s/%d (build %d) on %s ===\n", b.BuilderName, b.Number, b.ID, b.WorkerName)
		f.builds[b.ID] = 1
	}
	// Steps before their logs: a step read as finished has all its lines.
	steps, err := st.ListSteps(ctx, b.ID)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if !f.match(s) || s.StartedAt.IsZero() {
			continue
		}
		f.found[b.ID] = true
		if !bare && f.stepsAt[s.ID] == 0 {
			fmt.Fprintf(f.w, "--- step %d %s\n", s.Number, s.Name)
			f.stepsAt[s.ID] = 1
		}
		logs, err := st.ListLogs(ctx, s.ID)
		if err != nil {
			return err
		}
		for _, l := range logs {
			if !bare && l.Name != "stdio" && f.lines[l.ID] == 0 && l.NumLines > 0 {
				fmt.Fprintf(f.w, "--- log %s\n", l.Name)
			}
			lw := &lineWriter{w: f.w, stream: l.Type == "s"}
			n, err := st.ReadLog(ctx, l.ID, f.lines[l.ID], -1, lw)
			lw.flush()
			f.lines[l.ID] += n
			if err != nil {
				return err
			}
		}
		if !bare && !s.CompleteAt.IsZero() && f.stepsAt[s.ID] < 2 {
			fmt.Fprintf(f.w, "--- step %d %s: %s%s\n", s.Number, s.Name, s.Results, paren(s.StateString))
			f.stepsAt[s.ID] = 2
		}
	}
	if !bare && !b.CompleteAt.IsZero() && f.builds[b.ID] < 2 {
		state := b.StateString
		if state == b.Results.String() {
			state = ""
		}
		fmt.Fprintf(f.w, "=== %s/%d: %s%s ===\n", b.BuilderName, b.Number, b.Results, paren(state))
		f.builds[b.ID] = 2
	}
	return f.w.Flush()
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// wait returns after a build event or a poll interval, or with ctx's
// error.
func (f *follower) wait(wake <-chan struct{}, tick <-chan time.Time) error {
	select {
	case <-wake:
	case <-tick:
	case <-f.c.ctx.Done():
		return f.c.ctx.Err()
	}
	return nil
}

// followBuild prints build id until it ends, and returns it ended.
func (f *follower) followBuild(id int64) (store.Build, error) {
	wake, unsub := f.c.b.Subscribe() // before the first read: no event is missed
	defer unsub()
	tick := time.NewTicker(f.c.s.opts.PollInterval)
	defer tick.Stop()
	for {
		b, err := f.c.b.Store().GetBuild(f.c.ctx, id)
		if err != nil {
			return b, err
		}
		if err := f.show(b); err != nil {
			return b, err
		}
		if !b.CompleteAt.IsZero() {
			return b, nil
		}
		if err := f.wait(wake, tick.C); err != nil {
			return b, err
		}
	}
}

// followRequest prints the builds of build request id (a retried
// request has several) until the request completes, and returns its
// result.
func (f *follower) followRequest(id int64) (result.Result, error) {
	wake, unsub := f.c.b.Subscribe()
	defer unsub()
	tick := time.NewTicker(f.c.s.opts.PollInterval)
	defer tick.Stop()
	st := f.c.b.Store()
	for {
		r, err := st.GetRequest(f.c.ctx, id)
		if err != nil {
			return result.None, err
		}
		builds, err := st.ListBuilds(f.c.ctx, store.BuildFilter{RequestID: id, Limit: 1000})
		if err != nil {
			return result.None, err
		}
		slices.Reverse(builds)
		for _, b := range builds {
			if f.builds[b.ID] == 2 {
				continue
			}
			if err := f.show(b); err != nil {
				return result.None, err
			}
		}
		if r.Complete {
			if len(builds) == 0 {
				fmt.Fprintf(f.w, "build request %d for %s ended %s without a build%s\n", id, r.BuilderName, r.Results, colon(r.CancelReason))
			}
			return r.Results, f.w.Flush()
		}
		if !r.Claimed {
			if why := f.c.b.QueueReasons()[id]; why != f.waiting && why != "" {
				fmt.Fprintf(f.w, "build request %d for %s is queued: %s\n", id, r.BuilderName, why)
				f.waiting = why
			}
		} else {
			f.waiting = ""
		}
		if err := f.w.Flush(); err != nil {
			return result.None, err
		}
		if err := f.wait(wake, tick.C); err != nil {
			return result.None, err
		}
	}
}

func colon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// lineWriter writes stored log lines as people read them: without the
// stream letter (o, e, h) that starts each line of a stdio log.
type lineWriter struct {
	w       io.Writer
	stream  bool
	partial []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !l.stream {
		_, err := l.w.Write(p)
		return n, err
	}
	if len(l.partial) > 0 {
		p = append(l.partial, p...)
		l.partial = nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial[:0], p...)
			break
		}
		line := p[:i+1]
		if len(line) > 1 {
			line = line[1:]
		}
		if _, err := l.w.Write(line); err != nil {
			return n, err
		}
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineWriter) flush() {
	if len(l.partial) > 1 {
		l.w.Write(l.partial[1:])
		l.w.Write([]byte{'\n'})
	}
	l.partial = nil
}

// waitRequests follows each request in turn and returns the exit code:
// ExitOK if every one succeeded.
func waitRequests(c *cmdCtx, reqs []store.BuildRequest) int {
	f := newFollower(c, "")
	code := ExitOK
	for _, r := range reqs {
		res, err := f.followRequest(r.ID)
		if err != nil {
			return c.fail(err)
		}
		if !succeeded(res) {
			code = ExitFailed
		}
	}
	return code
}

var logsCmd = &command{
	name: "logs", synopsis: "BUILD [STEP] [--follow]", perm: "view", minArgs: 1, maxArgs: 2,
	summary: "print a build's logs; --follow prints them as they grow until the build ends",
	detail: `BUILD is a build id or BUILDER/NUMBER. Without STEP, every step's logs
are printed between header lines; with STEP (a name or number), that step's
logs alone, as they were written. With --follow the command ends when the
build ends, with exit code 0 if it succeeded and 1 if not.`,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		follow := fs.Bool("follow", false, "keep printing until the build ends; exit 1 unless it succeeded")
		fs.BoolVar(follow, "f", false, "short for --follow")
		return func(c *cmdCtx, args []string) int {
			b, code := resolveBuild(c, args[0])
			if code != ExitOK {
				return code
			}
			step := ""
			if len(args) == 2 {
				step = args[1]
			}
			f := newFollower(c, step)
			var err error
			if *follow {
				b, err = f.followBuild(b.ID)
			} else {
				err = f.show(b)
			}
			if err != nil {
				return c.fail(err)
			}
			if step != "" && !f.found[b.ID] {
				return noStep(c, b, step)
			}
			if *follow && !succeeded(b.Results) {
				return ExitFailed
			}
			return ExitOK
		}
	},
}

func noStep(c *cmdCtx, b store.Build, step string) int {
	steps, err := c.b.Store().ListSteps(c.ctx, b.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return c.fail(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	return c.errorf(ExitUsage, "build %s/%d has no step %q%s (its steps: %s)", b.BuilderName, b.Number, step, didYouMean(step, names), orNone(strings.Join(names, ", ")))
}
