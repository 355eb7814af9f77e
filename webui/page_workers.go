package webui

import (
	"fmt"
	"net/http"
	"time"

	"github.com/starforge/starforge/master/store"
)

type workersData struct {
	layout
	Workers []workerRow
}

type workerRow struct {
	Worker  store.Worker // with the live state merged in
	Since   time.Time    // when it last connected or disconnected, whichever it is now
	Running []store.Build
	OS      string
	Version string
	NumCPUs string
	// Donated desktops: hours of builds given.
	Donated      bool
	DonatedHours float64
	// Latent: a latent worker's slot, and what its instance does.
	Latent *LatentState
}

// GET /workers
func (s *Server) workersPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	workers, err := st.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	// One query for every running build rather than one per worker.
	running, err := st.ListBuilds(ctx, store.BuildFilter{RunningOnly: true, Limit: maxLimit})
	if err != nil {
		return fmt.Errorf("list running builds: %w", err)
	}
	byWorker := map[int64][]store.Build{}
	for _, b := range running {
		byWorker[b.WorkerID] = append(byWorker[b.WorkerID], b)
	}
	live := s.m.WorkerStates()
	d := workersData{layout: layout{Site: s.m.Title(), Title: "Workers", Nav: "workers", Refresh: 5}}
	for _, wk := range workers {
		ls, haveLive := live[wk.Name]
		if haveLive {
			wk.Connected, wk.Paused, wk.PauseReason = ls.Connected, ls.Paused, ls.PauseReason
		}
		row := workerRow{
			Worker:  wk,
			Since:   wk.LastDisconnected,
			Running: byWorker[wk.ID],
			OS:      infoText(wk.Info, "os", "os_info", "system"),
			Version: infoText(wk.Info, "version"),
			NumCPUs: infoText(wk.Info, "numcpus"),

			Donated:      ls.Donated,
			DonatedHours: ls.DonatedHours,
			Latent:       ls.Latent,
		}
		if wk.Connected {
			row.Since = wk.LastConnected
		}
		d.Workers = append(d.Workers, row)
	}
	return s.render(w, http.StatusOK, "workers", d)
}

// infoText is the first of keys present in a worker's info, as text.
func infoText(info map[string]any, keys ...string) string {
	for _, k := range keys {
		if v, ok := info[k]; ok && v != nil {
			return propertyText(v)
		}
	}
	return ""
}
