package webui

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/store"
)

// This file serves /metrics in Prometheus's text format (version 0.0.4).
// Gauges (queue length, workers, running builds) are read from the
// master when scraped; counters and histograms are fed by the master's
// event bus from the moment the web server starts, so they count from
// zero after a restart, as Prometheus expects of counters.
//
// The exposition is written by hand (metrics_text.go) rather than with
// github.com/prometheus/client_golang: the format is small, stable and
// fully specified, and the library would bring about ten modules
// (protobuf among them) into a binary that has six direct dependencies.

// Histogram bucket bounds, in seconds. Waits run from instant (an idle
// worker) to hours (a queue behind a long build); builds from seconds to
// hours.
var (
	waitBuckets     = []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400}
	durationBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 28800}
)

// metrics holds what the event bus fed. It is safe for concurrent use.
type metrics struct {
	bus *event.Bus

	mu sync.Mutex
	// submitted holds, for requests that wait, their builder and when
	// they were submitted, until their build starts.
	submitted map[int64]submission
	wait      map[string]*histogram // by builder name
	duration  map[string]*histogram // by builder name
	finished  map[[2]string]uint64  // by builder name and result name
	logBytes  uint64
	logLines  uint64
}

type submission struct {
	builder string
	at      time.Time
}

// newMetrics returns metrics fed by bus (which may be nil: then only the
// gauges read at scrape time move).
func newMetrics(bus *event.Bus) *metrics {
	m := &metrics{
		bus:       bus,
		submitted: map[int64]submission{},
		wait:      map[string]*histogram{},
		duration:  map[string]*histogram{},
		finished:  map[[2]string]uint64{},
	}
	if bus != nil {
		bus.Tap(m.observe)
	}
	return m
}

// observe counts one event. It runs in the publisher's goroutine (the
// build's, the dispatcher caller's) and only updates memory.
func (m *metrics) observe(e event.Event) {
	k := e.Keys[0]
	ev := k[len(k)-1]
	m.mu.Lock()
	defer m.mu.Unlock()
	switch v := e.Value.(type) {
	case store.BuildRequest:
		switch ev {
		case "new":
			if !v.SubmittedAt.IsZero() {
				m.submitted[v.ID] = submission{v.BuilderName, v.SubmittedAt}
			}
		case "complete", "canceled":
			delete(m.submitted, v.ID)
		}
	case store.Build:
		switch ev {
		case "new":
			// A request built again after a retry counts once: its first
			// wait is the one people saw.
			if s, ok := m.submitted[v.RequestID]; ok {
				delete(m.submitted, v.RequestID)
				hist(m.wait, s.builder, waitBuckets).observe(v.StartedAt.Sub(s.at).Seconds())
			}
		case "finished":
			if !v.StartedAt.IsZero() && !v.CompleteAt.IsZero() {
				hist(m.duration, v.BuilderName, durationBuckets).observe(v.CompleteAt.Sub(v.StartedAt).Seconds())
			}
			m.finished[[2]string{v.BuilderName, v.Results.String()}]++
		}
	case event.LogLines:
		m.logBytes += uint64(v.Bytes)
		m.logLines += uint64(v.Last - v.First + 1)
	}
}

func hist(by map[string]*histogram, name string, bounds []float64) *histogram {
	h := by[name]
	if h == nil {
		h = newHistogram(bounds)
		by[name] = h
	}
	return h
}

// GET /metrics
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	builders, err := st.ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	pending, err := st.PendingCounts(ctx)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	workers, err := st.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	live := s.m.WorkerStates()

	var x exposition
	x.family("starforge_queue_length", "gauge", "Build requests waiting in the queue (neither claimed nor complete), by builder.")
	total := 0
	for _, b := range builders {
		x.sample("starforge_queue_length", labels{{"builder", b.Name}}, float64(pending[b.ID]))
		total += pending[b.ID]
	}
	x.family("starforge_queue_length_total", "gauge", "Build requests waiting in the queue, all builders.")
	x.sample("starforge_queue_length_total", nil, float64(total))

	x.family("starforge_worker_connected", "gauge", "1 if the worker is connected, else 0.")
	connected, running := 0, 0
	for _, wk := range workers {
		c := wk.Connected
		if ls, ok := live[wk.Name]; ok {
			c = ls.Connected
		}
		x.sample("starforge_worker_connected", labels{{"worker", wk.Name}}, b2f(c))
		if c {
			connected++
		}
	}
	for _, ls := range live {
		running += len(ls.RunningBuilds)
	}
	x.family("starforge_workers_connected", "gauge", "Workers connected to the master.")
	x.sample("starforge_workers_connected", nil, float64(connected))
	x.family("starforge_builds_running", "gauge", "Builds running now.")
	x.sample("starforge_builds_running", nil, float64(running))

	m := s.live.metrics
	m.mu.Lock()
	x.family("starforge_build_wait_seconds", "histogram", "Time from a build request's submission to its build's start, by builder.")
	for _, name := range sortedKeys(m.wait) {
		x.histogram("starforge_build_wait_seconds", labels{{"builder", name}}, m.wait[name])
	}
	x.family("starforge_build_duration_seconds", "histogram", "Duration of finished builds, by builder.")
	for _, name := range sortedKeys(m.duration) {
		x.histogram("starforge_build_duration_seconds", labels{{"builder", name}}, m.duration[name])
	}
	x.family("starforge_builds_finished_total", "counter", "Builds finished, by builder and result.")
	keys := make([][2]string, 0, len(m.finished))
	for k := range m.finished {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	for _, k := range keys {
		x.sample("starforge_builds_finished_total", labels{{"builder", k[0]}, {"result", k[1]}}, float64(m.finished[k]))
	}
	x.family("starforge_log_bytes_total", "counter", "Bytes of log lines stored.")
	x.sample("starforge_log_bytes_total", nil, float64(m.logBytes))
	x.family("starforge_log_lines_total", "counter", "Log lines stored.")
	x.sample("starforge_log_lines_total", nil, float64(m.logLines))
	m.mu.Unlock()

	subs, dropped := m.bus.Stats()
	x.family("starforge_websocket_clients", "gauge", "Clients following live events on /ws.")
	x.sample("starforge_websocket_clients", nil, float64(s.live.wsClients.Load()))
	x.family("starforge_event_subscribers", "gauge", "Consumers of the master's event bus (websocket clients among them).")
	x.sample("starforge_event_subscribers", nil, float64(subs))
	x.family("starforge_event_subscribers_dropped_total", "counter", "Event consumers disconnected for falling behind.")
	x.sample("starforge_event_subscribers_dropped_total", nil, float64(dropped))

	h := w.Header()
	h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(x.bytes()) // a write error means the scraper left
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
