package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/starforge/starforge/config"
)

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

// InvalidError is a job that cannot be accepted: every problem found with
// it, each saying what is wrong and where, such as
// `job.json: packages[1].files[0]: "x.dsc" is not in the job directory`.
// Callers tell it from other failures (which are the master's) with
// errors.As on an interface with the method Problems.
type InvalidError struct {
	problems []string
}

// Problems returns the problems, in the order they were found.
func (e *InvalidError) Problems() []string { return slices.Clone(e.problems) }

func (e *InvalidError) Error() string {
	if len(e.problems) == 1 {
		return "invalid job: " + e.problems[0]
	}
	return fmt.Sprintf("invalid job: %d problems:\n\t%s", len(e.problems), strings.Join(e.problems, "\n\t"))
}

// problems collects what is wrong with a job.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// field reports a problem with a field of job.json.
func (p *problems) field(name, format string, args ...any) {
	p.addf("%s: %s: %s", SpecFile, name, fmt.Sprintf(format, args...))
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &InvalidError{problems: p}
}

// specFields are the fields job.json may have.
var specFields = []string{"farm", "name", "submitter", "platforms", "include", "exclude", "packages", "on_failure", "options"}

// maxNameLen bounds a job's and a package's name.
const maxNameLen = 200

// Check reads and validates the job in dir (dir/job.json and the files it
// names) against farms, the master's package_farm()s. defaultName is the
// job's name when job.json has none (the job directory's name; if empty,
// the first package's name).
//
// It returns the normalized spec, as stored with the job: Farm and Name
// set, every package an object listing its files, OnFailure resolved to
// the farm's default and Platforms the platforms chosen (sorted); and the
// farm. A job that is invalid gives an *InvalidError listing every problem.
// Check only reads dir.
func Check(dir, defaultName string, farms []*config.Farm) (Spec, *config.Farm, error) {
	var p problems
	raw, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			p.addf("%s: missing: the job directory must hold %s at its top", SpecFile, SpecFile)
		} else {
			return Spec{}, nil, fmt.Errorf("read %s: %w", SpecFile, err)
		}
		return Spec{}, nil, p.err()
	}
	checkTree(dir, &p)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		p.addf("%s: %s", SpecFile, jsonProblem(err, "want a JSON object"))
		return Spec{}, nil, p.err()
	}
	if fields == nil {
		p.addf("%s: want a JSON object, got null", SpecFile)
		return Spec{}, nil, p.err()
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(specFields, k) {
			p.field(k, "unknown field%s", config.DidYouMean(k, specFields))
		}
	}
	var s Spec
	str := func(name string, dst *string) {
		if v, ok := fields[name]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, dst); err != nil {
				p.field(name, "%s", jsonProblem(err, "want a string"))
			}
		}
	}
	str("farm", &s.Farm)
	str("name", &s.Name)
	str("submitter", &s.Submitter)
	str("on_failure", &s.OnFailure)

	farm := chooseFarm(s.Farm, farms, &p)
	if farm != nil {
		s.Farm = farm.Name
	}
	if bad := badText(s.Submitter); bad != "" {
		p.field("submitter", "%s", bad)
	}

	switch {
	case s.OnFailure == "" && farm != nil:
		s.OnFailure = farm.OnFailure
	case s.OnFailure == "":
	case !slices.Contains(config.FarmOnFailure, s.OnFailure):
		p.field("on_failure", "want %q or %q, got %q%s", config.FarmOnFailure[0], config.FarmOnFailure[1], s.OnFailure, config.DidYouMean(s.OnFailure, config.FarmOnFailure))
	}

	if v, ok := fields["options"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &s.Options); err != nil {
			p.field("options", "%s", jsonProblem(err, "want a JSON object"))
		}
	}

	// Platforms.
	var platforms []string
	all := true
	if v, ok := fields["platforms"]; ok && string(v) != "null" {
		var word string
		if json.Unmarshal(v, &word) == nil {
			if word != "all" {
				p.field("platforms", `want "all" or a list of platform names, got %q`, word)
			}
		} else if err := json.Unmarshal(v, &platforms); err != nil {
			p.field("platforms", "%s", jsonProblem(err, `want "all" or a list of platform names`))
		} else {
			all = false
			if len(platforms) == 0 {
				p.field("platforms", `empty list; want "all" or at least one platform name`)
			}
		}
	}
	before := len(p)
	s.Include = patterns("include", fields, &p)
	s.Exclude = patterns("exclude", fields, &p)
	if farm != nil && len(p) == before { // a bad pattern would make the filter's result noise
		s.Platforms = choosePlatforms(farm, all, platforms, s.Include, s.Exclude, &p)
	}

	// Packages.
	s.Packages = packages(dir, fields, &p)
	if s.Name == "" {
		s.Name = defaultName
	}
	if s.Name == "" && len(s.Packages) > 0 {
		s.Name = s.Packages[0].Name
	}
	if _, given := fields["name"]; given || s.Name != "" {
		checkName("name", s.Name, &p)
	}
	if err := p.err(); err != nil {
		return Spec{}, nil, err
	}
	return s, farm, nil
}

