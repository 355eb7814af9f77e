package config

import "time"

// Farm is a declaration of package_farm(): builders for package jobs, one
// per platform, made from the workers' properties.
//
// A platform is named "OS-RELEASE-ARCH" from the properties "os",
// "release" and "arch" of its workers; its builder is named
// "FARM-PLATFORM" and is also in Config.Builders, with the farm's steps,
// the farm's name as a tag, and the properties os, release, arch and
// platform.
type Farm struct {
	Name string
	// Platforms are the farm's platforms, sorted by name.
	Platforms []FarmPlatform
	// Incoming is the directory the master watches for job directories:
	// absolute, or relative to the master's base directory. Empty: none.
	Incoming string
	// IncomingInterval is how often Incoming is scanned (default 5s).
	IncomingInterval time.Duration
	// Publish says what happens once every platform of a job succeeded;
	// nil means nothing.
	Publish *Publish
	// OnFailure is the default of a job's "on_failure": "stop" or "retry".
	OnFailure string

	Pos Pos // position of the package_farm(...) call
}

// FarmPlatform is one platform of a Farm.
type FarmPlatform struct {
	Name              string // "OS-RELEASE-ARCH"
	OS, Release, Arch string
	Builder           string   // the builder's name: "FARM-PLATFORM"
	WorkerNames       []string // the workers with these properties, sorted
}

// Publish is a publish_copy() or publish_command() declaration.
type Publish struct {
	// Kind is "copy" or "command".
	Kind string
	// Dir is publish_copy's repository directory: absolute, or relative to
	// the master's base directory.
	Dir string
	// Command and Env are publish_command's argv and extra environment.
	Command []string
	Env     map[string]string
	// Timeout bounds a command's run (default 30m).
	Timeout time.Duration

	Pos Pos
}

// FarmOnFailure are the values of on_failure: "stop" ends a platform at its
// first failed package; "retry" moves a failed package to the end of the
// platform's order and builds it once more.
var FarmOnFailure = []string{"stop", "retry"}
