package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/store"
)

// The log viewer's benchmarks: the server time of a 1,000,000-line log's
// first screen, and the delay from a log append reaching the store to its
// websocket frame reaching a client.

const hugeLines = 1_000_000

// hugeLog makes a store in dir holding one build whose step has a
// finished log of hugeLines lines, stored as a worker sends them: 10,000
// appends of 100 lines. It returns a server over it, the log and the
// build page's path.
func hugeLog(b *testing.B, dir string) (http.Handler, store.Log, string) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	bid, err := st.EnsureBuilder(ctx, store.Builder{Name: "huge"})
	must(err)
	bd, err := st.AddBuild(ctx, store.NewBuild{BuilderID: bid, StartedAt: time.Now()})
	must(err)
	sp, err := st.AddStep(ctx, bd.ID, 1, "count")
	must(err)
	must(st.StartStep(ctx, sp.ID, time.Now()))
	l, err := st.AddLog(ctx, sp.ID, "stdio", store.LogStdio)
	must(err)
	var buf strings.Builder
	for i := 0; i < hugeLines; {
		buf.Reset()
		for range 100 {
			i++
			fmt.Fprintf(&buf, "oline %d of the huge log, with some text to make it look like output\n", i)
		}
		_, _, err := st.AppendLog(ctx, l.ID, []byte(buf.String()))
		must(err)
	}
	must(st.FinishLog(ctx, l.ID))
	l, err = st.GetLog(ctx, l.ID)
	must(err)
	if l.NumLines != hugeLines {
		b.Fatalf("the huge log has %d lines", l.NumLines)
	}
	return New(&fakeMaster{st: st}, Options{}).Handler(), l, fmt.Sprintf("/builders/%d/builds/%d", bid, bd.Number)
}

// BenchmarkLogFirstScreen is the server time of what the browser asks
// for when a 1,000,000-line log is opened: the log's length, then its
// first page of 500 lines (a finished log), its last (a running one,
// which opens at the end) or one in the middle (a link to a line); and
// the build page itself.
func BenchmarkLogFirstScreen(b *testing.B) {
	h, l, page := hugeLog(b, b.TempDir())
	get := func(b *testing.B, paths ...string) {
		reqs := make([]*http.Request, len(paths))
		for i, p := range paths {
			reqs[i] = httptest.NewRequest(http.MethodGet, p, nil)
		}
		b.ReportAllocs()
		for b.Loop() {
			for _, req := range reqs {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: status %d: %.300s", req.URL, w.Code, w.Body)
				}
				if strings.Contains(req.URL.Path, "/contents") && strings.Count(w.Body.String(), `\n`) != 500 {
					b.Fatalf("GET %s: not 500 lines: %.200s", req.URL, w.Body)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	}
	meta := fmt.Sprintf("/api/v2/logs/%d", l.ID)
	contents := func(first int) string {
		return fmt.Sprintf("/api/v2/logs/%d/contents?first=%d&last=%d", l.ID, first, first+499)
	}
	b.Run("head", func(b *testing.B) { get(b, meta, contents(0)) })
	b.Run("tail", func(b *testing.B) { get(b, meta, contents(hugeLines-500)) })
	b.Run("middle", func(b *testing.B) { get(b, meta, contents(hugeLines/2)) })
	b.Run("buildpage", func(b *testing.B) { get(b, page) })
}

// BenchmarkLogLineDelay is the delay from lines being appended to the
// store to their frame reaching a websocket client over a real socket:
// what the build runner does (store, then publish) and what /ws does.
// It reports the median and 99th percentile.
func BenchmarkLogLineDelay(b *testing.B) {
	ctx := context.Background()
	st := openStore(b)
	bid, err := st.EnsureBuilder(ctx, store.Builder{Name: "b"})
	if err != nil {
		b.Fatal(err)
	}
	bd, err := st.AddBuild(ctx, store.NewBuild{BuilderID: bid, StartedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	sp, err := st.AddStep(ctx, bd.ID, 1, "s")
	if err != nil {
		b.Fatal(err)
	}
	l, err := st.AddLog(ctx, sp.ID, "stdio", store.LogStdio)
	if err != nil {
		b.Fatal(err)
	}
	bus := event.New()
	srv := httptest.NewServer(New(busMaster{&fakeMaster{st: st}, bus}, Options{}).Handler())
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]any{"cmd": "startConsuming", "path": fmt.Sprintf("logs/%d/append", l.ID), "_id": 1}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := conn.ReadMessage(); err != nil { // the ack
		b.Fatal(err)
	}
	lines := []byte(strings.Repeat("oa line of build output, as a compiler prints it\n", 10))
	var delays []time.Duration
	for b.Loop() {
		t0 := time.Now()
		first, last, err := st.AppendLog(ctx, l.ID, lines)
		if err != nil {
			b.Fatal(err)
		}
		ll := event.NewLogLines(l, first, last, lines)
		l = ll.Log
		bus.Publish(ll, event.LogKeys(l, "append")...)
		if _, _, err := conn.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		delays = append(delays, time.Since(t0))
	}
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
}
