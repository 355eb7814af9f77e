package build

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/master/store"
)

// logRecorder is an Observer and LogObserver that records what it hears.
type logRecorder struct {
	mu     sync.Mutex
	events []string
	lines  map[int64]*bytes.Buffer // by log id: the appended lines, in order
	next   map[int64]int           // by log id: the next line expected
	errs   []string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{lines: map[int64]*bytes.Buffer{}, next: map[int64]int{}}
}

func (r *logRecorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *logRecorder) BuildStarted(b store.Build)                      { r.add("build started") }
func (r *logRecorder) StepChanged(id int64, s store.Step)              {}
func (r *logRecorder) CommandStarted(id int64, s store.Step, _ string) {}
func (r *logRecorder) BuildFinished(b store.Build)                     { r.add("build finished") }

func (r *logRecorder) LogAdded(buildID int64, l store.Log) {
	r.add("log %s added", l.Name)
}

func (r *logRecorder) LogAppended(buildID int64, l store.Log, first, last int, lines []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first != r.next[l.ID] || l.NumLines != first {
		r.errs = append(r.errs, fmt.Sprintf("log %d: lines %d..%d appended to a log of %d lines, after line %d", l.ID, first, last, l.NumLines, r.next[l.ID]-1))
	}
	if n := bytes.Count(lines, []byte{'\n'}); n != last-first+1 {
		r.errs = append(r.errs, fmt.Sprintf("log %d: lines %d..%d came with %d lines", l.ID, first, last, n))
	}
	r.next[l.ID] = last + 1
	if r.lines[l.ID] == nil {
		r.lines[l.ID] = &bytes.Buffer{}
	}
	r.lines[l.ID].Write(lines)
}

func (r *logRecorder) LogFinished(buildID int64, l store.Log) {
	r.add("log %s finished with %d lines", l.Name, l.NumLines)
}

// TestSinkTellsLogObserver: every append the store takes, the cap's notes
// included, reaches the observer as the next line range with its lines.
func TestSinkTellsLogObserver(t *testing.T) {
	st, l := newLog(t)
	ctx := context.Background()
	rec := newLogRecorder()
	sink := &logSink{st: st, log: l, max: 100, obs: rec, buildID: 1}
	for i := range 6 {
		if err := sink.append(ctx, []byte(fmt.Sprintf("oline %d\noline %d again\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	sink.finish(ctx)
	if err := sink.finished(ctx); err != nil {
		t.Fatal(err)
	}
	var stored bytes.Buffer
	if _, err := st.ReadLog(ctx, l.ID, 0, -1, &stored); err != nil {
		t.Fatal(err)
	}
	if len(rec.errs) > 0 {
		t.Errorf("observer saw: %s", strings.Join(rec.errs, "; "))
	}
	if got := rec.lines[l.ID].String(); got != stored.String() {
		t.Errorf("observer got lines\n%s\nthe store has\n%s", got, stored.String())
	}
	if !strings.Contains(stored.String(), "bytes of output were dropped") {
		t.Errorf("the test did not reach the cap: %q", stored.String())
	}
	want := fmt.Sprintf("log stdio finished with %d lines", strings.Count(stored.String(), "\n"))
	if len(rec.events) != 1 || rec.events[0] != want {
		t.Errorf("events = %q, want %q", rec.events, want)
	}
}

// TestRunnerTellsLogObserver runs a build on a real worker and checks the
// observer heard of each log's creation, all its lines and its end.
func TestRunnerTellsLogObserver(t *testing.T) {
	h := newHarness(t, `
worker("w", "pw")
builder("b", ["w"], [shell("echo one; echo two >&2; echo three", name = "s1"), shell("echo four", name = "s2")])
`)
	rec := newLogRecorder()
	h.runner.Observer = rec
	h.startAgent("w")
	b := h.build("b", "w")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		t.Errorf("observer saw: %s", strings.Join(rec.errs, "; "))
	}
	for _, name := range []string{"s1", "s2"} {
		logs, err := h.st.ListLogs(context.Background(), b.steps[name].ID)
		if err != nil || len(logs) != 1 {
			t.Fatalf("logs of %s: %v, %v", name, logs, err)
		}
		var stored bytes.Buffer
		if _, err := h.st.ReadLog(context.Background(), logs[0].ID, 0, -1, &stored); err != nil {
			t.Fatal(err)
		}
		if got := rec.lines[logs[0].ID]; got == nil || got.String() != stored.String() {
			t.Errorf("step %s: observer got lines %q, the store has %q", name, got, stored.String())
		}
	}
	got := strings.Join(rec.events, "\n")
	for _, want := range []string{"build started\nlog stdio added", "log stdio finished with", "build finished"} {
		if !strings.Contains(got, want) {
			t.Errorf("events:\n%s\nwant them to contain %q", got, want)
		}
	}
	if n := strings.Count(got, "log stdio added"); n != 2 {
		t.Errorf("%d logs added, want 2:\n%s", n, got)
	}
	if !strings.HasSuffix(got, "build finished") {
		t.Errorf("events:\n%s\nwant the build's end last", got)
	}
}