// chooseFarm returns the farm named name, or the only farm if name is "".
func chooseFarm(name string, farms []*config.Farm, p *problems) *config.Farm {
	var names []string
	for _, f := range farms {
		if f.Name == name || (name == "" && len(farms) == 1) {
			return f
		}
		names = append(names, f.Name)
	}
	switch {
	case len(farms) == 0:
		p.field("farm", "the master has no package_farm()")
	case name == "":
		p.field("farm", "missing; the master has several farms: %s", quoted(names))
	default:
		p.field("farm", "unknown farm %q%s; the farms are %s", name, config.DidYouMean(name, names), quoted(names))
	}
	return nil
}

// choosePlatforms returns the names of the platforms of farm that the job
// builds on, sorted.
func choosePlatforms(farm *config.Farm, all bool, listed, include, exclude []string, p *problems) []string {
	known := make([]string, len(farm.Platforms))
	for i, fp := range farm.Platforms {
		known[i] = fp.Name
	}
	candidates := known
	if !all {
		candidates = nil
		seen := make(map[string]bool)
		for i, name := range listed {
			switch {
			case seen[name]:
				p.field(fmt.Sprintf("platforms[%d]", i), "%q is listed twice", name)
			case !slices.Contains(known, name):
				p.field(fmt.Sprintf("platforms[%d]", i), "unknown platform %q%s; farm %q has %s", name, config.DidYouMean(name, known), farm.Name, quoted(known))
			default:
				candidates = append(candidates, name)
			}
			seen[name] = true
		}
		if len(candidates) < len(listed) {
			return nil // reported; the filter would only add noise
		}
	}
	var chosen []string
	for _, name := range candidates {
		if (len(include) == 0 || matchAny(include, name)) && !matchAny(exclude, name) {
			chosen = append(chosen, name)
		}
	}
	if len(chosen) == 0 && len(candidates) > 0 {
		p.field("include, exclude", "no platform is left of %s", quoted(candidates))
	}
	slices.Sort(chosen)
	return chosen
}

func matchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// patterns returns the list of path.Match patterns in field name.
func patterns(name string, fields map[string]json.RawMessage, p *problems) []string {
	v, ok := fields[name]
	if !ok || string(v) == "null" {
		return nil
	}
	var pats []string
	if err := json.Unmarshal(v, &pats); err != nil {
		p.field(name, "%s", jsonProblem(err, "want a list of patterns such as \"debian-*\""))
		return nil
	}
	for i, pat := range pats {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			p.field(fmt.Sprintf("%s[%d]", name, i), "%q is not a valid pattern (see Go's path.Match: *, ? and [a-z])", pat)
		}
	}
	return pats
}

// packages returns the packages of job.json, each with its files.
func packages(dir string, fields map[string]json.RawMessage, p *problems) []Package {
	v, ok := fields["packages"]
	if !ok || string(v) == "null" {
		p.field("packages", "missing; want a list of packages")
		return nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(v, &raws); err != nil {
		p.field("packages", "%s", jsonProblem(err, "want a list of packages"))
		return nil
	}
	if len(raws) == 0 {
		p.field("packages", "empty list; want at least one package")
		return nil
	}
	var out []Package
	names := make(map[string]int)
	for i, raw := range raws {
		at := fmt.Sprintf("packages[%d]", i)
		var pkg Package
		var sub string
		if json.Unmarshal(raw, &sub) == nil {
			pkg, ok = subdirPackage(dir, at, sub, p)
		} else {
			pkg, ok = objectPackage(dir, at, raw, p)
		}
		if !ok {
			continue
		}
		if first, dup := names[pkg.Name]; dup {
			p.field(at, "package %q is also packages[%d]", pkg.Name, first)
			continue
		}
		names[pkg.Name] = i
		out = append(out, pkg)
	}
	return out
}

// subdirPackage returns the package that is subdirectory sub of dir: all
// its regular files, sorted.
func subdirPackage(dir, at, sub string, p *problems) (Package, bool) {
	if bad := badPath(sub); bad != "" {
		p.field(at, "%s", bad)
		return Package{}, false
	}
	if !checkName(at, sub, p) {
		return Package{}, false
	}
	root := filepath.Join(dir, filepath.FromSlash(sub))
	fi, err := os.Lstat(root)
	if err != nil || !fi.IsDir() {
		p.field(at, "%q is not a subdirectory of the job directory", sub)
		return Package{}, false
	}
	pkg := Package{Name: path.Base(sub)}
	_ = filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // checkTree reports unreadable parts
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, file)
			pkg.Files = append(pkg.Files, filepath.ToSlash(rel))
		}
		return nil
	})
	if len(pkg.Files) == 0 {
		p.field(at, "subdirectory %q holds no files", sub)
		return Package{}, false
	}
	slices.Sort(pkg.Files)
	return pkg, true
}

