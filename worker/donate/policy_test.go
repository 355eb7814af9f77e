package donate

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// t0 is a Wednesday noon, UTC.
var t0 = time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)

// obs builds an observation: at offset from t0, owner idle for idle,
// everything else known and fine unless mod changes it.
func obs(at, idle time.Duration, mod ...func(*Observation)) Observation {
	o := Observation{
		Now: t0.Add(at), Idle: idle, IdleKnown: true,
		LoadKnown: true, PowerKnown: true, Charge: 100,
		FreeDisk: 100 << 30, DiskKnown: true,
	}
	for _, m := range mod {
		m(&o)
	}
	return o
}

func load(p float64) func(*Observation) { return func(o *Observation) { o.ForeignLoad = p } }
func battery(charge int) func(*Observation) {
	return func(o *Observation) { o.OnBattery, o.Charge = true, charge }
}
func app(n string) func(*Observation) { return func(o *Observation) { o.ExclusiveApp = n } }
func disk(n int64) func(*Observation) { return func(o *Observation) { o.FreeDisk = n } }
func noIdleSource(o *Observation)     { o.IdleKnown = false }
func notKnown(o *Observation)         { o.LoadKnown, o.PowerKnown, o.DiskKnown = false, false, false }

// step is one observation and what the policy must answer.
type step struct {
	o      Observation
	builds []Build
	// want is "accepting" or "paused: REASON", with " (settling)" when
	// the pause is only waiting for ResumeDelay.
	want  string
	modes map[string]Mode
}

func describe(s Status) string {
	if s.Accepting {
		return "accepting"
	}
	d := "paused: " + s.Reason
	if s.Settling {
		d += " (settling)"
	}
	return d
}

var (
	b1  = []Build{{Key: "b1", Builder: "proj"}}
	b12 = []Build{{Key: "b1", Builder: "proj"}, {Key: "b2", Builder: "nightly"}}
)

