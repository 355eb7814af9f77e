package webui

import (
	"context"
	"time"

	"github.com/starforge/starforge/master/store"
)

// Master is what the web UI needs from the running master.
// Implementations are safe for concurrent use.
//
// Errors returned by Force and StopBuild may implement
// interface{ HTTPStatus() int } (found with errors.As) to choose the HTTP
// status of the reply, typically 400, 404 or 409; store.ErrNotFound gives
// 404; anything else is reported as 500 and logged.
type Master interface {
	// Title names this installation in page headers.
	Title() string
	// Store is the master's database; the web UI only reads from it.
	Store() *store.Store
	// ForceSchedulers lists the configured force schedulers.
	ForceSchedulers() []ForceScheduler
	// Force submits a buildset for r. The web UI has already checked that
	// r.Scheduler exists, that r.Builders is non-empty and that every
	// builder in it is listed by that scheduler.
	Force(ctx context.Context, r ForceRequest) (store.Buildset, []store.BuildRequest, error)
	// StopBuild asks the master to stop a running build. The web UI has
	// already checked that the build exists.
	StopBuild(ctx context.Context, buildID int64, reason string) error
	// WorkerStates is the live state of the workers the master knows,
	// keyed by worker name. Workers missing from the map are reported
	// with their stored state.
	WorkerStates() map[string]WorkerState
	// QueueReasons says, for pending build request ids, why each one
	// still waits (for example "no worker connected for builder b1").
	// It may be empty or leave requests out.
	QueueReasons() map[int64]string
	// ConfigStatus says which configuration is in force, when it was
	// loaded, and how the last reconfig went.
	ConfigStatus() ConfigStatus
	// AddChanges stores changes sent through the API (as
	// store.Store.AddChanges: all or none) and lets the schedulers see
	// them. The web UI has already checked every change.
	AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error)
	// Pollers is the state of the git pollers, in name order.
	Pollers() []PollerState
	// Schedulers is the state of the schedulers, in declaration order.
	Schedulers() []SchedulerState
}

// PollerState is what a git poller is doing, as the changes page shows it.
type PollerState struct {
	Name, Repo string
	Interval   time.Duration // 0: polls only at launch and when asked
	Polling    bool          // a poll is running or waiting for a slot
	LastPoll   time.Time     // zero if none has finished
	LastError  string        // why the last poll failed; "" if it succeeded
	NextPoll   time.Time     // zero if none is scheduled
	Refs       map[string]string
}

// SchedulerState is what a scheduler waits for.
type SchedulerState struct {
	Name     string
	Kind     string // the builtin that declared it
	Builders []string
	Waiting  string    // for people: "tree stable until 12:03:05 (3 changes)"
	Next     time.Time // when it acts next by itself; zero if only an event will
	Pending  int       // changes kept and not built yet
	LastRun  time.Time // periodic and nightly: when it last ran
	Error    string    // what last went wrong, while it does
	Disabled bool      // disabled through the API; Waiting says who and why
}

// ConfigStatus is the configuration's state as the API shows it.
type ConfigStatus struct {
	Path        string
	Summary     string
	LoadedAt    time.Time
	LastError   string    // the last failed reconfig's error, "" if none failed
	LastErrorAt time.Time // when it failed
}

// ForceScheduler is a configured force scheduler as the UI shows it.
type ForceScheduler struct {
	Name     string       // unique scheduler name, used in the URL
	Label    string       // human-readable title of the force form; Name if empty
	Builders []string     // builder names this scheduler may force
	Params   []ForceParam // the form's declared fields, in order; see Resolve
}

// ForceRequest is one submission of a force form.
type ForceRequest struct {
	Scheduler string
	Builders  []string
	Reason    string
	Owner     string
	// Properties are free-form properties, set as strings; never nil when
	// the web UI makes the request.
	Properties map[string]string
	// Params are the raw values of the scheduler's declared parameters by
	// request key: a parameter's name, or for a codebase parameter
	// "branch", "revision", "repository" and "project" (default codebase)
	// or "<codebase>_branch" and so on. Values are as JSON decodes them
	// with UseNumber (string, bool, json.Number, []any) or Go's string,
	// bool, int, int64 and []string. ForceScheduler.Resolve checks them.
	// Never nil when the web UI makes the request.
	Params map[string]any
}

// WorkerState is the live state of one worker.
type WorkerState struct {
	Connected     bool
	RunningBuilds []int64 // build ids
	Paused        bool
	PauseReason   string
	// Donated: a developer's desktop (worker(donated=True)); DonatedHours
	// is the time its finished builds took.
	Donated      bool
	DonatedHours float64
	// Latent: the worker is a slot of a latent worker; nil for others.
	Latent *LatentState
}

// LatentState is what a latent worker's slot and its instance do.
type LatentState struct {
	Worker   string    // the latent worker (the slot's name without "/N")
	State    string    // "stopped", "starting", "running" or "stopping"
	Instance string    // the instance's name; "" when stopped
	Since    time.Time // when it entered State; zero when stopped
	Why      string    // while stopping: why

	// Of the latent worker as a whole:
	Failures         int       // in a row
	LastError        string    // the last failure, while they count
	QuarantinedUntil time.Time // no instance starts before; zero if none
	Disabled         string    // why it is disabled; "" if it is not
}
