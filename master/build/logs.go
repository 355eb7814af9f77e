package build

import (
	"context"
	"fmt"

	"github.com/starforge/starforge/master/store"
)

// logSink appends to one stored log.
type logSink struct {
	st     *store.Store
	log    store.Log
	redact *redactor // may be nil
}

func (l *logSink) append(ctx context.Context, lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	lines = l.redact.bytes(lines)
	if _, _, err := l.st.AppendLog(ctx, l.log.ID, lines); err != nil {
		return fmt.Errorf("append to log %q: %w", l.log.Name, err)
	}
	return nil
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
	sink := &logSink{st: s.b.runner.Store, log: l, redact: s.b.redact}
	s.logs[name] = sink
	return sink, nil
}

func (s *stepRun) closeLogs(ctx context.Context) {
	for _, l := range s.logs {
		if err := s.b.runner.Store.FinishLog(ctx, l.log.ID); err != nil {
			s.b.log.Warn("finish log", "log", l.log.Name, "err", err)
		}
	}
}
