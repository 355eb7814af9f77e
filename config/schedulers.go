package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // nightly(time_zone=) works on machines without tzdata

	"go.starlark.net/starlark"
)

// SingleBranchScheduler starts builds for changes on one branch, as
// Buildbot's SingleBranchScheduler.
type SingleBranchScheduler struct {
	Name     string
	Builders []string
	// Exactly one of Branch and ChangeFilter is set.
	Branch       string
	ChangeFilter *ChangeFilter
	// TreeStableTimer is how long the branch must see no new change before
	// a build starts with all of them; 0 builds every change on its own.
	TreeStableTimer time.Duration
	FileIsImportant *Func // file_is_important(change) -> bool, or nil
	OnlyImportant   bool  // ignore changes that are not important
	Priority        int   // of the build requests; default 0
	Codebases       []string
	Pos             Pos
}

// AnyBranchScheduler is SingleBranchScheduler for every branch, each
// branch having its own tree-stable timer.
type AnyBranchScheduler struct {
	Name            string
	Builders        []string
	ChangeFilter    *ChangeFilter // nil: every change
	TreeStableTimer time.Duration
	FileIsImportant *Func
	OnlyImportant   bool
	Priority        int
	Codebases       []string
	Pos             Pos
}

// Periodic starts builds every Interval.
type Periodic struct {
	Name     string
	Builders []string
	Interval time.Duration // positive
	Branch   string        // "" for the default branch
	Priority int
	Pos      Pos
}

// Nightly starts builds at the times its cron fields match, in TimeZone.
// Minute is 0-59, Hour 0-23, DayOfMonth 1-31, Month 1-12 and DayOfWeek
// 0-6 with 0 for Sunday, as in cron and time.Weekday (Buildbot's 0 is
// Monday).
type Nightly struct {
	Name                                       string
	Builders                                   []string
	Minute, Hour, DayOfMonth, Month, DayOfWeek CronField
	// TimeZone is the IANA name given, "" for the master's local time;
	// Location is it loaded.
	TimeZone      string
	Location      *time.Location
	Branch        string
	OnlyIfChanged bool // build only if the branch changed since the last build
	Priority      int
	Pos           Pos
}

// Triggerable starts builds when a trigger step of another build asks.
type Triggerable struct {
	Name     string
	Builders []string
	Pos      Pos
}

// Dependent starts builds when a buildset of its Upstream scheduler
// finishes successfully.
type Dependent struct {
	Name     string
	Upstream string // the name of a declared scheduler, not this one
	Builders []string
	Pos      Pos
}

// CronField is one field of a nightly() schedule: every value (Any) or
// the sorted values listed.
type CronField struct {
	Any    bool
	Values []int
}

// Match reports whether v is one of the field's values.
func (f CronField) Match(v int) bool {
	if f.Any {
		return true
	}
	_, found := slices.BinarySearch(f.Values, v)
	return found
}

// String returns the field in cron syntax, such as "*" or "0,15,30,45".
func (f CronField) String() string {
	if f.Any {
		return "*"
	}
	parts := make([]string, len(f.Values))
	for i, v := range f.Values {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

// SchedulerName implements Scheduler.
func (s *SingleBranchScheduler) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *SingleBranchScheduler) BuilderNames() []string { return s.Builders }

// SchedulerName implements Scheduler.
func (s *AnyBranchScheduler) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *AnyBranchScheduler) BuilderNames() []string { return s.Builders }

// SchedulerName implements Scheduler.
func (s *Periodic) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *Periodic) BuilderNames() []string { return s.Builders }

// SchedulerName implements Scheduler.
func (s *Nightly) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *Nightly) BuilderNames() []string { return s.Builders }

// SchedulerName implements Scheduler.
func (s *Triggerable) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *Triggerable) BuilderNames() []string { return s.Builders }

// SchedulerName implements Scheduler.
func (s *Dependent) SchedulerName() string { return s.Name }

// BuilderNames implements Scheduler.
func (s *Dependent) BuilderNames() []string { return s.Builders }