func TestPolicy(t *testing.T) {
	base := DefaultSettings()
	with := func(f func(*Settings)) Settings { s := base; f(&s); return s }
	const m = time.Minute
	tests := []struct {
		name     string
		settings Settings
		steps    []step
	}{
		{"idle owner accepts at once", base, []step{
			{o: obs(0, 5*m), want: "accepting"},
		}},
		{"owner active pauses, new builds never start", base, []step{
			{o: obs(0, 10*time.Second), want: "paused: owner active"},
			{o: obs(time.Second, 11*time.Second), want: "paused: owner active"},
		}},
		{"owner comes back: freeze, idle again: settle, then resume", base, []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(time.Second, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(4*m, 3*m+time.Second), builds: b1, want: "paused: owner active (settling)", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(4*m+29*time.Second, 3*m+30*time.Second), builds: b1, want: "paused: owner active (settling)", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(4*m+30*time.Second, 3*m+31*time.Second), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
		}},
		{"a moment of input during settling starts the delay again", base, []step{
			{o: obs(0, 0), want: "paused: owner active"},
			{o: obs(3*m, 3*m), want: "paused: owner active (settling)"},
			{o: obs(3*m+20*time.Second, 0), want: "paused: owner active"},
			{o: obs(6*m+20*time.Second, 3*m), want: "paused: owner active (settling)"},
			{o: obs(6*m+50*time.Second, 3*m+30*time.Second), want: "accepting"},
		}},
		{"frozen too long is abandoned, and stays abandoned", base, []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(time.Second, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(30*m, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(30*m+time.Second, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Abandoned}},
			{o: obs(40*m, 10*m), builds: b1, want: "paused: owner active (settling)", modes: map[string]Mode{"b1": Abandoned}},
			{o: obs(41*m, 11*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Abandoned}},
		}},
		{"each freeze has its own time limit", with(func(s *Settings) { s.ResumeDelay = 0 }), []step{
			{o: obs(0, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(20*m, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(21*m, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(50*m, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(51*m, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Abandoned}},
		}},
		{"per-builder actions", with(func(s *Settings) {
			s.OnOwner = Throttle
			s.BuilderActions = map[string]Action{"nightly": Abandon}
		}), []step{
			{o: obs(0, 5*m), builds: b12, want: "accepting", modes: map[string]Mode{"b1": Running, "b2": Running}},
			{o: obs(time.Second, 0), builds: b12, want: "paused: owner active", modes: map[string]Mode{"b1": Throttled, "b2": Abandoned}},
		}},
		{"no idle source: load alone decides", base, []step{
			{o: obs(0, 0, noIdleSource), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(time.Second, 0, noIdleSource, load(63)), builds: b1, want: "paused: foreign load 63 %", modes: map[string]Mode{"b1": Frozen}},
		}},
		{"foreign load at the threshold is allowed", base, []step{
			{o: obs(0, 5*m, load(25)), want: "accepting"},
			{o: obs(time.Second, 5*m, load(25.5)), want: "paused: foreign load 26 %"},
		}},
		{"load threshold 0 turns the check off", with(func(s *Settings) { s.ForeignLoad = 0 }), []step{
			{o: obs(0, 5*m, load(100)), want: "accepting"},
		}},
		{"idle threshold 0 ignores the owner", with(func(s *Settings) { s.IdleThreshold = 0 }), []step{
			{o: obs(0, 0), want: "accepting"},
		}},
		{"unknown sources are skipped", base, []step{
			{o: obs(0, 5*m, notKnown, load(90), battery(5), disk(0)), want: "accepting"},
		}},
		{"battery pauses and freezes", base, []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(time.Second, 5*m, battery(90)), builds: b1, want: "paused: on battery", modes: map[string]Mode{"b1": Frozen}},
		}},
		{"battery allowed above a charge", with(func(s *Settings) { s.AllowBattery, s.MinCharge = true, 40 }), []step{
			{o: obs(0, 5*m, battery(41)), want: "accepting"},
			{o: obs(time.Second, 5*m, battery(39)), want: "paused: battery below 40 %"},
			{o: obs(2*time.Second, 5*m, battery(-1)), want: "paused: battery below 40 % (settling)"},
		}},
		{"exclusive app", base, []step{
			{o: obs(0, 5*m, app("zoom")), want: "paused: exclusive app running"},
		}},
		{"owner active wins over other causes", base, []step{
			{o: obs(0, 0, app("zoom"), load(99), battery(1)), want: "paused: owner active"},
		}},
		{"low disk stops new builds only", with(func(s *Settings) { s.DiskFloor = 5 << 30 }), []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(time.Second, 5*m, disk(4<<30)), builds: b1, want: "paused: disk below 5 GiB", modes: map[string]Mode{"b1": Running}},
		}},
		{"window closes: running build finishes", with(func(s *Settings) {
			s.Windows = Schedule{mustWindow("wed 08:00-12:30")}
			s.Location = time.UTC
		}), []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(31*m, 5*m), builds: b1, want: "paused: outside window", modes: map[string]Mode{"b1": Running}},
		}},
		{"window closes: build freezes when it may not finish", with(func(s *Settings) {
			s.Windows = Schedule{mustWindow("wed 08:00-12:30")}
			s.Location = time.UTC
			s.FinishAfterWindow = false
		}), []step{
			{o: obs(0, 5*m), builds: b1, want: "accepting", modes: map[string]Mode{"b1": Running}},
			{o: obs(31*m, 5*m), builds: b1, want: "paused: outside window", modes: map[string]Mode{"b1": Frozen}},
		}},
		{"frozen build thaws when only the window pauses and it may finish", with(func(s *Settings) {
			s.Windows = Schedule{mustWindow("wed 08:00-12:30")}
			s.Location = time.UTC
			s.ResumeDelay = 0
		}), []step{
			{o: obs(0, 0), builds: b1, want: "paused: owner active", modes: map[string]Mode{"b1": Frozen}},
			{o: obs(31*m, 5*m), builds: b1, want: "paused: outside window", modes: map[string]Mode{"b1": Running}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPolicy(tt.settings)
			for i, st := range tt.steps {
				d := p.Evaluate(st.o, st.builds)
				if got := describe(d.Status); got != st.want {
					t.Fatalf("step %d (%s): got %q, want %q (detail %q)", i, st.o.Now.Sub(t0), got, st.want, d.Status.Detail)
				}
				if st.modes != nil {
					if got, want := fmt.Sprint(d.Modes), fmt.Sprint(st.modes); got != want {
						t.Fatalf("step %d: modes %s, want %s", i, got, want)
					}
				}
			}
		})
	}
}

func mustWindow(s string) Window {
	w, err := ParseWindow(s)
	if err != nil {
		panic(err)
	}
	return w
}

func TestStatusSinceAndDetail(t *testing.T) {
	p := NewPolicy(DefaultSettings())
	d := p.Evaluate(obs(0, 5*time.Minute), nil)
	if !d.Status.Since.Equal(t0) {
		t.Fatalf("since %v", d.Status.Since)
	}
	d = p.Evaluate(obs(time.Minute, 0, app("zoom")), nil)
	if d.Status.Since != t0.Add(time.Minute) || !strings.Contains(d.Status.Detail, "last input 0s ago") {
		t.Fatalf("status %+v", d.Status)
	}
	d = p.Evaluate(obs(2*time.Minute, 5*time.Minute, app("zoom")), nil)
	if d.Status.Reason != "exclusive app running" || d.Status.Detail != "exclusive app running: zoom" || d.Status.Since != t0.Add(2*time.Minute) {
		t.Fatalf("the app's name belongs in the detail only: %+v", d.Status)
	}
	d = p.Evaluate(obs(3*time.Minute, 6*time.Minute, app("zoom")), nil)
	if d.Status.Since != t0.Add(2*time.Minute) {
		t.Fatalf("since moved while the cause stayed: %+v", d.Status)
	}
}

func TestForgetsEndedBuilds(t *testing.T) {
	p := NewPolicy(DefaultSettings())
	p.Evaluate(obs(0, 0), b1)
	p.Evaluate(obs(time.Second, 0), nil)
	if len(p.frozenAt) != 0 {
		t.Fatalf("frozenAt kept %v", p.frozenAt)
	}
}
