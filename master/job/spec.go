package job

// SpecFile is the name of a job's metadata file, at the top of its
// directory.
const SpecFile = "job.json"

// Spec is a job's metadata: job.json as validated. It is stored as JSON in
// store.Job.Spec.
type Spec struct {
	// Farm names the package_farm() that builds the job; it may be omitted
	// when the master has one farm.
	Farm string `json:"farm,omitempty"`
	// Name is for people; default: the job directory's name.
	Name      string `json:"name"`
	Submitter string `json:"submitter,omitempty"`
	// Platforms lists the platforms to build on; empty means "all" (in
	// job.json either the string "all" or a list of names).
	Platforms []string `json:"platforms,omitempty"`
	// Include and Exclude filter the platforms by name with path.Match
	// patterns: a platform is built if it matches an Include pattern (or
	// Include is empty) and no Exclude pattern.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// Packages build in this order on every platform. In job.json a
	// package may also be a string: a subdirectory of the job holding the
	// package's files.
	Packages []Package `json:"packages"`
	// OnFailure is "stop" or "retry" (see config.FarmOnFailure); empty
	// means the farm's default.
	OnFailure string `json:"on_failure,omitempty"`
	// Options are free-form; builds see them as the property job_options.
	Options map[string]any `json:"options,omitempty"`
}

// Package is one package of a job.
type Package struct {
	Name string `json:"name"`
	// Files are paths relative to the job's input directory, with "/"
	// separators, never absolute and never leaving it.
	Files []string `json:"files"`
}
