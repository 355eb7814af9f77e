package build

import (
	"bytes"
	"context"
	"fmt"

	"github.com/starforge/starforge/master/store"
)

// LogObserver is an Observer that also wants to hear about logs, for
// live log views. The Runner calls it, when its Observer implements it,
// after the store has what it reports, from the goroutine that stores the
// log; its methods must not block for long.
type LogObserver interface {
	LogAdded(buildID int64, l store.Log)
	// LogAppended: lines first..last (0-based, inclusive) of log l, as l
	// was before them, were stored; lines are those lines as stored,
	// valid only during the call.
	LogAppended(buildID int64, l store.Log, first, last int, lines []byte)
	LogFinished(buildID int64, l store.Log)
}

// logSink appends to one stored log. It is used by one goroutine at a time.
type logSink struct {
	st     *store.Store
	log    store.Log
	redact *redactor // may be nil
	// obs hears of what is stored, for the build buildID; may be nil.
	obs     LogObserver
	buildID int64

	max       int64 // the log's cap in bytes (log_max_size); 0: none
	size      int64 // bytes stored so far
	truncated bool  // the cap was reached; later output is dropped
	dropped   int64 // bytes dropped since

	// held is a final line kept back because it may be the first piece of
	// a long line the worker cut, with a secret across the cut (see
	// redactcut.go); it is stored with the next append or at finish.
	held []byte
}

func (l *logSink) append(ctx context.Context, lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	if l.held != nil {
		lines = append(l.held, lines...)
		l.held = nil
	}
	lines, l.held = l.redact.redactCuts(lines)
	if len(lines) == 0 {
		return nil
	}
	lines = l.redact.bytes(lines)
	if l.max > 0 {
		if l.truncated {
			l.dropped += int64(len(lines))
			return nil
		}
		if l.size+int64(len(lines)) > l.max {
			// Keep whole lines up to the cap, then say why the log stops.
			keep := max(l.max-l.size, 0)
			cut := bytes.LastIndexByte(lines[:keep], '\n') + 1
			l.dropped += int64(len(lines) - cut)
			note := fmt.Sprintf("hlog truncated: it reached its limit of %d bytes (master(log_max_size=...)); later output is dropped\n", l.max)
			lines = append(lines[:cut:cut], note...)
			l.truncated = true
		}
	}
	first, last, err := l.st.AppendLog(ctx, l.log.ID, lines)
	if err != nil {
		return fmt.Errorf("append to log %q: %w", l.log.Name, err)
	}
	l.size += int64(len(lines))
	l.appended(first, last, lines)
	return nil
}

// appended tells the observer of lines stored as first..last and keeps
// l.log's counts current.
func (l *logSink) appended(first, last int, lines []byte) {
	if l.obs != nil {
		l.obs.LogAppended(l.buildID, l.log, first, last, lines)
	}
	l.log.NumLines = last + 1
	l.log.Size += int64(len(lines))
}

// finished marks the log complete in the store and tells the observer.
func (l *logSink) finished(ctx context.Context) error {
	if err := l.st.FinishLog(ctx, l.log.ID); err != nil {
		return err
	}
	l.log.Complete = true
	if l.obs != nil {
		l.obs.LogFinished(l.buildID, l.log)
	}
	return nil
}

// finish stores a held line and adds, to a truncated log, how much output
// was dropped.
func (l *logSink) finish(ctx context.Context) {
	if held := l.held; held != nil && !l.truncated {
		l.held = nil
		_, _, _ = l.st.AppendLog(ctx, l.log.ID, l.redact.bytes(held))
	}
	if l.truncated && l.dropped > 0 {
		note := []byte(fmt.Sprintf("h%d bytes of output were dropped after the limit\n", l.dropped))
		if first, last, err := l.st.AppendLog(ctx, l.log.ID, note); err == nil {
			l.appended(first, last, note)
		}
	}
}

// header appends a master-side message as header lines.
func (l *logSink) header(ctx context.Context, text string) {
	if l == nil {
		return
	}
	var b []byte
	for _, line := range splitLines(text) {
		b = append(b, 'h')
		b = append(b, line...)
		b = append(b, '\n')
	}
	_ = l.append(ctx, b)
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// log returns the step's log called name, creating it on first use.
func (s *stepRun) log(ctx context.Context, name string) (*logSink, error) {
	if l := s.logs[name]; l != nil {
		return l, nil
	}
	l, err := s.b.runner.Store.AddLog(ctx, s.step.ID, name, "s")
	if err != nil {
		return nil, fmt.Errorf("create log %q: %w", name, err)
	}
	sink := s.b.newSink(l)
	sink.max = s.b.cfg.Master.LogMaxSize
	s.logs[name] = sink
	return sink, nil
}

func (s *stepRun) closeLogs(ctx context.Context) {
	for _, l := range s.logs {
		l.finish(ctx)
		if err := l.finished(ctx); err != nil {
			s.b.log.Warn("finish log", "log", l.log.Name, "err", err)
		}
	}
}

// newSink returns the sink of log l, just added to one of b's steps, and
// tells the observer about l.
func (b *run) newSink(l store.Log) *logSink {
	sink := &logSink{st: b.runner.Store, log: l, redact: b.redact}
	if o, ok := b.runner.Observer.(LogObserver); ok {
		sink.obs, sink.buildID = o, b.build.ID
		o.LogAdded(b.build.ID, l)
	}
	return sink
}
