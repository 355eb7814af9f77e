package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.starlark.net/starlark"
)

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

// --- package_farm ---

var packageFarmParams = []param{
	{name: "name", required: true, positional: true},
	{name: "steps", required: true, positional: true},
	{name: "workers"},
	{name: "incoming"},
	{name: "incoming_interval"},
	{name: "publish"},
	{name: "on_failure"},
	{name: "tags"},
	{name: "properties"},
	{name: "env"},
}

// DefaultIncomingInterval is how often a farm's incoming directory is
// scanned when package_farm() does not say.
const DefaultIncomingInterval = 5 * time.Second

// DefaultPublishTimeout bounds a publish_command() that does not say.
const DefaultPublishTimeout = 30 * time.Minute

// farmPlatformProps are the worker properties that make a platform, in the
// order they make its name.
var farmPlatformProps = []string{"os", "release", "arch"}

// farmDecl is a package_farm() call as made: its builders are made once
// every worker is declared (see resolveFarms).
type farmDecl struct {
	farm *Farm
	// workers are the names given with workers=; nil means every worker
	// with the platform properties.
	workers      []string
	steps        []*Step
	stepsFn      *StepsFunc
	tags         []string
	properties   map[string]any
	env          map[string]string
	builderIndex int // len(loader.builders) at the call: where its builders go
	ok           bool
}

const farmsKey = "starforge/config.farms"

// farmDecls returns the package_farm() calls of l so far, kept in a thread
// local like the other late declarations (see decls).
func (l *loader) farmDecls() *[]*farmDecl {
	if d, ok := l.thread.Local(farmsKey).(*[]*farmDecl); ok {
		return d
	}
	d := new([]*farmDecl)
	l.thread.SetLocal(farmsKey, d)
	return d
}

// builtinPackageFarm implements package_farm(name, steps, workers=None,
// incoming=None, incoming_interval="5s", publish=None, on_failure="stop",
// tags=[], properties={}, env={}).
func builtinPackageFarm(c *call) (starlark.Value, error) {
	f := &Farm{Pos: c.pos, IncomingInterval: DefaultIncomingInterval, OnFailure: "stop"}
	d := &farmDecl{farm: f, builderIndex: len(c.l.builders)}
	f.Name = c.nonEmptyStr("name", "")
	if v, ok := c.given("steps"); ok {
		if fn, isFn := v.(starlark.Callable); isFn {
			d.stepsFn = &StepsFunc{Fn: fn, Pos: c.pos}
		} else {
			d.steps = c.steps("steps")
		}
	}
	if _, ok := c.given("workers"); ok {
		d.workers = c.nameList("workers", "worker")
		if d.workers == nil {
			d.workers = []string{} // given but empty: reported, and not "all"
		}
	}
	f.Incoming = c.str("incoming", "")
	if v, ok := c.given("incoming"); ok && f.Incoming == "" {
		if _, isStr := v.(starlark.String); isStr {
			c.argErrorf("incoming", "must not be empty (use None for no incoming directory)")
		}
	}
	if _, ok := c.given("incoming_interval"); ok {
		f.IncomingInterval = c.duration("incoming_interval", DefaultIncomingInterval)
	}
	if v, ok := c.given("publish"); ok {
		switch o, isObj := v.(*object); {
		case !isObj || o.typ != "publish":
			c.argErrorf("publish", "want publish_copy(...) or publish_command(...), got %s", v.Type())
		case o.ok:
			f.Publish = o.item.(*Publish)
		}
	}
	f.OnFailure = c.nonEmptyStr("on_failure", "stop")
	if !slices.Contains(FarmOnFailure, f.OnFailure) && f.OnFailure != "" {
		c.argErrorf("on_failure", "want %s, got %q%s", quoteList(FarmOnFailure), f.OnFailure, didYouMean(f.OnFailure, FarmOnFailure))
		f.OnFailure = "stop"
	}
	d.tags = c.strList("tags")
	d.properties = c.jsonDict("properties")
	for _, k := range append(farmPlatformProps[:len(farmPlatformProps):len(farmPlatformProps)], "platform") {
		if _, set := d.properties[k]; set {
			c.argErrorf("properties", "%q is set by the farm on each platform's builder", k)
		}
	}
	d.env = c.strDict("env")
	d.ok = c.ok()
	if f.Name != "" {
		decls := c.l.farmDecls()
		*decls = append(*decls, d)
	}
	return c.named("package_farm", f.Name, f), nil
}

// --- publish_copy, publish_command ---

var publishCopyParams = []param{
	{name: "dir", required: true, positional: true},
}

