package config

import (
	"fmt"
	"time"
)

// Defaults applied by the loader when master.star leaves a setting out.
const (
	DefaultTitle       = "Starforge"
	DefaultHTTPAddr    = "127.0.0.1:8010"
	DefaultWorkerAddr  = "127.0.0.1:9989"
	DefaultStepTimeout = 20 * time.Minute // Buildbot's 1200 s without output
	DefaultWorkdir     = "build"
)

// Config is a loaded, validated master.star.
//
// A Config returned by Load is complete and consistent: every worker a builder
// names exists, every builder a scheduler names exists, and names are unique.
// It is immutable by contract: callers share it between goroutines (reconfig
// swaps in a whole new Config) and must not modify it or anything it points to.
type Config struct {
	Path       string // absolute path of the main file
	Master     MasterSettings
	Workers    []*Worker   // in declaration order
	Builders   []*Builder  // in declaration order
	Schedulers []Scheduler // in declaration order

	// SecretProviders are the secrets_dir and secrets_env declarations, in
	// declaration order; Secret consults them at build time.
	SecretProviders []SecretProvider

	// LatentWorkers are the workers declared with latent_worker(), in
	// declaration order. They share one namespace with Workers but are not
	// in it: Workers are those that connect with a password.
	LatentWorkers []*LatentWorker
	Locks         []*Lock // master_lock() and worker_lock(), in declaration order
	Users         []*User // in declaration order
	Roles         []*Role // declared with role(); see Role(name) for the built-in ones

	ChangeHooks []*ChangeHook // change_hook(), in declaration order
	GitPollers  []*GitPoller  // git_poller(), in declaration order
	Reporters   []*Reporter   // http_reporter(), *_status() and mail_reporter(), in declaration order
	// Farms are the package_farm() declarations, in declaration order.
	// Each platform builder of a farm is also in Builders.
	Farms []*Farm

	// ArtifactRetention are the artifact_retention() policies, in
	// declaration order: a builder follows the first that covers it.
	ArtifactRetention []*ArtifactRetention

	// Files lists the absolute path of every local file the configuration
	// read, the main file first, then the files it load()ed in the order they
	// were first loaded. Files of the @starforge// library are not listed.
	// It lets reconfig tell whether anything changed.
	Files []string

	// Indexes built by Load. A Config built by hand has none, and the lookup
	// methods fall back to a scan.
	workerIdx  map[string]*Worker
	builderIdx map[string]*Builder
}