// objectPackage returns the package given as {"name": ..., "files": [...]}.
func objectPackage(dir, at string, raw json.RawMessage, p *problems) (Package, bool) {
	var pkg Package
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pkg); err != nil {
		p.field(at, "%s", jsonProblem(err, `want a subdirectory name or {"name": ..., "files": [...]}`))
		return Package{}, false
	}
	ok := checkName(at+".name", pkg.Name, p)
	if len(pkg.Files) == 0 {
		p.field(at+".files", "missing or empty; want the package's files")
		ok = false
	}
	seen := make(map[string]bool)
	for i, f := range pkg.Files {
		fat := fmt.Sprintf("%s.files[%d]", at, i)
		if bad := badPath(f); bad != "" {
			p.field(fat, "%s", bad)
			ok = false
			continue
		}
		if seen[f] {
			p.field(fat, "%q is listed twice", f)
			ok = false
			continue
		}
		seen[f] = true
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f)))
		switch {
		case err != nil:
			p.field(fat, "%q is not in the job directory", f)
			ok = false
		case !fi.Mode().IsRegular():
			p.field(fat, "%q is not a regular file", f)
			ok = false
		}
	}
	return pkg, ok
}

// checkName checks a job's or a package's name.
func checkName(field, name string, p *problems) bool {
	switch bad := badText(name); {
	case name == "":
		p.field(field, "missing or empty")
	case len(name) > maxNameLen:
		p.field(field, "longer than %d bytes", maxNameLen)
	case bad != "":
		p.field(field, "%s", bad)
	default:
		return true
	}
	return false
}

// badText says what is wrong with a name shown to people, or "".
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%q contains the control character %U", s, r)
		}
	}
	return ""
}

// badPath says what is wrong with a path relative to the job directory,
// or "".
func badPath(p string) string {
	switch {
	case p == "":
		return "empty path"
	case strings.HasPrefix(p, "/") || strings.Contains(p, `\`) || (len(p) > 1 && p[1] == ':'):
		return fmt.Sprintf("%q is absolute or not a slash-separated path; want a path relative to the job directory", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("%q contains \"..\"; want a path inside the job directory", p)
	case path.Clean(p) != p || p == ".":
		return fmt.Sprintf("%q is not a clean path; write it as %q", p, path.Clean(p))
	case strings.ContainsRune(p, 0):
		return fmt.Sprintf("%q contains a NUL byte", p)
	}
	return ""
}

// checkTree reports anything in dir that is neither a regular file nor a
// directory: links could point outside the job, devices and pipes have no
// place in it.
func checkTree(dir string, p *problems) {
	_ = filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, file)
		rel = filepath.ToSlash(rel)
		switch {
		case err != nil:
			p.addf("%s: cannot be read: %v", rel, errors.Unwrap(err))
		case d.Type()&fs.ModeSymlink != 0:
			p.addf("%s: is a symbolic link; a job holds only files and directories", rel)
		case !d.IsDir() && !d.Type().IsRegular():
			p.addf("%s: is a %s; a job holds only files and directories", rel, typeName(d.Type()))
		}
		return nil
	})
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// jsonProblem turns a decoding error into words for people.
func jsonProblem(err error, want string) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s: want %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("%s, got %s", want, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Sprintf("unknown field %s (a package has only \"name\" and \"files\")", f)
	}
	return err.Error()
}

func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
