package webui

import (
	"context"
	"fmt"
	"github.com/starforge/starforge/internal/testenv"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLogGrows follows a log while lines are appended, as the build page does.
func TestLogGrows(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.growLog.ID
	var meta struct{ Logs []logJSON }
	var chunk struct {
		LogChunks []struct {
			FirstLine int
			Content   string
		}
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/logs/%d", id), &meta)
	if l := meta.Logs[0]; l.NumLines != 1 || l.Complete {
		t.Fatalf("before: %+v", l)
	}
	if _, _, err := f.st.AppendLog(ctx, id, []byte("osecond\nethird\n")); err != nil {
		t.Fatal(err)
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/logs/%d", id), &meta)
	if l := meta.Logs[0]; l.NumLines != 3 || l.Complete {
		t.Fatalf("after append: %+v", l)
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/logs/%d/contents?first=1", id), &chunk)
	if c := chunk.LogChunks[0]; c.FirstLine != 1 || c.Content != "osecond\nethird\n" {
		t.Errorf("new lines: %+v", c)
	}
	if err := f.st.FinishLog(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.getJSON(t, fmt.Sprintf("/api/v2/logs/%d", id), &meta)
	if l := meta.Logs[0]; l.NumLines != 3 || !l.Complete {
		t.Fatalf("finished: %+v", l)
	}
}

// TestEmptyStore renders every page and list of a master with nothing in it.
func TestEmptyStore(t *testing.T) {
	m := &fakeMaster{st: openStore(t)}
	srv := httptest.NewServer(New(m, Options{}).Handler())
	defer srv.Close()
	f := &fixture{srv: srv}
	for _, p := range []string{"/", "/workers", "/api/v2/builders", "/api/v2/builds", "/api/v2/workers",
		"/api/v2/buildrequests?pending=1", "/api/v2/forceschedulers"} {
		st, _, body := f.get(t, p)
		if st != 200 {
			t.Errorf("%s: status %d", p, st)
		}
		if strings.HasPrefix(p, "/api/") && (!strings.Contains(string(body), `":[]`) || !strings.Contains(string(body), `"meta":{"total":0}`)) {
			t.Errorf("%s: %s", p, body)
		}
	}
}

// TestInternalErrors checks that store failures give a 500 whose details go
// to the log, not to the client.
func TestInternalErrors(t *testing.T) {
	st := openStore(t)
	var logged testenv.Buffer
	m := &fakeMaster{st: st}
	srv := httptest.NewServer(New(m, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}).Handler())
	defer srv.Close()
	st.Close() // every read now fails
	f := &fixture{srv: srv}
	for _, p := range []string{"/api/v2/builds", "/api/v2/logs/1/contents", "/api/v2/builders/x", "/", "/workers"} {
		logged.Reset()
		status, _, body := f.get(t, p)
		if status != 500 {
			t.Errorf("%s: status %d", p, status)
		}
		if !strings.Contains(string(body), "internal server error") || strings.Contains(string(body), "closed") {
			t.Errorf("%s: body %s", p, body)
		}
		if out := logged.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "closed") {
			t.Errorf("%s: log %q", p, out)
		}
	}
}
