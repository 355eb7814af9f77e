package donate

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// StatusReport is what a donating worker writes to its status file for
// `starforge-worker status`: a small JSON file in its base directory,
// replaced atomically on every change and at least every StatusEvery.
type StatusReport struct {
	PID     int       `json:"pid"`
	Updated time.Time `json:"updated"`
	Stopped bool      `json:"stopped,omitempty"` // the worker exited
	Master  string    `json:"master"`
	Worker  string    `json:"worker"`
	// Connected: the worker is connected to the master; Extension: the
	// master knows of pauses (without it the worker disconnects while
	// paused).
	Connected bool `json:"connected"`
	Extension bool `json:"extension"`

	Accepting bool      `json:"accepting"`
	Reason    string    `json:"reason,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	Since     time.Time `json:"since"`

	IdleSources []string `json:"idle_sources"`
	Idle        string   `json:"idle,omitempty"` // "" when unknown
	ForeignLoad *float64 `json:"foreign_load,omitempty"`
	OnBattery   *bool    `json:"on_battery,omitempty"`
	FreeDisk    *int64   `json:"free_disk,omitempty"`
	Limits      string   `json:"limits,omitempty"`

	Builds []BuildReport `json:"builds,omitempty"`
	// Donated is the build time given so far (time with a build running,
	// not frozen), and BuildsRun the builds started, since the worker
	// started.
	Donated   string   `json:"donated"`
	BuildsRun int      `json:"builds_run"`
	Notes     []string `json:"notes,omitempty"`
}

// BuildReport is one build in a StatusReport.
type BuildReport struct {
	Builder  string    `json:"builder"`
	Build    string    `json:"build,omitempty"` // the master's build id, when it sent one
	Mode     string    `json:"mode"`            // running, frozen, throttled, abandoned, waiting
	Since    time.Time `json:"since"`
	Commands int       `json:"commands"`
}

// StatusEvery is how often a waiting worker rewrites its status file; a
// file older than three times this belongs to a worker that is gone or
// hung.
const StatusEvery = 30 * time.Second

// WriteStatus replaces the status file at path with r.
func WriteStatus(path string, r *StatusReport) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadStatus reads a status file.
func ReadStatus(path string) (*StatusReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r StatusReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: not a donating worker's status file: %w", path, err)
	}
	return &r, nil
}

// Format describes r for people, as of now.
func (r *StatusReport) Format(now time.Time) string {
	var b strings.Builder
	age := now.Sub(r.Updated)
	switch {
	case r.Stopped:
		fmt.Fprintf(&b, "starforge-worker %s is not running: it stopped at %s.\n", r.Worker, r.Updated.Format(time.DateTime))
		b.WriteString("Last known state:\n")
	case age > 3*StatusEvery:
		fmt.Fprintf(&b, "starforge-worker %s (pid %d) has not reported for %s: it is not running, or hangs.\n", r.Worker, r.PID, age.Round(time.Second))
		b.WriteString("Last known state:\n")
	default:
		conn := "connected"
		if !r.Connected {
			conn = "not connected"
		}
		fmt.Fprintf(&b, "starforge-worker %s (pid %d) donates this machine to %s (%s).\n", r.Worker, r.PID, r.Master, conn)
	}
	since := ""
	if !r.Since.IsZero() {
		since = fmt.Sprintf(" since %s (%s ago)", r.Since.Format("Mon 15:04:05"), now.Sub(r.Since).Round(time.Second))
	}
	if r.Accepting {
		fmt.Fprintf(&b, "  state:   accepting builds%s\n", since)
	} else {
		fmt.Fprintf(&b, "  state:   paused%s: %s\n", since, r.Detail)
		if !r.Extension && r.Connected {
			b.WriteString("           (the master does not know of pauses: the worker disconnects while paused and no build runs)\n")
		}
	}
	if len(r.Builds) == 0 {
		b.WriteString("  builds:  none\n")
	}
	for _, bl := range r.Builds {
		id := ""
		if bl.Build != "" {
			id = " build " + bl.Build
		}
		fmt.Fprintf(&b, "  build:   %s%s: %s since %s\n", bl.Builder, id, bl.Mode, bl.Since.Format("15:04:05"))
	}
	if len(r.IdleSources) == 0 {
		b.WriteString("  owner:   no way to see the owner's input here; going by the CPU load alone\n")
	} else {
		idle := r.Idle
		if idle == "" {
			idle = "unknown"
		}
		fmt.Fprintf(&b, "  owner:   last input %s ago (from %s)\n", idle, strings.Join(r.IdleSources, ", "))
	}
	var m []string
	if r.ForeignLoad != nil {
		m = append(m, fmt.Sprintf("foreign load %.0f %%", *r.ForeignLoad))
	}
	if r.OnBattery != nil {
		if *r.OnBattery {
			m = append(m, "on battery")
		} else {
			m = append(m, "on mains power")
		}
	}
	if r.FreeDisk != nil {
		m = append(m, FormatSize(*r.FreeDisk)+" free")
	}
	if len(m) > 0 {
		fmt.Fprintf(&b, "  machine: %s\n", strings.Join(m, ", "))
	}
	if r.Limits != "" {
		fmt.Fprintf(&b, "  limits:  %s\n", r.Limits)
	}
	fmt.Fprintf(&b, "  donated: %s of build time, %d builds since the worker started\n", r.Donated, r.BuildsRun)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note:    %s\n", n)
	}
	return b.String()
}
