package webui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/master/store"
)

// pageSet holds one parsed template per page, each combining the page's
// file with the shared layout.
type pageSet struct {
	byName map[string]*template.Template
}

// pageNames are the files under templates/ that are pages (layout.html
// holds what they share).
var pageNames = []string{"home", "builder", "build", "workers", "queue", "changes", "error"}

// morePageNames are the pages of page_builders.go, page_console.go,
// page_grid.go and page_stats.go.
var morePageNames = []string{"builders", "console", "grid", "stats", "jobs", "job"}

func mustParsePages(a *assets) *pageSet {
	funcs := template.FuncMap{
		"asset": a.url,
		"ago":   func(t time.Time) string { return formatAgo(t, time.Now()) },
		"abs":   func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"unix":  unixAttr,
		"now":   func() string { return unixAttr(time.Now()) },
		"dur": func(start, end time.Time) string {
			return formatDuration(elapsed(start, end, time.Now()))
		},
		"buildClass": func(b store.Build) string {
			return statusClass(b.Results, !b.StartedAt.IsZero(), !b.CompleteAt.IsZero())
		},
		"stepClass": func(s store.Step) string {
			return statusClass(s.Results, !s.StartedAt.IsZero(), !s.CompleteAt.IsZero())
		},
		"buildURL": func(b store.Build) string {
			return fmt.Sprintf("/builders/%d/builds/%d", b.BuilderID, b.Number)
		},
		"short": shortRevision,
		"every": every,
		"firstLine": func(s string) string {
			first, _, _ := strings.Cut(s, "\n")
			return first
		},
		"join":  func(ss []string) string { return strings.Join(ss, "\n") },
		"prop":  propertyText,
		"label": schedulerLabel,
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	ps := &pageSet{byName: map[string]*template.Template{}}
	for _, name := range append(pageNames, morePageNames...) {
		t := template.Must(base.Clone())
		ps.byName[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return ps
}

// layout is what every page passes to the shared layout template.
type layout struct {
	Site    string // the master's title
	Title   string // this page's title
	Nav     string // the navigation entry to mark current: "home", "workers", "queue" or ""
	Refresh int    // if > 0, the script refreshes [data-live] parts every Refresh seconds
	Viewer  viewer // who reads the page (auth.go); render sets it
}

// pageFunc renders a page. Like apiFunc it returns its error rather than
// writing it, and must write nothing when it does.
type pageFunc func(w http.ResponseWriter, r *http.Request) error

// page adapts f to http.Handler, rendering its errors as an HTML error page.
func (s *Server) page(f pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w = withViewer(w, r) // auth_view.go
		err := f(w, r)
		if err == nil {
			return
		}
		st := s.logIfInternal(r, err)
		data := struct {
			layout
			Status     int
			StatusText string
			Message    string
		}{
			layout:     layout{Site: s.m.Title(), Title: http.StatusText(st)},
			Status:     st,
			StatusText: http.StatusText(st),
			Message:    clientMessage(err, st),
		}
		if err := s.render(w, st, "error", data); err != nil {
			s.log.Error("webui: rendering error page", "err", err)
			http.Error(w, data.Message, st)
		}
	})
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes page name with data into a buffer first, so that a
// template failure becomes an error (and a clean 500) instead of half a
// page, then writes it with status.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	data = setViewer(w, data) // auth_view.go
	if err := s.pages.byName[name].ExecuteTemplate(buf, "layout", data); err != nil {
		return fmt.Errorf("render %s page: %w", name, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w) // a write error means the client left
	return nil
}

// shortRevision abbreviates a git hash as git does; other revisions (svn
// numbers, tags) are shown whole.
func shortRevision(rev string) string {
	if len(rev) == 40 && strings.Trim(rev, "0123456789abcdef") == "" {
		return rev[:7]
	}
	return rev
}