// Summary returns a one-line description of c such as
// "2 workers, 3 builders, 1 scheduler"; latent workers count as workers.
func (c *Config) Summary() string {
	return fmt.Sprintf("%s, %s, %s",
		plural(len(c.Workers)+len(c.LatentWorkers), "worker"),
		plural(len(c.Builders), "builder"),
		plural(len(c.Schedulers), "scheduler"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// index builds the lookup maps of a valid c.
func (c *Config) index() {
	c.workerIdx = make(map[string]*Worker, len(c.Workers))
	for _, w := range c.Workers {
		c.workerIdx[w.Name] = w
	}
	c.builderIdx = make(map[string]*Builder, len(c.Builders))
	for _, b := range c.Builders {
		c.builderIdx[b.Name] = b
	}
}

// Worker returns the worker called name, or nil if there is none.
func (c *Config) Worker(name string) *Worker {
	if c.workerIdx != nil {
		return c.workerIdx[name]
	}
	for _, w := range c.Workers {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// Builder returns the builder called name, or nil if there is none.
func (c *Config) Builder(name string) *Builder {
	if c.builderIdx != nil {
		return c.builderIdx[name]
	}
	for _, b := range c.Builders {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// ForceSchedulerFor returns the first force scheduler, in declaration order,
// that lists builder, or nil if none does.
func (c *Config) ForceSchedulerFor(builder string) *ForceScheduler {
	for _, s := range c.Schedulers {
		fs, ok := s.(*ForceScheduler)
		if !ok {
			continue
		}
		for _, b := range fs.Builders {
			if b == builder {
				return fs
			}
		}
	}
	return nil
}

// MasterSettings are the master-wide settings given by master(...).
type MasterSettings struct {
	Title string // default DefaultTitle

	// URL is the externally visible URL of the web UI. It always ends in "/".
	// Default: "http://" + HTTPAddr + "/", with 127.0.0.1 for an empty host.
	URL string

	// HTTPAddr is the host:port the web UI and API listen on
	// (default DefaultHTTPAddr). Port 0 asks the master to pick a free port.
	HTTPAddr string

	// WorkerAddr is the host:port the worker protocol listens on
	// (default DefaultWorkerAddr). Port 0 asks the master to pick a free port.
	WorkerAddr string

	// LogMaxSize caps each stored log, in bytes (default DefaultLogMaxSize;
	// 0: no cap). A log that reaches it says so and drops the rest.
	LogMaxSize int64

	// UploadMaxSize caps each file or directory archive a worker uploads
	// to the master, in bytes (default DefaultUploadMaxSize; 0: no cap).
	UploadMaxSize int64

	// SSHAddr is the host:port of the SSH server; "" (the default) means off.
	SSHAddr string
	// DB is the database: a path relative to the master's basedir, or a
	// "sqlite:///..." URL (default DefaultDB).
	DB string
	// WebAuth is how the web UI authenticates users: "none" (the default)
	// or "users" (the users declared with user()).
	WebAuth string
	// Web are the web UI's login settings (webauth.go).
	Web WebAuth
	// WorkerProtocol is the worker protocol (default DefaultWorkerProtocol,
	// the only one there is).
	WorkerProtocol string

	Pos Pos // position of the master(...) call; zero if there was none
}

// Worker is a worker declared with worker(...).
type Worker struct {
	Name     string
	Password string
	// MaxBuilds is the number of builds the worker runs at once; 0 means unlimited.
	MaxBuilds int
	// Properties are set on every build that runs on this worker. Values are
	// JSON-like: string, int64, float64, bool, nil, []any, map[string]any.
	// Nil when none were given.
	Properties map[string]any

	// NotifyOnMissing lists the email addresses told when the worker has
	// been disconnected for MissingTimeout. Nil when none were given.
	NotifyOnMissing []string
	// MissingTimeout is how long the worker may be disconnected before
	// NotifyOnMissing is told (default DefaultMissingTimeout); 0 means never.
	MissingTimeout time.Duration
	Locks          []LockAccess // taken for every build on this worker; nil when none
	// Donated marks a developer's desktop (starforge-worker --donate): only
	// builders with AllowDonated run there. See donate.go.
	Donated bool

	Pos Pos // position of the worker(...) call
}

// Builder is a builder declared with builder(...).
type Builder struct {
	Name        string
	WorkerNames []string // non-empty; each names a declared worker
	Steps       []*Step  // non-empty unless StepsFn is set; step names are unique within the builder
	// StepsFn is set by builder(steps=fn): the steps are chosen at build
	// start by calling fn(build). Steps is then nil.
	StepsFn     *StepsFunc
	Tags        []string // nil when none were given
	Description string
	Env         map[string]string // nil when none was given; steps' Env goes over it at run time
	Properties  map[string]any    // JSON-like values as in Worker.Properties; nil when none were given
	// DefaultProperties have the lowest precedence of all build properties
	// (below the worker's); nil when none were given.
	DefaultProperties map[string]any

	// WorkerBuildDir is the builder's directory under the worker's base
	// directory. It is relative and never contains "..". Default: the builder
	// name with every character outside [A-Za-z0-9._-] replaced by "_".
	WorkerBuildDir string

	// WorkerFilter is set when workers= was a worker_filter(...): the
	// loader resolved it to WorkerNames, the matching workers.
	WorkerFilter *WorkerFilter
	// Workdir is the default workdir of the builder's steps (default
	// DefaultWorkdir). Steps whose workdir is DefaultWorkdir got this one.
	Workdir string
	Locks   []LockAccess // taken for every build of this builder; nil when none
	// CollapseRequests says whether pending requests are merged: nil
	// means the master's default. CollapseRequestsFn, if set, decides
	// instead: collapse_requests(builder, req1, req2) -> bool.
	CollapseRequests   *bool
	CollapseRequestsFn *Func
	NextWorker         *Func // next_worker(builder, workers, request), or nil
	NextBuild          *Func // next_build(builder, requests), or nil
	CanStart           *Func // can_start(builder, worker, request), or nil
	Priority           int   // higher builders are served first; default 0
	// AllowDonated lets the builder run on donated workers (Worker.Donated);
	// see AcceptsWorker.
	AllowDonated bool

	Pos Pos // position of the builder(...) call
}

// Step is one step of a builder.
//
// A step value written once in master.star and used by several builders
// becomes a separate *Step in each of them (names are made unique per
// builder), but they share the same Action value.
type Step struct {
	// Name defaults to the step kind ("shell", "upload", …). Within a builder
	// a repeated name gets "_1", "_2", … appended, as in Buildbot.
	Name           string
	Description    string
	HaltOnFailure  bool
	FlunkOnFailure bool // default true, as in Buildbot
	WarnOnFailure  bool
	AlwaysRun      bool
	// FlunkOnWarnings: a step that ends WARNINGS fails the build.
	// WarnOnWarnings (default true): it gives the build WARNINGS; when
	// false the build is not affected.
	FlunkOnWarnings bool
	WarnOnWarnings  bool

	// Timeout is how long the step may run without output before it is
	// killed. Default DefaultStepTimeout; 0 means none (timeout=None).
	Timeout time.Duration
	// MaxTime is how long the step may run in total; 0 means no limit.
	MaxTime time.Duration

	// Env holds the step's own environment only; the build runner merges it
	// over the builder's Env. Nil when none was given.
	Env map[string]string
	// Workdir is relative to the builder's directory unless absolute
	// (default DefaultWorkdir).
	Workdir    string
	LogEnviron bool // default true

	// Renderable forms of Description, Workdir and Env values: when set,
	// they replace the plain field at build time (see Step.Render).
	DescriptionR Renderable
	WorkdirR     Renderable
	EnvR         map[string]Renderable // keys not in Env

	// DoStepIf (nil: run) and HideStepIf (nil: show) are do_step_if and
	// hide_step_if.
	DoStepIf   *Cond
	HideStepIf *Cond

	Locks []LockAccess // taken while the step runs; nil when none

	Action StepAction // *ShellAction, *UploadAction, *DownloadAction, *MkdirAction, *RmdirAction or one of steps_more.go
	Pos    Pos        // position of the step constructor call, e.g. shell(...)
}

// StepAction is what a step does. Its concrete type tells the build runner
// which remote command to send.
type StepAction interface {
	// Kind returns the name of the constructor that made it, such as "shell".
	Kind() string
}

// ShellAction runs a command. Exactly one of Argv and Script is set: a list
// command gives Argv (run directly), a string gives Script (run with /bin/sh -c).
type ShellAction struct {
	Argv   []string
	Script string

	// ArgvR, when non-nil, has one entry per Argv element: a non-nil entry
	// replaces that element at build time. ScriptR, when non-nil, is the
	// whole command; a function may render to a list (an argv).
	ArgvR   []Renderable
	ScriptR Renderable
}

// UploadAction copies a file from the worker to the master.
type UploadAction struct {
	WorkerSrc  string // relative to the step's workdir unless absolute
	MasterDest string // relative to the master's basedir unless absolute
	Mode       int    // file mode to set on MasterDest; -1 keeps the default

	WorkerSrcR, MasterDestR Renderable // build-time forms of the paths, if any
}

// DownloadAction copies a file from the master to the worker.
type DownloadAction struct {
	MasterSrc  string // relative to the master's basedir unless absolute
	WorkerDest string // relative to the step's workdir unless absolute
	Mode       int    // file mode to set on WorkerDest; -1 keeps the default

	MasterSrcR, WorkerDestR Renderable // build-time forms of the paths, if any
}

// MkdirAction creates a directory (and its parents) on the worker.
type MkdirAction struct {
	Dir  string     // relative to the builder's directory unless absolute
	DirR Renderable // build-time form of Dir, if any
}

// RmdirAction removes a directory tree on the worker.
type RmdirAction struct {
	Dir  string     // relative to the builder's directory unless absolute
	DirR Renderable // build-time form of Dir, if any
}

// Kind implements StepAction.
func (*ShellAction) Kind() string { return "shell" }

// Kind implements StepAction.
func (*UploadAction) Kind() string { return "upload" }

// Kind implements StepAction.
func (*DownloadAction) Kind() string { return "download" }

// Kind implements StepAction.
func (*MkdirAction) Kind() string { return "mkdir" }

// Kind implements StepAction.
func (*RmdirAction) Kind() string { return "rmdir" }

// Scheduler is anything that starts builds on builders.
// It is implemented by *ForceScheduler, *SingleBranchScheduler,
// *AnyBranchScheduler, *Periodic, *Nightly, *Triggerable and *Dependent.
type Scheduler interface {
	SchedulerName() string
	BuilderNames() []string
}

// ForceScheduler lets users start builds by hand from the web UI or API.
type ForceScheduler struct {
	Name     string
	Builders []string     // non-empty; each names a declared builder
	Label    string       // shown in the UI; defaults to Name
	Params   []ForceParam // the form's parameters, in order; nil when none
	Pos      Pos          // position of the force_scheduler(...) call
}

// SchedulerName implements Scheduler.
func (s *ForceScheduler) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *ForceScheduler) BuilderNames() []string { return s.Builders }