// builtinPublishCopy implements publish_copy(dir).
func builtinPublishCopy(c *call) (starlark.Value, error) {
	p := &Publish{Kind: "copy", Pos: c.pos}
	p.Dir = c.nonEmptyStr("dir", "")
	return c.publish(p, starlark.String(p.Dir)), nil
}

var publishCommandParams = []param{
	{name: "command", required: true, positional: true},
	{name: "env"},
	{name: "timeout"},
}

// builtinPublishCommand implements publish_command(command, env={},
// timeout="30m"). A string command runs with /bin/sh -c.
func builtinPublishCommand(c *call) (starlark.Value, error) {
	p := &Publish{Kind: "command", Pos: c.pos}
	v, _ := c.given("command")
	if s, isStr := v.(starlark.String); isStr {
		if s == "" {
			c.argErrorf("command", "must not be empty")
		}
		p.Command = []string{"/bin/sh", "-c", string(s)}
	} else if _, isSeq := asSequence(v); isSeq || v == nil {
		p.Command = c.strList("command")
		if v != nil && len(p.Command) == 0 && c.ok() {
			c.argErrorf("command", "empty list; want the program and its arguments")
		}
	} else {
		c.argErrorf("command", "want string or list of strings, got %s", v.Type())
	}
	p.Env = c.strDict("env")
	p.Timeout = c.duration("timeout", DefaultPublishTimeout)
	var first starlark.Value = starlark.None
	if v != nil {
		first = v
	}
	return c.publish(p, first), nil
}

// publish returns the value of a publish_*() call.
func (c *call) publish(p *Publish, arg starlark.Value) *object {
	return &object{
		typ:  "publish",
		repr: reprCall(c.sig.fn, arg),
		item: p,
		ok:   c.ok(),
	}
}

// resolveFarms makes the builders of every package_farm(), now that every
// worker is declared, and puts them in cfg.Builders where builder() calls
// made at the same point would have put them; then cfg.Farms. It runs before
// the builders are validated, so farm builders are checked like any other.
func (l *loader) resolveFarms(cfg *Config) {
	decls := *l.farmDecls()
	if len(decls) == 0 {
		return
	}
	// Every worker's platform, worked out once so that a bad property is
	// reported once, at the worker.
	type platWorker struct {
		name    string
		vals    []string // os, release, arch; nil if not a platform worker
		missing []string // the platform properties it lacks
		pos     Pos
	}
	var all []*platWorker
	known := make(map[string]*platWorker)
	add := func(name string, props map[string]any, pos Pos, donated bool) {
		if known[name] != nil {
			return // a duplicate name, reported by validate
		}
		w := &platWorker{name: name, pos: pos}
		known[name] = w
		var vals []string
		for _, k := range farmPlatformProps {
			v, set := props[k]
			str, isStr := v.(string)
			switch {
			case !set:
				w.missing = append(w.missing, k)
			case !isStr:
				l.errs.addf(pos, "worker %q: properties: %q: want string, got %s (os, release and arch name a package farm's platform)", name, k, jsonType(v))
			default:
				if err := checkPlatformPart(str); err != nil {
					l.errs.addf(pos, "worker %q: properties: %q: %v", name, k, err)
				} else {
					vals = append(vals, str)
				}
			}
		}
		if len(w.missing) > 0 {
			return
		}
		if len(vals) == len(farmPlatformProps) {
			w.vals = vals
		}
		if !donated {
			all = append(all, w)
		}
	}
	for _, w := range cfg.Workers {
		add(w.Name, w.Properties, w.Pos, w.Donated)
	}
	for _, w := range cfg.LatentWorkers {
		add(w.Name, w.Properties, w.Pos, false)
	}
	knownNames := slices.Sorted(maps.Keys(known))

	// Names of builders declared with builder(), to report a clash with a
	// farm's builder once, here, rather than as a duplicate builder.
	taken := make(map[string]*Builder, len(cfg.Builders))
	for _, b := range cfg.Builders {
		if taken[b.Name] == nil {
			taken[b.Name] = b
		}
	}
	farms := make(map[string]*Farm)
	incoming := make(map[string]*Farm)
	inserts := make([][]*Builder, len(cfg.Builders)+1)
	for _, d := range decls {
		f := d.farm
		if first := farms[f.Name]; first != nil {
			l.errs.addf(f.Pos, "package_farm: duplicate name %q (first declared at %s)", f.Name, first.Pos)
			continue
		}
		farms[f.Name] = f
		cfg.Farms = append(cfg.Farms, f)
		if f.Incoming != "" {
			key := filepath.Clean(f.Incoming)
			if first := incoming[key]; first != nil {
				l.errs.addf(f.Pos, "package_farm %q: incoming: %q is also the incoming directory of farm %q (%s)", f.Name, f.Incoming, first.Name, first.Pos)
			} else {
				incoming[key] = f
			}
		}

		// The workers and their platforms.
		plats := make(map[string]*FarmPlatform)
		addWorker := func(w *platWorker) {
			if w.vals == nil {
				return // bad properties: reported above
			}
			name := strings.Join(w.vals, "-")
			p := plats[name]
			if p == nil {
				p = &FarmPlatform{Name: name, OS: w.vals[0], Release: w.vals[1], Arch: w.vals[2], Builder: f.Name + "-" + name}
				plats[name] = p
			}
			p.WorkerNames = append(p.WorkerNames, w.name)
		}
		if d.workers == nil {
			for _, w := range all {
				addWorker(w)
			}
			if len(plats) == 0 {
				l.errs.addf(f.Pos, "package_farm %q: no worker has the properties os, release and arch; give them to the farm's workers, e.g. worker(..., properties = {\"os\": \"debian\", \"release\": \"12\", \"arch\": \"amd64\"})", f.Name)
			}
		} else {
			for _, n := range d.workers {
				w := known[n]
				switch {
				case w == nil:
					l.errs.addf(f.Pos, "package_farm %q: workers: unknown worker %q%s", f.Name, n, didYouMean(n, knownNames))
				case len(w.missing) > 0:
					l.errs.addf(f.Pos, "package_farm %q: workers: worker %q has no %s %s (declared at %s); a farm's workers need the properties os, release and arch",
						f.Name, w.name, propWord(len(w.missing)), quoteList(w.missing), w.pos)
				default:
					addWorker(w)
				}
			}
		}
		for _, p := range plats {
			slices.Sort(p.WorkerNames)
			f.Platforms = append(f.Platforms, *p)
		}
		slices.SortFunc(f.Platforms, func(a, b FarmPlatform) int { return strings.Compare(a.Name, b.Name) })
		if !d.ok {
			continue // the call's problems are reported; its builders would only add noise
		}

		for _, p := range f.Platforms {
			if first := taken[p.Builder]; first != nil {
				l.errs.addf(f.Pos, "package_farm %q: the builder %q of platform %s clashes with builder %q (%s); rename one of them",
					f.Name, p.Builder, p.Name, first.Name, first.Pos)
				continue
			}
			b := d.builder(p)
			taken[b.Name] = b
			inserts[d.builderIndex] = append(inserts[d.builderIndex], b)
		}
	}

	var builders []*Builder
	for i := range len(cfg.Builders) + 1 {
		builders = append(builders, inserts[i]...)
		if i < len(cfg.Builders) {
			builders = append(builders, cfg.Builders[i])
		}
	}
	cfg.Builders = builders
}

