package event

import (
	"strconv"

	"github.com/starforge/starforge/master/store"
)

// This file holds the routing keys of the master's events, as Buildbot's
// data API names them (its eventPathPatterns), and the event values that
// are not plain store records.
//
// Event names, the last element of a key:
//
//	builds         new, finished
//	steps          started, update (a state change before it starts), finished
//	logs           new, append, finished
//	buildrequests  new, claimed, unclaimed (back in the queue), complete, canceled
//	workers        connected, disconnected, state_updated (paused or unpaused)
//	changes        new

func id(n int64) string { return strconv.FormatInt(n, 10) }

// BuildKeys are the keys of a build event: builders/B/builds/NUMBER/ev,
// builds/ID/ev and, once it has a worker, workers/W/builds/ID/ev. The
// value is the store.Build.
func BuildKeys(b store.Build, ev string) []Key {
	keys := []Key{
		{"builders", id(b.BuilderID), "builds", strconv.Itoa(b.Number), ev},
		{"builds", id(b.ID), ev},
	}
	if b.WorkerID != 0 {
		keys = append(keys, Key{"workers", id(b.WorkerID), "builds", id(b.ID), ev})
	}
	return keys
}

// StepKeys are the keys of a step event: builds/BUILD/steps/ID/ev and
// steps/ID/ev. The value is the store.Step.
func StepKeys(s store.Step, ev string) []Key {
	return []Key{
		{"builds", id(s.BuildID), "steps", id(s.ID), ev},
		{"steps", id(s.ID), ev},
	}
}

// LogKeys are the keys of a log event: logs/ID/ev and
// steps/STEP/logs/SLUG/ev. The value is the store.Log for new and
// finished, a LogLines for append.
func LogKeys(l store.Log, ev string) []Key {
	return []Key{
		{"logs", id(l.ID), ev},
		{"steps", id(l.StepID), "logs", l.Slug, ev},
	}
}

// RequestKeys are the keys of a build request event:
// buildsets/BS/builders/B/buildrequests/ID/ev, buildrequests/ID/ev and
// builders/B/buildrequests/ID/ev. The value is the store.BuildRequest as
// the publisher knew it; only ID, BuildsetID, BuilderID and BuilderName
// are sure to be set (consumers read the rest from the store).
func RequestKeys(r store.BuildRequest, ev string) []Key {
	return []Key{
		{"buildsets", id(r.BuildsetID), "builders", id(r.BuilderID), "buildrequests", id(r.ID), ev},
		{"buildrequests", id(r.ID), ev},
		{"builders", id(r.BuilderID), "buildrequests", id(r.ID), ev},
	}
}

// WorkerKeys are the keys of a worker event: workers/ID/ev. The value is
// the store.Worker.
func WorkerKeys(w store.Worker, ev string) []Key {
	return []Key{{"workers", id(w.ID), ev}}
}

// ChangeKeys are the keys of a change event: changes/ID/ev. The value is
// the store.Change.
func ChangeKeys(c store.Change, ev string) []Key {
	return []Key{{"changes", id(c.ID), ev}}
}

// MaxInline is the most bytes of log lines a LogLines event carries;
// consumers read longer appends from the store.
const MaxInline = 64 << 10

// LogLines is the value of a log's append event: lines First..Last
// (0-based, inclusive) were stored.
type LogLines struct {
	Log         store.Log // as it is after the append (NumLines, Size)
	First, Last int
	Bytes       int // the size of the lines
	// Lines are the lines as stored (each ending in "\n", with the stream
	// character first in stdio logs), or nil if Bytes > MaxInline.
	Lines []byte
}

// NewLogLines returns the append event of lines, which log l (as it was
// before) stored as lines first..last. It copies lines if it keeps them.
func NewLogLines(l store.Log, first, last int, lines []byte) LogLines {
	l.NumLines = last + 1
	l.Size += int64(len(lines))
	ll := LogLines{Log: l, First: first, Last: last, Bytes: len(lines)}
	if len(lines) <= MaxInline {
		ll.Lines = append([]byte(nil), lines...)
	}
	return ll
}
