package master_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
	"github.com/starforge/starforge/worker"
)

// startAgent runs the starforge worker agent in this process as worker
// name until stop is called or the test ends.
func startAgent(t *testing.T, m *master.Master, name, password string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &worker.Agent{
		Master:     m.WorkerAddr(),
		Name:       name,
		Password:   password,
		Basedir:    t.TempDir(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// eventLog reads a subscription and keeps what arrived.
type eventLog struct {
	t   *testing.T
	sub *event.Subscription
	got []event.Message
}

// until reads messages until one's key ends with suffix and matches
// prefix, and returns it.
func (l *eventLog) until(prefix, suffix string) event.Message {
	l.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-l.sub.C():
			if !ok {
				l.t.Fatalf("subscription ended: %v", l.sub.Err())
			}
			l.got = append(l.got, m)
			k := m.Key.String()
			if strings.HasPrefix(k, prefix) && strings.HasSuffix(k, suffix) {
				return m
			}
		case <-timeout:
			l.t.Fatalf("no %s…%s event; got %s", prefix, suffix, l.keys())
		}
	}
}

func (l *eventLog) keys() string {
	var ks []string
	for _, m := range l.got {
		ks = append(ks, m.Key.String())
	}
	return strings.Join(ks, " ")
}

// TestEvents runs a build, a cancelled request, a change and a worker's
// coming and going through a real master, and checks what its bus
// published: every kind of event, in order, and the log lines exactly as
// stored.
func TestEvents(t *testing.T) {
	m := startMaster(t, `
worker("w", "pw")
builder("proj", ["w"], [shell("echo hello; echo world >&2", name = "greet")])
force_scheduler("plain", ["proj"])
`)
	ctx := context.Background()
	var filters []event.Filter
	for _, p := range []string{"buildrequests/*/*", "builds/*/*", "steps/*/*", "logs/*/*", "workers/*/*", "changes/*/*"} {
		f, err := event.ParseFilter(p)
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, f)
	}
	sub := m.Events().Subscribe(10000, filters...)
	defer sub.Close()
	l := &eventLog{t: t, sub: sub}

	stopAgent := startAgent(t, m, "w", "pw")
	w := l.until("workers/", "/connected").Value.(store.Worker)
	if w.Name != "w" || !w.Connected {
		t.Errorf("connected event carries %+v", w)
	}

	_, reqs, err := m.Force(ctx, webui.ForceRequest{Scheduler: "plain", Builders: []string{"proj"}})
	if err != nil {
		t.Fatal(err)
	}
	rid := reqs[0].ID
	l.got = nil
	fin := l.until("builds/", "/finished").Value.(store.Build)
	l.until(fmt.Sprintf("buildrequests/%d/", rid), "/complete")
	var names []string
	var lines bytes.Buffer
	var logID int64
	for _, msg := range l.got {
		k := msg.Key
		if k[0] == "workers" {
			// A worker's own events (its state) may come at any point.
			continue
		}
		names = append(names, k[0]+" "+k[len(k)-1])
		if ll, ok := msg.Value.(event.LogLines); ok {
			if ll.First != strings.Count(lines.String(), "\n") {
				t.Errorf("append of lines %d..%d after %d lines", ll.First, ll.Last, strings.Count(lines.String(), "\n"))
			}
			lines.Write(ll.Lines)
			logID = ll.Log.ID
		}
	}
	want := []string{
		"buildrequests new", "buildrequests claimed", "builds new", "steps started",
		"logs new", "logs append", "logs finished", "steps finished", "builds finished", "buildrequests complete",
	}
	if got := dedupe(names); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("events (each kind once, in order of first arrival):\n%s\nwant\n%s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	var stored bytes.Buffer
	if _, err := m.Store().ReadLog(ctx, logID, 0, -1, &stored); err != nil {
		t.Fatal(err)
	}
	if lines.String() != stored.String() || !strings.Contains(stored.String(), "ohello\n") || !strings.Contains(stored.String(), "eworld\n") {
		t.Errorf("appended lines %q, the store has %q", lines.String(), stored.String())
	}
	if fin.Results != 0 || fin.CompleteAt.IsZero() {
		t.Errorf("finished build %+v", fin)
	}

	// A paused worker leaves the next request waiting; cancelling it is
	// published.
	if err := m.PauseWorker(ctx, "w", "maintenance"); err != nil {
		t.Fatal(err)
	}
	if w := l.until("workers/", "/state_updated").Value.(store.Worker); !w.Paused || w.PauseReason != "maintenance" {
		t.Errorf("state_updated event carries %+v", w)
	}
	_, reqs, err = m.Force(ctx, webui.ForceRequest{Scheduler: "plain", Builders: []string{"proj"}})
	if err != nil {
		t.Fatal(err)
	}
	l.until(fmt.Sprintf("buildrequests/%d/", reqs[0].ID), "/new")
	if err := m.CancelRequest(ctx, reqs[0].ID, "not wanted"); err != nil {
		t.Fatal(err)
	}
	if r := l.until(fmt.Sprintf("buildrequests/%d/", reqs[0].ID), "/canceled").Value.(store.BuildRequest); r.CancelReason != "not wanted" {
		t.Errorf("canceled event carries %+v", r)
	}

	cs, err := m.AddChanges(ctx, []store.Change{{Author: "ann", Revision: "abc", Branch: "main", Repository: "r"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := l.until(fmt.Sprintf("changes/%d/", cs[0].ID), "/new").Value.(store.Change); c.Revision != "abc" {
		t.Errorf("change event carries %+v", c)
	}

	stopAgent()
	if w := l.until("workers/", "/disconnected").Value.(store.Worker); w.Connected {
		t.Errorf("disconnected event carries %+v", w)
	}
}

// dedupe keeps the first of each string, in order.
func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