func (s *SingleBranchScheduler) kind() string { return "single_branch_scheduler" }
func (s *SingleBranchScheduler) pos() Pos     { return s.Pos }
func (s *AnyBranchScheduler) kind() string    { return "any_branch_scheduler" }
func (s *AnyBranchScheduler) pos() Pos        { return s.Pos }
func (s *Periodic) kind() string              { return "periodic" }
func (s *Periodic) pos() Pos                  { return s.Pos }
func (s *Nightly) kind() string               { return "nightly" }
func (s *Nightly) pos() Pos                   { return s.Pos }
func (s *Triggerable) kind() string           { return "triggerable" }
func (s *Triggerable) pos() Pos               { return s.Pos }
func (s *Dependent) kind() string             { return "dependent" }
func (s *Dependent) pos() Pos                 { return s.Pos }

var schedulerParams = []param{
	{name: "name", required: true, positional: true},
	{name: "builders", required: true, positional: true},
}

var changeSchedulerParams = []param{
	{name: "change_filter"},
	{name: "tree_stable_timer"},
	{name: "file_is_important"},
	{name: "only_important"},
	{name: "priority"},
	{name: "codebases"},
}

// scheduler registers s and returns its Starlark value.
func scheduler(c *call, s Scheduler, typ string) starlark.Value {
	if s.SchedulerName() != "" {
		c.l.schedulers = append(c.l.schedulers, s)
	}
	return c.named(typ, s.SchedulerName(), s)
}

// changeOptions parses the options shared by the change-driven schedulers.
func (c *call) changeOptions() (cf *ChangeFilter, stable time.Duration, important *Func, only bool, prio int, codebases []string) {
	cf = c.changeFilter("change_filter")
	stable = c.duration("tree_stable_timer", 0)
	important = c.function("file_is_important", 1)
	only = c.bool("only_important", false)
	if _, hasFn := c.given("file_is_important"); only && !hasFn {
		c.argErrorf("only_important", "True without file_is_important: every change would be important")
	}
	prio = c.int("priority", 0)
	codebases = c.nameListOpt("codebases", "codebase")
	return
}

