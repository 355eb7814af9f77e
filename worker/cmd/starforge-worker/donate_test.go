package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/donate"
)

func TestDonateUsage(t *testing.T) {
	base := []string{"--master", "h:1", "--name", "w", "--password", "p", "--basedir"}
	badConf := filepath.Join(t.TempDir(), "donate.conf")
	os.WriteFile(badConf, []byte("idle-threshold = soon\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"help without --donate hints at it", []string{"--help"}, 0, []string{"--donate --help"}},
		{"donate help shows every setting and its default", []string{"--donate", "--help"}, 0, []string{
			"Donation settings", "-idle-threshold DURATION", "(default 3m0s)", "-max-foreign-load PERCENT", "(default 25)",
			"-on-owner ACTION", "(default freeze)", "-max-freeze DURATION", "(default 30m0s)", "-disk-floor SIZE", "(default 5GiB)",
			"-window WINDOW", "-exclusive-app NAME", "-allow-battery", "-min-charge PERCENT", "-finish-after-window", "(default true)",
			"-cores N", "-nice N", "(default 10)", "-ionice CLASS", "(default idle)", "-memory-max SIZE", "-throttle-cores N",
			"-builder-action BUILDER=ACTION", "-resume-delay DURATION", "-idle-command COMMAND"}},
		{"a donation flag needs --donate", append(append([]string{}, base...), t.TempDir(), "--idle-threshold", "1m"), 2, []string{"--idle-threshold needs --donate"}},
		{"bad value", []string{"--donate", "--on-owner", "nap"}, 2, []string{`unknown action "nap"`}},
		{"bad config file", append(append([]string{}, base...), t.TempDir(), "--donate", "--donate-config", badConf), 2, []string{badConf + `:1: idle-threshold: parse error`}},
		{"inconsistent settings", append(append([]string{}, base...), t.TempDir(), "--donate", "--min-charge", "30"), 2, []string{"--min-charge needs --allow-battery"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(tt.args, &out, &out, func(string) string { return "" })
			for _, w := range tt.want {
				if code != tt.code || !strings.Contains(out.String(), w) {
					t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tt.code, w)
				}
			}
		})
	}
}

func TestStatusCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run([]string{"status", "--basedir", dir}, &out, &out, func(string) string { return "" }); code != 1 || !strings.Contains(out.String(), "no donating worker has run in") {
		t.Fatalf("no status file: exit %d\n%s", code, out.String())
	}
	load := 63.0
	r := &donate.StatusReport{
		PID: 42, Updated: time.Now(), Master: "ci:9989", Worker: "desk", Connected: true, Extension: true,
		Reason: "foreign load 63 %", Detail: "foreign load 63 %: other programs use more than 25 % of the CPU",
		Since: time.Now().Add(-time.Minute), IdleSources: []string{"logind"}, Idle: "10m0s", ForeignLoad: &load,
		Builds:  []donate.BuildReport{{Builder: "proj", Build: "7", Mode: "frozen", Since: time.Now()}},
		Donated: "1h0m0s", BuildsRun: 3,
	}
	if err := donate.WriteStatus(filepath.Join(dir, worker.StatusFileName), r); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code := run([]string{"status"}, &out, &out, func(k string) string {
		if k == "STARFORGE_WORKER_BASEDIR" {
			return dir
		}
		return ""
	})
	for _, want := range []string{"desk (pid 42) donates this machine to ci:9989 (connected)", "paused since", "other programs use more than 25 %",
		"proj build 7: frozen", "last input 10m0s ago (from logind)", "donated: 1h0m0s of build time, 3 builds"} {
		if code != 0 || !strings.Contains(out.String(), want) {
			t.Fatalf("exit %d, output lacks %q:\n%s", code, want, out.String())
		}
	}
	// A report nobody refreshed belongs to a worker that is gone.
	r.Updated = time.Now().Add(-time.Hour)
	donate.WriteStatus(filepath.Join(dir, worker.StatusFileName), r)
	out.Reset()
	if code := run([]string{"status", "--basedir", dir}, &out, &out, func(string) string { return "" }); code != 1 || !strings.Contains(out.String(), "has not reported for 1h0m0s") {
		t.Fatalf("stale: exit %d\n%s", code, out.String())
	}
}
