package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// TestValidSched loads the configs of testdata/valid_sched, which use the
// schedulers, locks, users, latent workers and builder options of
// schedulers.go and friends, and compares a dump with their .golden files.
func TestValidSched(t *testing.T) {
	for _, file := range starFiles(t, "testdata/valid_sched") {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadWith(file, Options{Library: testLibrary})
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			golden(t, file, ".golden", dumpSched(cfg))
		})
	}
}

func fn(f *Func) string {
	if f == nil {
		return "nil"
	}
	return f.String()
}

func locks(as []LockAccess) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, fmt.Sprintf("%s %s_lock %q", a.Mode, a.Lock.Kind, a.Lock.Name))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func cmd(a *ShellAction) string {
	if a == nil {
		return "nil"
	}
	return action(a)
}

func filter(f *ChangeFilter) string {
	if f == nil {
		return "nil"
	}
	var res []string
	for _, r := range f.BranchRe {
		res = append(res, r.String())
	}
	return fmt.Sprintf("{project=%q repository=%q branch=%q branch_re=%q category=%q codebase=%q files=%q fn=%s pos=%s}",
		f.Project, f.Repository, f.Branch, res, f.Category, f.Codebase, f.Files, fn(f.Fn), f.Pos)
}

// dumpSched renders the parts of cfg that dump leaves out.
func dumpSched(cfg *Config) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("summary: %s", cfg.Summary())
	m := cfg.Master
	p("master: ssh_addr=%q db=%q web_auth=%q worker_protocol=%q", m.SSHAddr, m.DB, m.WebAuth, m.WorkerProtocol)
	for _, lk := range cfg.Locks {
		p("lock %q: kind=%s max_count=%d max_count_for_worker=%v pos=%s", lk.Name, lk.Kind, lk.MaxCount, lk.MaxCountForWorker, lk.Pos)
	}
	for _, w := range cfg.Workers {
		p("worker %q: notify_on_missing=%q missing_timeout=%v locks=%s", w.Name, w.NotifyOnMissing, w.MissingTimeout, locks(w.Locks))
	}
	for _, w := range cfg.LatentWorkers {
		p("latent_worker %q: driver=%s start=%s stop=%s check=%s build_wait_timeout=%v missing_timeout=%v max_instances=%d properties=%s pos=%s",
			w.Name, w.Driver.Kind, cmd(w.Driver.Start), cmd(w.Driver.Stop), cmd(w.Driver.Check), w.BuildWaitTimeout, w.MissingTimeout, w.MaxInstances, jsonish(w.Properties), w.Pos)
	}
	for _, bl := range cfg.Builders {
		collapse := "default"
		if bl.CollapseRequests != nil {
			collapse = fmt.Sprint(*bl.CollapseRequests)
		}
		filt := "nil"
		if bl.WorkerFilter != nil {
			filt = bl.WorkerFilter.String()
		}
		p("builder %q: workers=%q filter=%s workdir=%q locks=%s collapse=%s collapse_fn=%s next_worker=%s next_build=%s can_start=%s priority=%d",
			bl.Name, bl.WorkerNames, filt, bl.Workdir, locks(bl.Locks), collapse, fn(bl.CollapseRequestsFn), fn(bl.NextWorker), fn(bl.NextBuild), fn(bl.CanStart), bl.Priority)
		for _, s := range bl.Steps {
			p("  step %q: workdir=%q locks=%s", s.Name, s.Workdir, locks(s.Locks))
		}
	}
	for _, s := range cfg.Schedulers {
		switch s := s.(type) {
		case *SingleBranchScheduler:
			p("single_branch_scheduler %q: builders=%q branch=%q filter=%s tree_stable_timer=%v file_is_important=%s only_important=%t priority=%d codebases=%q pos=%s",
				s.Name, s.Builders, s.Branch, filter(s.ChangeFilter), s.TreeStableTimer, fn(s.FileIsImportant), s.OnlyImportant, s.Priority, s.Codebases, s.Pos)
		case *AnyBranchScheduler:
			p("any_branch_scheduler %q: builders=%q filter=%s tree_stable_timer=%v file_is_important=%s only_important=%t priority=%d codebases=%q pos=%s",
				s.Name, s.Builders, filter(s.ChangeFilter), s.TreeStableTimer, fn(s.FileIsImportant), s.OnlyImportant, s.Priority, s.Codebases, s.Pos)
		case *Periodic:
			p("periodic %q: builders=%q interval=%v branch=%q priority=%d pos=%s", s.Name, s.Builders, s.Interval, s.Branch, s.Priority, s.Pos)
		case *Nightly:
			p("nightly %q: builders=%q cron=%q %q %q %q %q time_zone=%q location=%s branch=%q only_if_changed=%t priority=%d pos=%s",
				s.Name, s.Builders, s.Minute, s.Hour, s.DayOfMonth, s.Month, s.DayOfWeek, s.TimeZone, s.Location, s.Branch, s.OnlyIfChanged, s.Priority, s.Pos)
		case *Triggerable:
			p("triggerable %q: builders=%q pos=%s", s.Name, s.Builders, s.Pos)
		case *Dependent:
			p("dependent %q: upstream=%q builders=%q pos=%s", s.Name, s.Upstream, s.Builders, s.Pos)
		case *ForceScheduler:
			p("force_scheduler %q: builders=%q label=%q pos=%s", s.Name, s.Builders, s.Label, s.Pos)
			for _, fp := range s.Params {
				re := ""
				if fp.Regex != nil {
					re = fp.Regex.String()
				}
				def := fmt.Sprintf("%#v", fp.Default)
				if m, ok := fp.Default.(map[string]any); ok {
					def = jsonish(m)
				}
				p("  %s_param %q: label=%q required=%t default=%s regex=%q choices=%q multiple=%t branch=%q revision=%q repository=%q project=%q pos=%s",
					fp.Kind, fp.Name, fp.Label, fp.Required, def, re, fp.Choices, fp.Multiple, fp.Branch, fp.Revision, fp.Repository, fp.Project, fp.Pos)
			}
		default:
			p("unknown scheduler %T", s)
		}
	}
	for _, r := range cfg.Roles {
		p("role %q: can=%q pos=%s", r.Name, r.Can, r.Pos)
	}
	for _, u := range cfg.Users {
		ak := u.AuthorizedKeys
		if ak != "" {
			wd, _ := os.Getwd()
			ak, _ = filepath.Rel(wd, ak)
		}
		p("user %q: password_hash=%t keys=%d authorized_keys=%q roles=%q pos=%s", u.Name, u.PasswordHash != "", len(u.Keys), ak, u.Roles, u.Pos)
	}
	return b.String()
}

