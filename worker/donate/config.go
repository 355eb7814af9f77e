package donate

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Config is a donor's configuration: the policy, the limits and where the
// owner's idle time comes from. Flags registers its command-line flags;
// a config file (ReadFile) uses the same names.
type Config struct {
	Settings Settings
	Limits   Limits
	// IdleCommand is a program (with arguments, split at spaces) that
	// prints the owner's idle time in milliseconds, tried before the
	// built-in sources.
	IdleCommand string
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() *Config {
	return &Config{Settings: DefaultSettings(), Limits: DefaultLimits()}
}

// flagNames lists the donation flags: the config file's keys.
var flagNames = []string{
	"idle-threshold",
	"max-foreign-load",
	"allow-battery",
	"min-charge",
	"window",
	"finish-after-window",
	"exclusive-app",
	"disk-floor",
	"on-owner",
	"builder-action",
	"max-freeze",
	"resume-delay",
	"cores",
	"nice",
	"ionice",
	"memory-max",
	"throttle-cores",
	"idle-command",
}

// Flags registers the donation settings on fs, with c's values as
// defaults. The names are also the keys of the config file.
func (c *Config) Flags(fs *flag.FlagSet) {
	s, l := &c.Settings, &c.Limits
	fs.DurationVar(&s.IdleThreshold, "idle-threshold", s.IdleThreshold,
		"build only after the owner gave no keyboard or mouse input for `DURATION` (0: ignore the owner)")
	fs.Float64Var(&s.ForeignLoad, "max-foreign-load", s.ForeignLoad,
		"pause while programs other than the worker's use more than `PERCENT` of the whole CPU (0: no check)")
	fs.BoolVar(&s.AllowBattery, "allow-battery", s.AllowBattery,
		"build on battery power too (see --min-charge)")
	fs.IntVar(&s.MinCharge, "min-charge", s.MinCharge,
		"with --allow-battery, build on battery only above `PERCENT` charge")
	fs.Var(&windowList{&s.Windows}, "window",
		"build only inside this weekly `WINDOW`, such as \"mon-fri 19:00-07:00\" or \"sat,sun\" (repeatable; default: any time)")
	fs.BoolVar(&s.FinishAfterWindow, "finish-after-window", s.FinishAfterWindow,
		"let a running build finish when its window closes (false: treat the close like the owner coming back)")
	fs.Var(&appList{&s.ExclusiveApps}, "exclusive-app",
		"pause while a process of this `NAME` runs, such as a game or a video call (repeatable, or comma-separated)")
	fs.Var(&sizeValue{&s.DiskFloor}, "disk-floor",
		"take no new builds while the base directory's disk has less than `SIZE` free (0: no check)")
	fs.Var(&actionValue{&s.OnOwner}, "on-owner",
		"`ACTION` of a running build when the owner comes back: freeze, throttle or abandon")
	fs.Var(&builderActions{&s.BuilderActions}, "builder-action",
		"`BUILDER=ACTION` overrides --on-owner for one builder (repeatable)")
	fs.DurationVar(&s.MaxFreeze, "max-freeze", s.MaxFreeze,
		"hand a build back to the master after it was frozen for `DURATION` (0: never)")
	fs.DurationVar(&s.ResumeDelay, "resume-delay", s.ResumeDelay,
		"after a pause, wait until every check passed for `DURATION` before building again")
	fs.IntVar(&l.Cores, "cores", l.Cores, "let builds use `N` CPUs (0: all)")
	fs.IntVar(&l.Nice, "nice", l.Nice, "run the worker and its builds at nice `N` (0-19)")
	fs.Var(&ioClass{&l.IOClass}, "ionice", "`CLASS` of the builds' disk I/O on Linux: idle, best-effort or none")
	fs.Var(&sizeValue{&l.MemoryMax}, "memory-max",
		"cap the memory of all builds together at `SIZE` (cgroup v2 on Linux; 0: no cap)")
	fs.IntVar(&l.ThrottleCores, "throttle-cores", l.ThrottleCores, "`N` CPUs a throttled build keeps")
	fs.StringVar(&c.IdleCommand, "idle-command", c.IdleCommand,
		"a `COMMAND` printing the owner's idle time in milliseconds (such as xprintidle), tried before the built-in sources")
}

// IsFlag reports whether name is a donation flag.
func IsFlag(name string) bool {
	for _, n := range flagNames {
		if n == name {
			return true
		}
	}
	return false
}

// Check reports settings that make no sense together.
func (c *Config) Check() error {
	s := &c.Settings
	switch {
	case s.IdleThreshold < 0:
		return errors.New("--idle-threshold must not be negative")
	case s.ForeignLoad < 0 || s.ForeignLoad > 100:
		return fmt.Errorf("--max-foreign-load must be 0 to 100, got %v", s.ForeignLoad)
	case s.MinCharge < 0 || s.MinCharge > 100:
		return fmt.Errorf("--min-charge must be 0 to 100, got %d", s.MinCharge)
	case s.MinCharge > 0 && !s.AllowBattery:
		return errors.New("--min-charge needs --allow-battery (without it, builds never run on battery)")
	case s.MaxFreeze < 0 || s.ResumeDelay < 0:
		return errors.New("--max-freeze and --resume-delay must not be negative")
	}
	if err := c.Limits.Check(); err != nil {
		return fmt.Errorf("--%w", err)
	}
	return nil
}

// ReadFile applies a config file to fs: one "name = value" per line,
// with the flag names (without "--"); "#" starts a comment; repeatable
// settings may appear on several lines. Settings named in skip (those
// given on the command line, which win) are left alone. A missing file is
// not an error when optional is set.
func ReadFile(path string, fs *flag.FlagSet, skip map[string]bool, optional bool) error {
	f, err := os.Open(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	return readConfig(path, f, fs, skip)
}

func readConfig(path string, r io.Reader, fs *flag.FlagSet, skip map[string]bool) error {
	sc := bufio.NewScanner(r)
	n := 0
	var errs []error
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 && !strings.Contains(line[:i], `"`) {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimPrefix(strings.TrimSpace(key), "--")
		value = strings.TrimSpace(value)
		if uq, err := strconv.Unquote(value); err == nil {
			value = uq
		}
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s:%d: want name = value, got %q", path, n, line))
			continue
		case !IsFlag(key):
			errs = append(errs, fmt.Errorf("%s:%d: unknown setting %q%s", path, n, key, suggest(key)))
			continue
		case skip[key]:
			continue
		}
		if err := fs.Set(key, value); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %v", path, n, key, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return errors.Join(errs...)
}

// suggest returns ` (did you mean "x"?)` for the closest setting name.
func suggest(name string) string {
	best, bestD := "", 4
	for _, n := range flagNames {
		if d := editDistance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Flag values. Each String copes with a nil pointer: the flag package
// calls it on zero values to tell defaults.

type windowList struct{ s *Schedule }

func (w *windowList) String() string {
	if w == nil || w.s == nil || len(*w.s) == 0 {
		return ""
	}
	parts := make([]string, len(*w.s))
	for i, x := range *w.s {
		parts[i] = x.String()
	}
	return strings.Join(parts, "; ")
}

func (w *windowList) Set(v string) error {
	for _, part := range strings.Split(v, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		win, err := ParseWindow(part)
		if err != nil {
			return err
		}
		*w.s = append(*w.s, win)
	}
	return nil
}

type appList struct{ s *[]string }

func (a *appList) String() string {
	if a == nil || a.s == nil {
		return ""
	}
	return strings.Join(*a.s, ",")
}

func (a *appList) Set(v string) error {
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			*a.s = append(*a.s, n)
		}
	}
	return nil
}

type sizeValue struct{ n *int64 }

func (s *sizeValue) String() string {
	if s == nil || s.n == nil || *s.n == 0 {
		return "0"
	}
	return strings.ReplaceAll(FormatSize(*s.n), " ", "")
}

func (s *sizeValue) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

type actionValue struct{ a *Action }

func (a *actionValue) String() string {
	if a == nil || a.a == nil || *a.a == 0 {
		return ""
	}
	return a.a.String()
}

func (a *actionValue) Set(v string) error {
	act, err := ParseAction(v)
	if err != nil {
		return err
	}
	*a.a = act
	return nil
}

type builderActions struct{ m *map[string]Action }

func (b *builderActions) String() string {
	if b == nil || b.m == nil {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(*b.m) {
		parts = append(parts, k+"="+(*b.m)[k].String())
	}
	return strings.Join(parts, ",")
}

func (b *builderActions) Set(v string) error {
	name, act, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: want BUILDER=ACTION, such as nightly=abandon", v)
	}
	a, err := ParseAction(act)
	if err != nil {
		return err
	}
	if *b.m == nil {
		*b.m = map[string]Action{}
	}
	(*b.m)[strings.TrimSpace(name)] = a
	return nil
}

type ioClass struct{ s *string }

func (c *ioClass) String() string {
	if c == nil || c.s == nil {
		return ""
	}
	if *c.s == "" {
		return "none"
	}
	return *c.s
}

func (c *ioClass) Set(v string) error {
	switch v {
	case "idle", "best-effort":
		*c.s = v
	case "none", "":
		*c.s = ""
	default:
		return fmt.Errorf("%q: want idle, best-effort or none", v)
	}
	return nil
}
