package webui

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// This file holds the JSON shapes of the REST API. Field names are
// Buildbot's, so Buildbot clients can read them; fields Buildbot does not
// have are marked as extensions.

// unixTime is a time sent as unix seconds with millisecond precision, or
// null for the zero time (not started, not finished).
type unixTime time.Time

func (t unixTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(tt.UnixMilli())/1000, 'f', -1, 64), nil
}

// resultJSON is a result sent as Buildbot's integer, or null for
// result.None (not finished).
type resultJSON result.Result

func (r resultJSON) MarshalJSON() ([]byte, error) {
	if result.Result(r) == result.None {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, int64(r), 10), nil
}

// nullString is s, or nil (JSON null) if s is empty, as Buildbot sends
// unset optional strings.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type meta struct {
	Total int `json:"total"` // number of items in this reply
}

type errorBody struct {
	Error string `json:"error"`
}

type builderJSON struct {
	BuilderID   int64    `json:"builderid"`
	Name        string   `json:"name"`
	Description *string  `json:"description"`
	Tags        []string `json:"tags"`
}

func toBuilderJSON(b store.Builder) builderJSON {
	tags := b.Tags
	if tags == nil {
		tags = []string{}
	}
	return builderJSON{BuilderID: b.ID, Name: b.Name, Description: nullString(b.Description), Tags: tags}
}

type buildJSON struct {
	BuildID        int64          `json:"buildid"`
	Number         int            `json:"number"`
	BuilderID      int64          `json:"builderid"`
	BuildRequestID int64          `json:"buildrequestid"`
	BuildsetID     int64          `json:"buildsetid"`   // extension
	BuilderName    string         `json:"builder_name"` // extension: saves a lookup
	WorkerID       int64          `json:"workerid"`
	WorkerName     string         `json:"worker_name"` // extension
	StartedAt      unixTime       `json:"started_at"`
	CompleteAt     unixTime       `json:"complete_at"`
	Complete       bool           `json:"complete"`
	StateString    string         `json:"state_string"`
	Results        resultJSON     `json:"results"`
	Properties     map[string]any `json:"properties"` // always empty: see /builds/{id}/properties
}

var noProperties = map[string]any{}

func toBuildJSON(b store.Build) buildJSON {
	return buildJSON{
		BuildID:        b.ID,
		Number:         b.Number,
		BuilderID:      b.BuilderID,
		BuildRequestID: b.RequestID,
		BuildsetID:     b.BuildsetID,
		BuilderName:    b.BuilderName,
		WorkerID:       b.WorkerID,
		WorkerName:     b.WorkerName,
		StartedAt:      unixTime(b.StartedAt),
		CompleteAt:     unixTime(b.CompleteAt),
		Complete:       !b.CompleteAt.IsZero(),
		StateString:    b.StateString,
		Results:        resultJSON(b.Results),
		Properties:     noProperties,
	}
}

type stepJSON struct {
	StepID      int64      `json:"stepid"`
	Number      int        `json:"number"`
	Name        string     `json:"name"`
	BuildID     int64      `json:"buildid"`
	StartedAt   unixTime   `json:"started_at"`
	CompleteAt  unixTime   `json:"complete_at"`
	Complete    bool       `json:"complete"`
	StateString string     `json:"state_string"`
	Results     resultJSON `json:"results"`
	Hidden      bool       `json:"hidden"`
	URLs        []struct{} `json:"urls"` // always empty for now
}

func toStepJSON(s store.Step) stepJSON {
	return stepJSON{
		StepID:      s.ID,
		Number:      s.Number,
		Name:        s.Name,
		BuildID:     s.BuildID,
		StartedAt:   unixTime(s.StartedAt),
		CompleteAt:  unixTime(s.CompleteAt),
		Complete:    !s.CompleteAt.IsZero(),
		StateString: s.StateString,
		Results:     resultJSON(s.Results),
		Hidden:      s.Hidden,
		URLs:        []struct{}{},
	}
}

type logJSON struct {
	LogID    int64  `json:"logid"`
	Name     string `json:"name"`
	Slug     string `json:"slug"`
	StepID   int64  `json:"stepid"`
	Complete bool   `json:"complete"`
	NumLines int    `json:"num_lines"`
	Type     string `json:"type"`
}

func toLogJSON(l store.Log) logJSON {
	return logJSON{LogID: l.ID, Name: l.Name, Slug: l.Slug, StepID: l.StepID, Complete: l.Complete, NumLines: l.NumLines, Type: l.Type}
}

type masterRef struct {
	MasterID int `json:"masterid"`
}