// builder returns the builder of platform p of d's farm: what
// builder(FARM-PLATFORM, workers, steps, tags, env, properties) would make.
func (d *farmDecl) builder(p FarmPlatform) *Builder {
	f := d.farm
	b := &Builder{
		Name:           p.Builder,
		WorkerNames:    slices.Clone(p.WorkerNames),
		StepsFn:        d.stepsFn,
		Tags:           append([]string{f.Name}, slices.DeleteFunc(slices.Clone(d.tags), func(t string) bool { return t == f.Name })...),
		Description:    fmt.Sprintf("package farm %s on %s", f.Name, p.Name),
		Env:            maps.Clone(d.env),
		WorkerBuildDir: safeDirName(p.Builder),
		Workdir:        DefaultWorkdir,
		Pos:            f.Pos,
	}
	// Each builder has its own copies of the steps, as builder() makes.
	for _, s := range d.steps {
		s := *s
		b.Steps = append(b.Steps, &s)
	}
	b.Properties = make(map[string]any, len(d.properties)+4)
	maps.Copy(b.Properties, d.properties)
	b.Properties["os"] = p.OS
	b.Properties["release"] = p.Release
	b.Properties["arch"] = p.Arch
	b.Properties["platform"] = p.Name
	return b
}

// checkPlatformPart checks one of os, release and arch: platform names
// become directory names (repo/PLATFORM) and URL path segments.
func checkPlatformPart(s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("%q is not a usable platform name part", s)
	}
	for _, r := range s {
		if r == '/' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains %q; platform names cannot contain whitespace, control characters, \"/\" or \"\\\"", s, r)
		}
	}
	return nil
}

func propWord(n int) string {
	if n == 1 {
		return "property"
	}
	return "properties"
}

// quoteList formats names as `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// jsonType names the type of a JSON-like value for messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}