func TestCronField(t *testing.T) {
	for _, tc := range []struct {
		in     starlark.Value
		lo, hi int
		want   string
		err    string
	}{
		{starlark.String("*"), 0, 59, "*", ""},
		{starlark.String("*/15"), 0, 59, "0,15,30,45", ""},
		{starlark.String("5/20"), 0, 59, "5,25,45", ""},
		{starlark.String("1-5"), 0, 6, "1,2,3,4,5", ""},
		{starlark.String("0,30, 15"), 0, 59, "0,15,30", ""},
		{starlark.String("8-18/4"), 0, 23, "8,12,16", ""},
		{starlark.MakeInt(7), 0, 23, "7", ""},
		{starlark.NewList([]starlark.Value{starlark.MakeInt(3), starlark.MakeInt(1), starlark.MakeInt(3)}), 1, 12, "1,3", ""},
		{starlark.MakeInt(24), 0, 23, "", "24 is out of range; want 0 to 23"},
		{starlark.MakeInt(0), 1, 31, "", "0 is out of range; want 1 to 31"},
		{starlark.String("7"), 0, 6, "", "7 is out of range; want 0 to 6"},
		{starlark.String("5-1"), 0, 6, "", `invalid range 5-1 in "5-1"`},
		{starlark.String("*/0"), 0, 59, "", `step must be at least 1 in "*/0"`},
		{starlark.String("every"), 0, 59, "", `invalid cron field "every"; want "*", "*/15", "1-5", "0,30" or an int from 0 to 59`},
		{starlark.NewList(nil), 0, 59, "", "empty list; want at least one value from 0 to 59"},
		{starlark.Float(1), 0, 59, "", `want int, list of ints or a cron string such as "*/15", got float`},
	} {
		f, err := parseCronField(tc.in, tc.lo, tc.hi)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("parseCronField(%s) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("parseCronField(%s): %v", tc.in, err)
		case tc.err == "" && f.String() != tc.want:
			t.Errorf("parseCronField(%s) = %s, want %s", tc.in, f, tc.want)
		}
	}
	f := CronField{Values: []int{1, 5}}
	if !f.Match(5) || f.Match(2) || !(CronField{Any: true}).Match(9) {
		t.Error("CronField.Match")
	}
}

func TestWorkerFilterMatch(t *testing.T) {
	f := &WorkerFilter{Properties: map[string]any{"os": "linux", "arch": []any{"amd64", "arm64"}, "n": int64(2)}}
	for _, tc := range []struct {
		props map[string]any
		want  bool
	}{
		{map[string]any{"os": "linux", "arch": "amd64", "n": int64(2)}, true},
		{map[string]any{"os": "linux", "arch": "arm64", "n": int64(2), "x": true}, true},
		{map[string]any{"os": "linux", "arch": "riscv", "n": int64(2)}, false},
		{map[string]any{"os": "linux", "n": int64(2)}, false},
		{map[string]any{"os": "linux", "arch": "amd64", "n": 2.0}, false},
		{nil, false},
	} {
		if got := f.Match(tc.props); got != tc.want {
			t.Errorf("Match(%v) = %t, want %t", tc.props, got, tc.want)
		}
	}
}