type workerJSON struct {
	WorkerID    int64          `json:"workerid"`
	Name        string         `json:"name"`
	WorkerInfo  map[string]any `json:"workerinfo"`
	Paused      bool           `json:"paused"`
	PauseReason *string        `json:"pause_reason"`
	Graceful    bool           `json:"graceful"`
	// ConnectedTo is Buildbot's way of saying connected: one entry per
	// master. Starforge has one master, id 1.
	ConnectedTo      []masterRef `json:"connected_to"`
	Connected        bool        `json:"connected"`         // extension
	LastConnected    unixTime    `json:"last_connected"`    // extension
	LastDisconnected unixTime    `json:"last_disconnected"` // extension
	RunningBuilds    []int64     `json:"running_builds"`    // extension: build ids
	// Extensions for donated desktops: whether the worker is one, and the
	// hours of builds it has given.
	Donated           bool    `json:"donated"`
	DonatedBuildHours float64 `json:"donated_build_hours"`
	// Extensions for the slots of latent workers (api_latent.go): null,
	// 0 or false for other workers.
	LatentWorker           *string  `json:"latent_worker"`            // the latent worker the slot belongs to
	LatentState            *string  `json:"latent_state"`             // stopped, starting, running, stopping
	LatentStopReason       *string  `json:"latent_stop_reason"`       // while stopping: why
	LatentInstance         *string  `json:"latent_instance"`          // the instance's name, while there is one
	LatentSince            unixTime `json:"latent_since"`             // when it entered latent_state
	LatentFailures         int      `json:"latent_failures"`          // the latent worker's failures in a row
	LatentLastError        *string  `json:"latent_last_error"`        // the last of them
	LatentQuarantinedUntil unixTime `json:"latent_quarantined_until"` // no start before
	LatentDisabled         bool     `json:"latent_disabled"`          // until an admin enables it again
	LatentDisabledReason   *string  `json:"latent_disabled_reason"`
}

// toWorkerJSON merges a stored worker with its live state, if the master
// reported one; the live state wins because the store lags behind it.
func toWorkerJSON(w store.Worker, live WorkerState, haveLive bool) workerJSON {
	j := workerJSON{
		WorkerID:         w.ID,
		Name:             w.Name,
		WorkerInfo:       w.Info,
		Paused:           w.Paused,
		PauseReason:      nullString(w.PauseReason),
		Connected:        w.Connected,
		LastConnected:    unixTime(w.LastConnected),
		LastDisconnected: unixTime(w.LastDisconnected),
		ConnectedTo:      []masterRef{},
		RunningBuilds:    []int64{},
	}
	if haveLive {
		j.Connected = live.Connected
		j.Paused = live.Paused
		j.PauseReason = nullString(live.PauseReason)
		j.Donated, j.DonatedBuildHours = live.Donated, live.DonatedHours
		setLatentJSON(&j, live.Latent) // api_latent.go
		if live.RunningBuilds != nil {
			j.RunningBuilds = live.RunningBuilds
		}
	}
	if j.WorkerInfo == nil {
		j.WorkerInfo = map[string]any{}
	}
	if j.Connected {
		j.ConnectedTo = []masterRef{{MasterID: 1}}
	}
	return j
}

type requestJSON struct {
	BuildRequestID int64      `json:"buildrequestid"`
	BuildsetID     int64      `json:"buildsetid"`
	BuilderID      int64      `json:"builderid"`
	Priority       int        `json:"priority"`
	Claimed        bool       `json:"claimed"`
	ClaimedAt      unixTime   `json:"claimed_at"`
	Complete       bool       `json:"complete"`
	CompleteAt     unixTime   `json:"complete_at"`
	Results        resultJSON `json:"results"`
	SubmittedAt    unixTime   `json:"submitted_at"`
	WaitedFor      bool       `json:"waited_for"`
	WaitingReason  *string    `json:"waiting_reason"` // extension: why a pending request waits
	CancelReason   *string    `json:"cancel_reason"`  // extension: why it was cancelled, if it was
}

func toRequestJSON(r store.BuildRequest, reason string) requestJSON {
	return requestJSON{
		BuildRequestID: r.ID,
		BuildsetID:     r.BuildsetID,
		BuilderID:      r.BuilderID,
		Priority:       r.Priority,
		Claimed:        r.Claimed,
		ClaimedAt:      unixTime(r.ClaimedAt),
		Complete:       r.Complete,
		CompleteAt:     unixTime(r.CompleteAt),
		Results:        resultJSON(r.Results),
		SubmittedAt:    unixTime(r.SubmittedAt),
		WaitingReason:  nullString(reason),
		CancelReason:   nullString(r.CancelReason),
	}
}

type forceSchedulerJSON struct {
	Name         string           `json:"name"`
	Label        string           `json:"label"`
	BuilderNames []string         `json:"builder_names"`
	ButtonName   string           `json:"button_name"`
	AllFields    []forceFieldJSON `json:"all_fields"`
}

func toForceSchedulerJSON(f ForceScheduler) forceSchedulerJSON {
	names := f.Builders
	if names == nil {
		names = []string{}
	}
	fields := make([]forceFieldJSON, len(f.Params))
	for i, p := range f.Params {
		fields[i] = toForceFieldJSON(p)
	}
	return forceSchedulerJSON{Name: f.Name, Label: schedulerLabel(f), BuilderNames: names, ButtonName: "Force", AllFields: fields}
}

func schedulerLabel(f ForceScheduler) string {
	if f.Label != "" {
		return f.Label
	}
	return f.Name
}

// writeJSON sends v as the whole reply with status. API replies are never
// cached: pages poll them for live state.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The only possible failure is the client going away; nothing to do.
	_ = json.NewEncoder(w).Encode(v)
}

// writeCollection sends items as Buildbot's {"<name>": items, "meta": …}.
func writeCollection[T any](w http.ResponseWriter, name string, items []T) {
	if items == nil {
		items = []T{}
	}
	writeJSON(w, http.StatusOK, map[string]any{name: items, "meta": meta{Total: len(items)}})
}