// builtinSingleBranchScheduler implements single_branch_scheduler(name,
// builders, branch=, change_filter=, tree_stable_timer=, file_is_important=,
// only_important=False, priority=0, codebases=[]).
func builtinSingleBranchScheduler(c *call) (starlark.Value, error) {
	s := &SingleBranchScheduler{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	s.Branch = c.nonEmptyStr("branch", "")
	s.ChangeFilter, s.TreeStableTimer, s.FileIsImportant, s.OnlyImportant, s.Priority, s.Codebases = c.changeOptions()
	_, hasBranch := c.given("branch")
	_, hasFilter := c.given("change_filter")
	switch {
	case hasBranch && s.ChangeFilter != nil:
		c.errorf("give branch or change_filter, not both (put the branch in the filter)")
	case !hasBranch && !hasFilter:
		c.errorf("missing branch or change_filter (use any_branch_scheduler for every branch)")
	}
	return scheduler(c, s, "single_branch_scheduler"), nil
}

// builtinAnyBranchScheduler implements any_branch_scheduler(name, builders,
// change_filter=, tree_stable_timer=, file_is_important=,
// only_important=False, priority=0, codebases=[]).
func builtinAnyBranchScheduler(c *call) (starlark.Value, error) {
	s := &AnyBranchScheduler{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	s.ChangeFilter, s.TreeStableTimer, s.FileIsImportant, s.OnlyImportant, s.Priority, s.Codebases = c.changeOptions()
	return scheduler(c, s, "any_branch_scheduler"), nil
}

var periodicParams = []param{
	{name: "interval", required: true},
	{name: "branch"},
	{name: "priority"},
}

// builtinPeriodic implements periodic(name, builders, interval=, branch=,
// priority=0).
func builtinPeriodic(c *call) (starlark.Value, error) {
	s := &Periodic{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	if v := c.value("interval"); v == starlark.None {
		c.argErrorf("interval", "want a positive duration such as \"1h\", got None")
	} else {
		s.Interval = c.duration("interval", 0)
	}
	s.Branch = c.nonEmptyStr("branch", "")
	s.Priority = c.int("priority", 0)
	return scheduler(c, s, "periodic"), nil
}

var nightlyParams = []param{
	{name: "minute"},
	{name: "hour"},
	{name: "day_of_month"},
	{name: "month"},
	{name: "day_of_week"},
	{name: "time_zone"},
	{name: "branch"},
	{name: "only_if_changed"},
	{name: "priority"},
}

// builtinNightly implements nightly(name, builders, minute=0, hour="*",
// day_of_month="*", month="*", day_of_week="*", time_zone=None, branch=None,
// only_if_changed=False, priority=0).
func builtinNightly(c *call) (starlark.Value, error) {
	s := &Nightly{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	s.Minute = c.cronField("minute", 0, 59, CronField{Values: []int{0}})
	s.Hour = c.cronField("hour", 0, 23, CronField{Any: true})
	s.DayOfMonth = c.cronField("day_of_month", 1, 31, CronField{Any: true})
	s.Month = c.cronField("month", 1, 12, CronField{Any: true})
	s.DayOfWeek = c.cronField("day_of_week", 0, 6, CronField{Any: true})
	s.Location = time.Local
	if tz := c.nonEmptyStr("time_zone", ""); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			c.argErrorf("time_zone", "unknown time zone %q; want an IANA name such as \"UTC\" or \"Europe/Paris\"", tz)
		} else {
			s.TimeZone, s.Location = tz, loc
		}
	}
	s.Branch = c.nonEmptyStr("branch", "")
	s.OnlyIfChanged = c.bool("only_if_changed", false)
	s.Priority = c.int("priority", 0)
	return scheduler(c, s, "nightly"), nil
}

// cronField returns the argument for name as a cron field whose values
// are in [lo, hi]: an int, a list of ints, or a string in cron syntax
// ("*", "*/15", "1-5", "0,30", "8-18/2").
func (c *call) cronField(name string, lo, hi int, def CronField) CronField {
	v, ok := c.given(name)
	if !ok {
		return def
	}
	f, err := parseCronField(v, lo, hi)
	if err != nil {
		c.argErrorf(name, "%v", err)
		return def
	}
	return f
}

func parseCronField(v starlark.Value, lo, hi int) (CronField, error) {
	rangeErr := func(n int) error {
		return fmt.Errorf("%d is out of range; want %d to %d", n, lo, hi)
	}
	var vals []int
	switch v := v.(type) {
	case starlark.Int:
		n, err := starlark.AsInt32(v)
		if err != nil || n < lo || n > hi {
			return CronField{}, fmt.Errorf("%s is out of range; want %d to %d", v, lo, hi)
		}
		vals = []int{n}
	case *starlark.List, starlark.Tuple:
		seq := v.(starlark.Indexable)
		if seq.Len() == 0 {
			return CronField{}, fmt.Errorf("empty list; want at least one value from %d to %d", lo, hi)
		}
		for i := range seq.Len() {
			e, isInt := seq.Index(i).(starlark.Int)
			if !isInt {
				return CronField{}, fmt.Errorf("[%d]: want int, got %s", i, seq.Index(i).Type())
			}
			n, err := starlark.AsInt32(e)
			if err != nil || n < lo || n > hi {
				return CronField{}, fmt.Errorf("[%d]: %s is out of range; want %d to %d", i, e, lo, hi)
			}
			vals = append(vals, n)
		}
	case starlark.String:
		s := strings.TrimSpace(string(v))
		if s == "*" {
			return CronField{Any: true}, nil
		}
		for _, part := range strings.Split(s, ",") {
			m := cronPart.FindStringSubmatch(strings.TrimSpace(part))
			if m == nil {
				return CronField{}, fmt.Errorf("invalid cron field %q; want \"*\", \"*/15\", \"1-5\", \"0,30\" or an int from %d to %d", string(v), lo, hi)
			}
			from, to := lo, hi
			if m[1] != "*" {
				from, _ = strconv.Atoi(m[2])
				to = from
				if m[3] != "" {
					to, _ = strconv.Atoi(m[3])
				}
			}
			for _, n := range []int{from, to} {
				if n < lo || n > hi {
					return CronField{}, rangeErr(n)
				}
			}
			if from > to {
				return CronField{}, fmt.Errorf("invalid range %d-%d in %q", from, to, string(v))
			}
			step := 1
			if m[4] != "" {
				step, _ = strconv.Atoi(m[4])
				if step < 1 {
					return CronField{}, fmt.Errorf("step must be at least 1 in %q", string(v))
				}
				if m[1] != "*" && m[3] == "" {
					to = hi // "5/15" means 5-hi/15, as in cron
				}
			}
			for n := from; n <= to; n += step {
				vals = append(vals, n)
			}
		}
	default:
		return CronField{}, fmt.Errorf("want int, list of ints or a cron string such as \"*/15\", got %s", v.Type())
	}
	slices.Sort(vals)
	return CronField{Values: slices.Compact(vals)}, nil
}

var cronPart = regexp.MustCompile(`^(\*|([0-9]{1,2})(?:-([0-9]{1,2}))?)(?:/([0-9]{1,2}))?$`)

// builtinTriggerable implements triggerable(name, builders).
func builtinTriggerable(c *call) (starlark.Value, error) {
	s := &Triggerable{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	return scheduler(c, s, "triggerable"), nil
}

var dependentParams = []param{
	{name: "name", required: true, positional: true},
	{name: "upstream", required: true, positional: true},
	{name: "builders", required: true, positional: true},
}

// builtinDependent implements dependent(name, upstream, builders). upstream
// is a scheduler's name or value.
func builtinDependent(c *call) (starlark.Value, error) {
	s := &Dependent{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	if v, ok := c.given("upstream"); ok {
		if o, isObj := v.(*object); isObj {
			if up, isSched := o.item.(Scheduler); isSched {
				s.Upstream = up.SchedulerName()
			} else {
				c.argErrorf("upstream", "want a scheduler or its name, got %s", v.Type())
			}
		} else {
			s.Upstream = c.nonEmptyStr("upstream", "")
		}
	}
	s.Builders = c.nameList("builders", "builder")
	return scheduler(c, s, "dependent"), nil
}

// validateDependents checks that every dependent scheduler names another,
// declared scheduler as its upstream.
func (l *loader) validateDependents(cfg *Config) {
	var names []string
	known := make(map[string]bool, len(cfg.Schedulers))
	for _, s := range cfg.Schedulers {
		if !known[s.SchedulerName()] {
			names = append(names, s.SchedulerName())
		}
		known[s.SchedulerName()] = true
	}
	upstream := make(map[string]string)
	for _, s := range cfg.Schedulers {
		if d, ok := s.(*Dependent); ok && d.Upstream != "" {
			if _, dup := upstream[d.Name]; !dup {
				upstream[d.Name] = d.Upstream
			}
		}
	}
	for _, s := range cfg.Schedulers {
		d, ok := s.(*Dependent)
		if !ok || d.Upstream == "" {
			continue
		}
		switch {
		case d.Upstream == d.Name:
			l.errs.addf(d.Pos, "dependent %q: upstream: a scheduler cannot depend on itself", d.Name)
		case !known[d.Upstream]:
			l.errs.addf(d.Pos, "dependent %q: upstream: unknown scheduler %q%s", d.Name, d.Upstream, didYouMean(d.Upstream, names))
		default:
			// Follow the chain of upstreams: one that comes back here
			// would never start.
			chain := []string{d.Name}
			for n, steps := d.Upstream, 0; steps <= len(upstream); steps++ {
				chain = append(chain, n)
				if n == d.Name {
					l.errs.addf(d.Pos, "dependent %q: upstream: cycle %s", d.Name, strings.Join(chain, " -> "))
					break
				}
				next, isDep := upstream[n]
				if !isDep {
					break
				}
				n = next
			}
		}
	}
}

// --- force_scheduler parameters ---

// ForceParam is one parameter of a force scheduler's form.
type ForceParam struct {
	// Kind is the constructor without "_param": "string", "text", "int",
	// "bool", "choice", "username", "codebase" or "fixed".
	Kind     string
	Name     string // the property it sets; for "codebase", the codebase ("" is the default one)
	Label    string // defaults to Name
	Required bool
	// Default is the initial value: string for string, text, username and
	// choice (without multiple), []string for choice with multiple, int64
	// for int, bool for bool; for fixed, the Value. Nil when none.
	Default  any
	Regex    *regexp.Regexp // string and text: the value must match
	Choices  []string       // choice
	Multiple bool           // choice: several may be picked
	// Codebase: the default branch, revision, repository and project.
	Branch, Revision, Repository, Project string
	Pos                                   Pos
}

var commonForceParamParams = []param{
	{name: "label"},
	{name: "default"},
	{name: "required"},
}

// forceParamKinds are the parameter constructors, by kind.
var forceParamKinds = []struct {
	kind   string
	params [][]param
}{
	{"string", [][]param{{{name: "name", required: true, positional: true}}, commonForceParamParams, {{name: "regex"}}}},
	{"text", [][]param{{{name: "name", required: true, positional: true}}, commonForceParamParams, {{name: "regex"}}}},
	{"int", [][]param{{{name: "name", required: true, positional: true}}, commonForceParamParams}},
	{"bool", [][]param{{{name: "name", required: true, positional: true}}, commonForceParamParams}},
	{"choice", [][]param{{{name: "name", required: true, positional: true}, {name: "choices", required: true, positional: true}}, commonForceParamParams, {{name: "multiple"}}}},
	{"username", [][]param{{{name: "name", positional: true}}, commonForceParamParams}},
	{"codebase", [][]param{{{name: "codebase", required: true, positional: true}}, {{name: "label"}, {name: "branch"}, {name: "revision"}, {name: "repository"}, {name: "project"}}}},
	{"fixed", [][]param{{{name: "name", required: true, positional: true}, {name: "value", required: true, positional: true}}, {{name: "label"}}}},
}

// forceParamBuiltins returns string_param(...), text_param(...), etc.
func forceParamBuiltins() []*builtin {
	var bs []*builtin
	for _, k := range forceParamKinds {
		bs = append(bs, &builtin{
			sig: newSignature(k.kind+"_param", k.params...),
			fn:  func(c *call) (starlark.Value, error) { return newForceParam(c, k.kind), nil },
		})
	}
	return bs
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// reservedParamNames are force request keys with a meaning of their own
// (Buildbot reserves the same).
var reservedParamNames = map[string]bool{"owner": true, "builderNames": true, "builderid": true}

// forceParamKeys returns the force request keys p reads: its name, or for
// a codebase parameter one per field, "branch" and so on for the default
// codebase and "<codebase>_branch" and so on for the others (Buildbot's
// names).
func forceParamKeys(p *ForceParam) []string {
	if p.Kind != "codebase" {
		return []string{p.Name}
	}
	var keys []string
	for _, f := range []string{"branch", "revision", "repository", "project"} {
		if p.Name == "" {
			keys = append(keys, f)
		} else {
			keys = append(keys, p.Name+"_"+f)
		}
	}
	return keys
}

func newForceParam(c *call, kind string) starlark.Value {
	p := &ForceParam{Kind: kind, Pos: c.pos}
	if kind == "codebase" {
		p.Name = c.str("codebase", "")
		p.Branch = c.str("branch", "")
		p.Revision = c.str("revision", "")
		p.Repository = c.str("repository", "")
		p.Project = c.str("project", "")
	} else {
		def := ""
		if kind == "username" {
			def = "username"
		}
		p.Name = c.nonEmptyStr("name", def)
		if p.Name != "" && !paramName.MatchString(p.Name) {
			c.argErrorf("name", "%q is not a valid property name; want letters, digits, \"_\", \".\" and \"-\", starting with a letter or \"_\"", p.Name)
		}
		if reservedParamNames[p.Name] {
			c.argErrorf("name", "%q is reserved by the force form; choose another name", p.Name)
		}
	}
	p.Label = c.nonEmptyStr("label", p.Name)
	if kind != "codebase" && kind != "fixed" {
		p.Required = c.bool("required", false)
	}
	switch kind {
	case "string", "text", "username":
		p.Default = c.str("default", "")
		if kind != "username" {
			if re := c.str("regex", ""); re != "" {
				rx, err := regexp.Compile(re)
				if err != nil {
					c.argErrorf("regex", "invalid regular expression %q: %s", re, unwrapRegexpErr(err))
				} else {
					p.Regex = rx
					if _, given := c.given("default"); given && !rx.MatchString(p.Default.(string)) {
						c.argErrorf("default", "%q does not match regex %q", p.Default, re)
					}
				}
			}
		}
	case "int":
		p.Default = int64(c.int("default", 0))
	case "bool":
		p.Default = c.bool("default", false)
	case "choice":
		p.Choices = c.nameList("choices", "choice")
		p.Multiple = c.bool("multiple", false)
		if p.Multiple {
			var def []string
			for _, d := range c.strOrList("default") {
				if !contains(p.Choices, d) && len(p.Choices) > 0 {
					c.argErrorf("default", "%q is not one of the choices%s", d, didYouMean(d, p.Choices))
				}
				def = append(def, d)
			}
			p.Default = def
		} else {
			def := ""
			if len(p.Choices) > 0 {
				def = p.Choices[0]
			}
			d := c.str("default", def)
			if _, given := c.given("default"); given && len(p.Choices) > 0 && !contains(p.Choices, d) {
				c.argErrorf("default", "%q is not one of the choices%s", d, didYouMean(d, p.Choices))
			}
			p.Default = d
		}
	case "fixed":
		if v, ok := c.given("value"); ok {
			x, err := toJSON(v, 0)
			if err != nil {
				c.argErrorf("value"+err.path(), "%s", err.msg)
			}
			p.Default = x
		}
	}
	return &object{
		typ:   "force_param",
		repr:  reprCall(kind+"_param", starlark.String(p.Name)),
		attrs: starlark.StringDict{"name": starlark.String(p.Name), "kind": starlark.String(kind)},
		item:  p,
		ok:    c.ok(),
	}
}

// forceParams returns the params= argument of force_scheduler: a list of
// parameters with unique names.
func (c *call) forceParams(name string) []ForceParam {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf(name, "want list of parameters such as string_param(\"reason\"), got %s", v.Type())
		return nil
	}
	var out []ForceParam
	seen := make(map[string]*ForceParam)
	keys := make(map[string]*ForceParam) // request keys, which codebase fields share with names
	var username *ForceParam
	for i := range seq.Len() {
		e := seq.Index(i)
		at := name + "[" + strconv.Itoa(i) + "]"
		o, isObj := e.(*object)
		if !isObj || o.typ != "force_param" {
			c.argErrorf(at, "want a parameter such as string_param(\"reason\"), got %s", e.Type())
			continue
		}
		// A parameter with problems still takes its name, so that a second
		// one with the same name is reported too.
		p := o.item.(*ForceParam)
		key := p.Name
		if p.Kind == "codebase" {
			key = "codebase:" + p.Name
		}
		if first := seen[key]; first != nil {
			what := "parameter name"
			if p.Kind == "codebase" {
				what = "codebase"
			}
			c.argErrorf(at, "duplicate %s %q (first at %s)", what, p.Name, first.Pos)
			continue
		}
		seen[key] = p
		if p.Kind == "username" {
			if username != nil {
				c.argErrorf(at, "a second username_param (first at %s); one field names who forces the build", username.Pos)
				continue
			}
			username = p
		}
		pk := forceParamKeys(p)
		if k, first := clash(keys, pk); first != nil {
			c.argErrorf(at, "form field %q is also a field of %s (at %s)", k, describeParam(first), first.Pos)
			continue
		}
		for _, k := range pk {
			keys[k] = p
		}
		if o.ok {
			out = append(out, *p)
		}
	}
	return out
}

// clash returns the first of ks that held has, and its parameter; nil if none.
func clash(held map[string]*ForceParam, ks []string) (string, *ForceParam) {
	for _, k := range ks {
		if p := held[k]; p != nil {
			return k, p
		}
	}
	return "", nil
}

func describeParam(p *ForceParam) string {
	if p.Kind == "codebase" {
		return fmt.Sprintf("codebase_param(%q)", p.Name)
	}
	return fmt.Sprintf("%s_param(%q)", p.Kind, p.Name)
}
