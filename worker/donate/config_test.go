package donate

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFileAndFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	if err := fs.Parse([]string{"--idle-threshold", "10m", "--exclusive-app", "zoom"}); err != nil {
		t.Fatal(err)
	}
	given := map[string]bool{"idle-threshold": true, "exclusive-app": true}
	path := filepath.Join(t.TempDir(), "donate.conf")
	conf := `# a donor's settings
idle-threshold = 1m        # the command line wins
max-foreign-load = 40
window = mon-fri 19:00-07:00
window = "sat,sun"
exclusive-app = steam
on-owner = throttle
builder-action = nightly=abandon
disk-floor = 10GiB
memory-max = 8G
ionice = none
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReadFile(path, fs, given, false); err != nil {
		t.Fatal(err)
	}
	s, l := c.Settings, c.Limits
	switch {
	case s.IdleThreshold != 10*time.Minute:
		t.Errorf("idle threshold %v", s.IdleThreshold)
	case s.ForeignLoad != 40:
		t.Errorf("load %v", s.ForeignLoad)
	case len(s.Windows) != 2 || s.Windows[1].String() != "sat,sun":
		t.Errorf("windows %v", s.Windows)
	case strings.Join(s.ExclusiveApps, ",") != "zoom":
		t.Errorf("apps %v (the command line's list wins)", s.ExclusiveApps)
	case s.OnOwner != Throttle || s.ActionFor("nightly") != Abandon || s.ActionFor("proj") != Throttle:
		t.Errorf("actions %v %v", s.OnOwner, s.BuilderActions)
	case s.DiskFloor != 10<<30 || l.MemoryMax != 8<<30 || l.IOClass != "":
		t.Errorf("disk %d memory %d ionice %q", s.DiskFloor, l.MemoryMax, l.IOClass)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	path := filepath.Join(t.TempDir(), "donate.conf")
	conf := "idle-treshold = 1m\nwindow = mon 9-5\njust words\non-owner = sleep\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ReadFile(path, fs, nil, false)
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{
		path + `:1: unknown setting "idle-treshold" (did you mean "idle-threshold"?)`,
		path + `:2: window: window "mon 9-5"`,
		path + `:3: want name = value`,
		path + `:4: on-owner: unknown action "sleep"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := ReadFile(filepath.Join(t.TempDir(), "none.conf"), fs, nil, true); err != nil {
		t.Errorf("a missing optional file: %v", err)
	}
	if err := ReadFile(filepath.Join(t.TempDir(), "none.conf"), fs, nil, false); err == nil {
		t.Error("a missing file given explicitly must be an error")
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tt := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Settings.ForeignLoad = 120 }, "--max-foreign-load must be 0 to 100"},
		{func(c *Config) { c.Settings.MinCharge = 30 }, "--min-charge needs --allow-battery"},
		{func(c *Config) { c.Limits.Nice = 20 }, "--nice must be 0 to 19"},
		{func(c *Config) { c.Limits.ThrottleCores = 0 }, "--throttle-cores must be at least 1"},
	} {
		c := DefaultConfig()
		tt.mod(c)
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check() = %v, want %q", err, tt.want)
		}
	}
}
