package build

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
)

// minRedactLen is the shortest secret value that is redacted: shorter ones
// would turn ordinary text into noise.
const minRedactLen = 4

// redactor replaces the values of the secrets rendered into a build with
// <secret:NAME> in everything the build stores: log lines and state strings.
type redactor struct {
	mu    sync.Mutex
	names map[string]string // value → name
	r     *strings.Replacer // nil until a secret is added
}

// add records a secret value used by the build. Logs are stored line by
// line, so each line of a multi-line value is redacted on its own as well.
func (r *redactor) add(name, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = map[string]string{}
	}
	n := len(r.names)
	for _, v := range append([]string{value}, strings.Split(value, "\n")...) {
		v = strings.TrimSuffix(v, "\r")
		if _, ok := r.names[v]; !ok && len(v) >= minRedactLen {
			r.names[v] = name
		}
	}
	if len(r.names) == n {
		return
	}
	values := make([]string, 0, len(r.names))
	for v := range r.names {
		values = append(values, v)
	}
	// Longest first: the Replacer tries pairs in argument order, so a
	// secret that contains another is replaced whole.
	sort.Slice(values, func(i, j int) bool {
		if len(values[i]) != len(values[j]) {
			return len(values[i]) > len(values[j])
		}
		return values[i] < values[j]
	})
	pairs := make([]string, 0, 2*len(values))
	for _, v := range values {
		pairs = append(pairs, v, "<secret:"+r.names[v]+">")
	}
	r.r = strings.NewReplacer(pairs...)
}

func (r *redactor) replacer() *strings.Replacer {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r
}

// str returns s redacted.
func (r *redactor) str(s string) string {
	if rep := r.replacer(); rep != nil {
		return rep.Replace(s)
	}
	return s
}

// bytes returns b redacted; b itself is returned when nothing is to redact.
func (r *redactor) bytes(b []byte) []byte {
	rep := r.replacer()
	if rep == nil {
		return b
	}
	var sb strings.Builder
	sb.Grow(len(b))
	_, _ = rep.WriteString(&sb, string(b))
	return []byte(sb.String())
}

// newEnv returns what build-time functions see of the build.
func (b *run) newEnv() *config.BuildEnv {
	props := make(map[string]any, len(b.props))
	for k, p := range b.props {
		props[k] = p.Value
	}
	srcs := make([]config.SourceStamp, len(b.sources))
	for i, ss := range b.sources {
		srcs[i] = config.SourceStamp{Codebase: ss.Codebase, Branch: ss.Branch, Revision: ss.Revision, Repository: ss.Repository, Project: ss.Project}
	}
	return &config.BuildEnv{
		Properties:  props,
		BuilderName: b.bcfg.Name,
		Number:      int64(b.build.Number),
		WorkerName:  b.sess.Name,
		WorkerInfo:  b.sess.Info(),
		Sources:     srcs,
		Secret:      b.cfg.Secret,
		UsedSecret:  b.redact.add,
	}
}

// plan chooses the build's steps: the builder's list, or what its steps
// function returns. A failing function is recorded as a "plan" step that
// ends EXCEPTION with the traceback in its log.
func (b *run) plan(ctx context.Context) error {
	b.planned = b.bcfg.Steps
	fn := b.bcfg.StepsFn
	if fn == nil {
		return nil
	}
	var printed []string
	b.env.Print = func(msg string) { printed = append(printed, msg) }
	steps, err := fn.Plan(b.env)
	b.env.Print = nil
	if err == nil {
		b.planned = steps
		return nil
	}
	r := b.runner
	st, aerr := r.Store.AddStep(ctx, b.build.ID, 0, "plan")
	if aerr != nil {
		return fmt.Errorf("plan: %w (and recording it failed: %v)", err, aerr)
	}
	b.steps = append(b.steps, st)
	now := r.now()
	if serr := r.Store.StartStep(ctx, st.ID, now); serr == nil {
		b.steps[0].StartedAt = now
	}
	if l, lerr := r.Store.AddLog(ctx, st.ID, "stdio", "s"); lerr == nil {
		sink := b.newSink(l)
		for _, p := range printed {
			sink.header(ctx, p)
		}
		writeError(ctx, sink, err)
		_ = sink.finished(ctx)
	}
	b.finishStep(ctx, 0, result.Exception, "plan error: "+firstLine(err.Error()))
	return fmt.Errorf("plan: %w", err)
}

// writeError writes a build-time error to a log: the message, then the
// Starlark traceback if there is one.
func writeError(ctx context.Context, l *logSink, err error) {
	if bt := config.Backtrace(err); bt != "" {
		l.header(ctx, err.Error()+"\n"+bt)
		return
	}
	l.header(ctx, err.Error())
}

// prepare evaluates do_step_if and renders the step. It returns the step
// to run, or a result and state when the step must not run.
func (s *stepRun) prepare(ctx context.Context, stdio *logSink, sc *config.Step) (*config.Step, result.Result, string) {
	env := s.b.env
	env.Print = func(msg string) { stdio.header(ctx, msg) }
	defer func() { env.Print = nil }()
	if sc.DoStepIf != nil {
		run, err := sc.DoStepIf.Eval(env)
		if err != nil {
			writeError(ctx, stdio, err)
			return nil, result.Exception, "do_step_if error: " + firstLine(err.Error())
		}
		if !run {
			return nil, result.Skipped, "skipped (do_step_if)"
		}
	}
	rsc, err := sc.Render(env)
	if err != nil {
		writeError(ctx, stdio, err)
		return nil, result.Exception, "render error: " + firstLine(err.Error())
	}
	return rsc, result.None, ""
}

// hide evaluates hide_step_if once the step has ended.
func (s *stepRun) hide(ctx context.Context, sc *config.Step, res result.Result, state string) (result.Result, string) {
	env := s.b.env
	stdio := s.logs["stdio"]
	env.Print = func(msg string) { stdio.header(ctx, msg) }
	defer func() { env.Print = nil }()
	hidden, err := sc.HideStepIf.Eval(env)
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "hide_step_if error: " + firstLine(err.Error())
	}
	if hidden {
		if err := s.b.runner.Store.SetStepHidden(ctx, s.step.ID, true); err != nil {
			s.b.log.Warn("hide step", "step", s.step.Name, "err", err)
		} else {
			s.step.Hidden = true
		}
	}
	return res, state
}
