package webui

import (
	"net/http"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/store"
)

func TestQueuePage(t *testing.T) {
	f := newFixture(t)
	f.m.mu.Lock()
	f.m.reasons = map[int64]string{f.pending.ID: "no worker connected for builder linux (it runs on w1)"}
	f.m.mu.Unlock()
	status, _, body := f.get(t, "/queue")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	page := string(body)
	for _, want := range []string{"Queue", `id="request-`, "no worker connected for builder linux (it runs on w1)", "1 pending"} {
		if !strings.Contains(page, want) {
			t.Errorf("queue page lacks %q", want)
		}
	}
}

func TestBadge(t *testing.T) {
	f := newFixture(t)
	// The badge shows the newest finished build of the builder.
	var newest store.Build
	for _, b := range f.finished {
		if b.BuilderID == f.linux && b.ID > newest.ID {
			newest = b
		}
	}
	if newest.ID == 0 {
		t.Fatal("fixture has no finished linux build")
	}
	tests := []struct {
		path   string
		status int
		want   []string
	}{
		{"/badges/linux.svg", 200, []string{"<svg", "linux", newest.Results.String(), badgeColor(newest.Results)}},
		{"/badges/empty.svg", 200, []string{"no builds"}},
		{"/badges/linux.svg?branch=nosuch", 200, []string{"no builds"}},
		{"/badges/nosuch.svg", 404, nil},
		{"/badges/linux.png", 404, nil},
	}
	for _, tt := range tests {
		status, h, body := f.get(t, tt.path)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.path, status, tt.status)
			continue
		}
		if status == 200 && h.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("%s: content type %q", tt.path, h.Get("Content-Type"))
		}
		for _, w := range tt.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: lacks %q:\n%s", tt.path, w, body)
			}
		}
	}
}