func TestCheckSSHKey(t *testing.T) {
	const good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk2Jx1Ux5qJvK0mY8v1D1FvfUkqJ2q0JqKx3n9u2Q0F"
	if err := checkSSHKey(good + " me@host"); err != nil {
		t.Errorf("good key: %v", err)
	}
	for _, bad := range []string{
		"", "AAAAC3NzaC1lZDI1NTE5", "ssh-ed25519", "ssh-ed25519 !!!",
		"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGk2Jx1Ux5qJvK0mY8v1D1FvfUkqJ2q0JqKx3n9u2Q0F",
		"ssh-ed2519 AAAAC3NzaC1lZDI1NTE5AAAAIGk2Jx1Ux5qJvK0mY8v1D1FvfUkqJ2q0JqKx3n9u2Q0F",
		"ssh-ed25519 AAAA",
	} {
		if err := checkSSHKey(bad); err == nil {
			t.Errorf("checkSSHKey(%q) = nil, want an error", bad)
		}
	}
}

func TestBuildWaitTimeoutAndDefaults(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.star")
	src := `
worker("w", "pw")
latent_worker("l", process_driver())
builder("b", ["w", "l"], [shell("x")])
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Master
	if m.DB != DefaultDB || m.WebAuth != "none" || m.WorkerProtocol != DefaultWorkerProtocol || m.SSHAddr != "" {
		t.Errorf("master defaults: %+v", m)
	}
	if w := cfg.Worker("w"); w.MissingTimeout != DefaultMissingTimeout || w.Locks != nil {
		t.Errorf("worker defaults: %+v", w)
	}
	l := cfg.LatentWorker("l")
	if l == nil || l.BuildWaitTimeout != DefaultBuildWaitTimeout || l.MaxInstances != 1 || l.MissingTimeout != 20*time.Minute {
		t.Errorf("latent worker defaults: %+v", l)
	}
	b := cfg.Builder("b")
	if b.Workdir != DefaultWorkdir || b.Steps[0].Workdir != DefaultWorkdir || b.CollapseRequests != nil || b.Priority != 0 {
		t.Errorf("builder defaults: %+v", b)
	}
	if cfg.Role("admin") == nil || cfg.Role("developer") == nil || cfg.Role("nope") != nil {
		t.Error("built-in roles")
	}
}

// TestLockAccessAtBuildTime checks that lock.access called by a function
// of the build reports a bad mode as a Starlark error, and does not touch
// the finished load.
func TestLockAccessAtBuildTime(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.star")
	src := `
lk = worker_lock("cpu")
def pick(builder, workers, request):
    return lk.access(request)
worker("w", "pw")
builder("b", ["w"], [shell("x")], next_worker = pick)
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Builder("b").NextWorker
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			th := &starlark.Thread{Name: "build"}
			v, err := starlark.Call(th, f.Fn, starlark.Tuple{starlark.None, starlark.None, starlark.String("counting")}, nil)
			if err != nil || v.Type() != "lock_access" {
				t.Errorf("access(counting) = %v, %v", v, err)
			}
			_, err = starlark.Call(th, f.Fn, starlark.Tuple{starlark.None, starlark.None, starlark.String("shared")}, nil)
			if err == nil || !strings.Contains(err.Error(), `mode: want "exclusive" or "counting", got "shared"`) {
				t.Errorf("access(shared): got %v", err)
			}
		})
	}
}

func TestFunctionArity(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.star")
	src := `
def a(x): pass
def b(x, y = 1): pass
def c(*args): pass
def d(x, *args, **kw): pass
def e(x, y): pass
def f(): pass
def g(x, *, k): pass
def h(x, *, k = 1): pass
def i(**kw): pass
worker("w", "pw")
builder("b", ["w"], [shell("x")])
[single_branch_scheduler(n, ["b"], branch = "m", file_is_important = fn) for n, fn in
 [("a", a), ("b", b), ("c", c), ("d", d), ("e", e), ("f", f), ("g", g), ("h", h), ("i", i)]]
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	got := strings.Count(err.Error(), "must take 1 positional argument")
	for _, bad := range []string{"function e ", "function f ", "function g ", "function i "} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("no error for %s", bad)
		}
	}
	if got != 4 {
		t.Errorf("got %d arity errors, want 4:\n%v", got, err)
	}
}
