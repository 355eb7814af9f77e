package webui

import (
	"context"

	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/store"
)

// logAppendJSON is the message of a logs/ID/append event: the log as
// /api/v2/logs/ID shows it after the append, and (extensions) the lines
// added, so that a log view shows them without another request.
type logAppendJSON struct {
	logJSON
	FirstLine int `json:"firstline"` // the first line added, 0-based
	LastLine  int `json:"lastline"`  // the last line added
	// Content holds lines firstline..lastline as /contents gives them,
	// stream characters included; null when too long to carry (over 64
	// KiB): read them from /contents.
	Content *string `json:"content"`
}

// eventJSON is an event's value as the REST API shows the resource.
func (s *Server) eventJSON(ctx context.Context, v any) any {
	switch v := v.(type) {
	case store.Build:
		return toBuildJSON(v)
	case store.Step:
		return toStepJSON(v)
	case store.Log:
		return toLogJSON(v)
	case event.LogLines:
		j := logAppendJSON{logJSON: toLogJSON(v.Log), FirstLine: v.First, LastLine: v.Last}
		if v.Lines != nil {
			c := string(v.Lines)
			j.Content = &c
		}
		return j
	case store.BuildRequest:
		// The event names the request; the store has all of it.
		if r, err := s.m.Store().GetRequest(ctx, v.ID); err == nil {
			v = r
		}
		return toRequestJSON(v, "")
	case store.Worker:
		return toWorkerJSON(v, WorkerState{}, false)
	case store.Change:
		return toChangeJSON(v)
	}
	return v
}
