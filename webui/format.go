package webui

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/starforge/starforge/master/result"
)

// This file formats values for the pages. static/app.js has twins of
// formatDuration and formatAgo for the figures it keeps live; keep both in
// step.

// formatDuration writes d the way the pages show durations: "45s",
// "1m 23s", "2h 5m", "3d 4h" — two units at most, which is all a reader
// of a build list takes in.
func formatDuration(d time.Duration) string {
	s := int64(d / time.Second)
	if s < 0 {
		s = 0
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm %ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
	}
}

// formatAgo says how long before now t was, in words: "just now",
// "5 seconds ago", "2 minutes ago", "3 days ago". A t after now (clock
// skew between master and browser, say) counts as just now.
func formatAgo(t, now time.Time) string {
	d := now.Sub(t)
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s ago"
	}
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return plural(int64(d/time.Second), "second")
	case d < time.Hour:
		return plural(int64(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int64(d/time.Hour), "hour")
	case d < 30*24*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d < 365*24*time.Hour:
		return plural(int64(d/(30*24*time.Hour)), "month")
	default:
		return plural(int64(d/(365*24*time.Hour)), "year")
	}
}

// elapsed is the duration from start to end, or to now while end is zero
// (still running); zero if start is zero (not started).
func elapsed(start, end, now time.Time) time.Duration {
	if start.IsZero() {
		return 0
	}
	if end.IsZero() {
		end = now
	}
	return end.Sub(start)
}

// statusClass is the CSS class, and the word shown, for something with
// result r: the result's name once complete, "running" once started,
// "pending" before.
func statusClass(r result.Result, started, complete bool) string {
	switch {
	case complete:
		if r >= result.Success && r <= result.Cancelled {
			return r.String()
		}
		return "unknown"
	case started:
		return "running"
	default:
		return "pending"
	}
}

// unixAttr is t as unix seconds with millisecond precision for a data-
// attribute read by the script, or "" for the zero time.
func unixAttr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

// propertyText shows a property value: strings as they are, anything else
// as JSON, the way Buildbot's properties table does.
func propertyText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
