package webui

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/starforge/starforge/master/store"
)

type changesData struct {
	layout
	Pollers    []PollerState
	Schedulers []SchedulerState
	Changes    []store.Change // newest first
}

// recentChanges is how many changes the changes page shows.
const recentChanges = 50

// GET /changes: where commits come from (the pollers), what the schedulers
// wait for, and the latest changes.
func (s *Server) changesPage(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.m.Store().ListChanges(r.Context(), store.ChangeFilter{Limit: recentChanges})
	if err != nil {
		return fmt.Errorf("list changes: %w", err)
	}
	d := changesData{
		layout:     layout{Site: s.m.Title(), Title: "Changes", Nav: "changes", Refresh: 5},
		Pollers:    s.m.Pollers(),
		Schedulers: s.m.Schedulers(),
		Changes:    cs,
	}
	return s.render(w, http.StatusOK, "changes", d)
}

type pollerJSON struct {
	Name      string            `json:"name"`
	Repo      string            `json:"repository"`
	Interval  float64           `json:"interval"` // seconds; 0: at launch and when asked
	Polling   bool              `json:"polling"`
	LastPoll  unixTime          `json:"last_poll"`
	LastError *string           `json:"last_error"`
	NextPoll  unixTime          `json:"next_poll"`
	Refs      map[string]string `json:"refs"`
}

// GET /api/v2/changesources: the git pollers and their state, with the
// list conventions.
func (s *Server) listChangeSources(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[pollerJSON]("changesources"))
	if err != nil {
		return err
	}
	ps := s.m.Pollers()
	out := make([]pollerJSON, len(ps))
	for i, p := range ps {
		refs := p.Refs
		if refs == nil {
			refs = map[string]string{}
		}
		out[i] = pollerJSON{Name: p.Name, Repo: p.Repo, Interval: p.Interval.Seconds(), Polling: p.Polling,
			LastPoll: unixTime(p.LastPoll), LastError: nullString(p.LastError), NextPoll: unixTime(p.NextPoll), Refs: refs}
	}
	writeSmallList(w, q, out)
	return nil
}

type schedulerJSON struct {
	SchedulerID int      `json:"schedulerid"` // its place in the configuration, from 1
	Name        string   `json:"name"`
	Enabled     bool     `json:"enabled"`
	Kind        string   `json:"kind"`
	Builders    []string `json:"builder_names"`
	Waiting     *string  `json:"waiting"`
	Next        unixTime `json:"next"`
	Pending     int      `json:"pending_changes"`
	LastRun     unixTime `json:"last_run"`
	Error       *string  `json:"error"`
}

// GET /api/v2/schedulers: Buildbot's fields, and what each waits for,
// with the list conventions.
func (s *Server) listSchedulers(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[schedulerJSON]("schedulers"))
	if err != nil {
		return err
	}
	ss := s.m.Schedulers()
	out := make([]schedulerJSON, len(ss))
	for i, sc := range ss {
		out[i] = schedulerJSON{SchedulerID: i + 1, Name: sc.Name, Enabled: !sc.Disabled, Kind: sc.Kind,
			Builders: slices.Clone(sc.Builders), Waiting: nullString(sc.Waiting), Next: unixTime(sc.Next),
			Pending: sc.Pending, LastRun: unixTime(sc.LastRun), Error: nullString(sc.Error)}
		if out[i].Builders == nil {
			out[i].Builders = []string{}
		}
	}
	writeSmallList(w, q, out)
	return nil
}

// every formats a poll interval for the changes page.
func every(d time.Duration) string {
	if d == 0 {
		return "at launch and when asked"
	}
	return "every " + formatDuration(d)
}
